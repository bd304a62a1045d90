//! Which peer an incoming WireGuard message belongs to, without trial
//! decryption.
//!
//! * Responses, cookie replies and data carry our receiver index. boringtun's
//!   `Tunn::new(.., index, ..)` uses `index << 8` as the session index and
//!   counts sessions in the low 8 bits, so the top 24 bits name the peer: we
//!   give peer `id` the index `(base + id) mod 2^24` with a random `base`
//!   per process, so indices from before a restart do not land on a peer.
//!   An id is a peer table slot and its generation (`peer_table.rs`), both
//!   inside those 24 bits: the index of a removed peer names its old
//!   generation, which the slot's next peer does not answer to, so its
//!   datagrams are counted (`rx_unknown_index`) and dropped.
//! * The reuseport steering (`steer.rs`) reads the same 24 bits, so it
//!   needs no state for peers added at runtime.
//! * Initiations carry the initiator's static key, encrypted to our key.
//!   The shared `RateLimiter` checks mac1 first (and answers with a cookie
//!   when we are under load) before `parse_handshake_anon` pays for the
//!   Diffie-Hellman that reveals the key.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock, RwLockWriteGuard};

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{HandshakeInit, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};

use super::counters::TunnelCounters;
use super::peer_table::{slot_of, MAX_PEER_SLOTS};
use super::PeerId;

/// Handshake messages per second (all peers) before we answer with cookies.
/// Initiations are counted twice (our pre-check and the Tunn's own check,
/// since boringtun keeps its verified-packet entry point crate-private), so
/// this admits about 100 initiations per second, boringtun's device default.
pub const HANDSHAKE_RATE_LIMIT: u64 = 200;

#[derive(Debug, Clone, Copy)]
pub(super) struct IndexMap {
    base: u32,
    peers: u32,
}

impl IndexMap {
    /// `slots`: the peer table's size (ids carry a generation above it).
    pub(super) fn new(base: u32, slots: usize) -> IndexMap {
        IndexMap {
            base: base & 0x00ff_ffff,
            peers: slots.min(MAX_PEER_SLOTS) as u32,
        }
    }

    /// The random base of this process's indices.
    pub(super) fn base(&self) -> u32 {
        self.base
    }

    /// The 24-bit index handed to `Tunn::new` for peer `id`.
    pub(super) fn index_of(&self, id: PeerId) -> u32 {
        self.base.wrapping_add(id) & 0x00ff_ffff
    }

    /// The peer a receiver index (as found on the wire) belongs to.
    pub(super) fn peer_of(&self, receiver_idx: u32) -> Option<PeerId> {
        let id = (receiver_idx >> 8).wrapping_sub(self.base) & 0x00ff_ffff;
        (slot_of(id) < self.peers as usize).then_some(id)
    }
}

/// Outcome of matching a handshake initiation to a peer.
pub(super) enum InitMatch {
    Peer(PeerId),
    /// Under load and no valid mac2: a cookie reply of this length was
    /// written to the scratch buffer; send it back to the source.
    Cookie(usize),
    /// Dropped (and counted).
    Drop,
}

pub(super) struct Matcher {
    secret: StaticSecret,
    public: PublicKey,
    pub(super) rate_limiter: Arc<RateLimiter>,
    /// Public key -> peer, for initiations (peers come and go at runtime;
    /// the data path never takes this lock).
    by_key: RwLock<HashMap<[u8; 32], PeerId>>,
}

impl Matcher {
    pub(super) fn new(secret: StaticSecret, by_key: HashMap<[u8; 32], PeerId>) -> Matcher {
        let public = PublicKey::from(&secret);
        let rate_limiter = Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT));
        Matcher {
            secret,
            public,
            rate_limiter,
            by_key: RwLock::new(by_key),
        }
    }

    /// The key -> peer map, locked for a change. Adding and removing a
    /// peer hold it across the peer table change, so a key is checked and
    /// claimed at once, and an initiation never finds a key whose peer is
    /// gone.
    pub(super) fn keys_mut(&self) -> RwLockWriteGuard<'_, HashMap<[u8; 32], PeerId>> {
        self.by_key.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The id of the peer with this public key.
    pub(super) fn id_of(&self, key: &[u8; 32]) -> Option<PeerId> {
        (self.by_key.read().unwrap_or_else(PoisonError::into_inner))
            .get(key)
            .copied()
    }

    pub(super) fn secret(&self) -> &StaticSecret {
        &self.secret
    }

    pub(super) fn match_init(
        &self,
        from: IpAddr,
        datagram: &[u8],
        init: &HandshakeInit,
        scratch: &mut [u8],
        counters: &mut TunnelCounters,
    ) -> InitMatch {
        match self
            .rate_limiter
            .verify_packet(Some(from), datagram, scratch)
        {
            Ok(_) => {}
            Err(TunnResult::WriteToNetwork(cookie)) => return InitMatch::Cookie(cookie.len()),
            Err(TunnResult::Err(boringtun::noise::errors::WireGuardError::InvalidMac)) => {
                counters.rx_invalid_mac += 1;
                return InitMatch::Drop;
            }
            Err(_) => {
                counters.rx_handshake_rejected += 1;
                return InitMatch::Drop;
            }
        }
        let half = match parse_handshake_anon(&self.secret, &self.public, init) {
            Ok(h) => h,
            Err(_) => {
                counters.rx_handshake_rejected += 1;
                return InitMatch::Drop;
            }
        };
        let known = self
            .by_key
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&half.peer_static_public)
            .copied();
        match known {
            Some(id) => InitMatch::Peer(id),
            None => {
                counters.rx_unknown_peer += 1;
                InitMatch::Drop
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_roundtrip_and_session_bits() {
        for base in [0u32, 1, 0x00ff_fff0, 0x1234_5678] {
            let m = IndexMap::new(base, 40);
            for id in 0..40 {
                let idx = m.index_of(id);
                assert!(idx < 1 << 24);
                // boringtun shifts left by 8 and counts sessions in the low byte.
                for session in [0u32, 1, 255] {
                    assert_eq!(m.peer_of((idx << 8) | session), Some(id));
                }
            }
            assert_eq!(m.peer_of(m.index_of(40) << 8), None);
            assert_eq!(m.peer_of(m.index_of(u32::MAX) << 8), None);
        }
    }
}
