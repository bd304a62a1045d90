//! batman-adv IV mesh (placeholder while building)
