//! batman-adv packet formats (filled in by its owner)
