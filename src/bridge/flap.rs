//! MAC-flap detection, as EVPN's duplicate-address detection: a MAC that
//! moves `FLAP_MOVES` times within `FLAP_WINDOW` is a duplicate MAC, a loop
//! or a VM fighting another over an address. It is logged (rate-limited)
//! and counted. With `[node] mac_flap_freeze_ms` it is also frozen where
//! it was last seen for that long (FRR's `dup-addr-detection freeze`):
//! frames claiming it from any other port are dropped, so a loop or a
//! fight over a MAC stops moving it (and stops the TT claims and ROAM
//! adverts every move sends through the mesh). The freeze ends on its own;
//! a real migration away from a frozen port shows up at another node,
//! which this node does not block.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::log::RateLimit;
use crate::wire::MacAddr;

/// Moves within [`FLAP_WINDOW`] that make a MAC flap (EVPN's default).
pub const FLAP_MOVES: u8 = 5;
pub const FLAP_WINDOW: Duration = Duration::from_secs(180);
/// MACs tracked at once; a full table starts over (each MAC's count
/// restarts: amortised O(1) per move, memory bounded).
const MAX_TRACKED: usize = 4096;

/// MACs frozen at once: a flapping MAC past this is only logged.
const MAX_FROZEN: usize = 1024;

#[derive(Debug)]
pub(super) struct Flaps {
    /// (MAC, vid) -> moves in the current window and when it began.
    moves: HashMap<(MacAddr, u16), (u8, Instant)>,
    log: RateLimit,
    /// How long a flapping MAC stays frozen (None: detection only).
    freeze: Option<Duration>,
    /// (MAC, vid) -> until when it is frozen.
    frozen: HashMap<(MacAddr, u16), Instant>,
}

impl Flaps {
    pub fn new() -> Flaps {
        Flaps {
            moves: HashMap::new(),
            log: RateLimit::new(10),
            freeze: None,
            frozen: HashMap::new(),
        }
    }

    pub fn set_freeze(&mut self, freeze: Option<Duration>) {
        self.freeze = freeze.filter(|d| !d.is_zero());
        if self.freeze.is_none() {
            self.frozen.clear();
        }
    }

    /// Is (mac, vid) frozen at `now`? The first look after the freeze
    /// ends forgets it.
    pub fn is_frozen(&mut self, now: Instant, mac: MacAddr, vid: u16) -> bool {
        if self.frozen.is_empty() {
            return false;
        }
        match self.frozen.get(&(mac, vid)) {
            Some(&until) if now < until => true,
            Some(_) => {
                self.frozen.remove(&(mac, vid));
                false
            }
            None => false,
        }
    }

    /// A move of (mac, vid): true when it makes the MAC a flapper (once
    /// per window).
    pub fn moved(&mut self, now: Instant, mac: MacAddr, vid: u16, to: &str) -> bool {
        if self.moves.len() >= MAX_TRACKED && !self.moves.contains_key(&(mac, vid)) {
            self.moves.clear();
        }
        let e = self.moves.entry((mac, vid)).or_insert((0, now));
        if now.saturating_duration_since(e.1) > FLAP_WINDOW {
            *e = (0, now);
        }
        e.0 = e.0.saturating_add(1);
        if e.0 != FLAP_MOVES {
            return false;
        }
        let frozen_s = self.freeze_at(now, mac, vid).map(|d| d.as_secs());
        if let Some(suppressed) = self.log.allow(now) {
            warn!(
                %mac,
                vlan = vid & 0x0fff,
                moves = FLAP_MOVES,
                window_s = FLAP_WINDOW.as_secs(),
                now_at = to,
                frozen_s,
                suppressed,
                "MAC flapping: a duplicate MAC or a loop"
            );
        }
        true
    }

    /// Freezes a flapping MAC where it is, when freezing is on and the
    /// table has room (expired freezes make room first).
    fn freeze_at(&mut self, now: Instant, mac: MacAddr, vid: u16) -> Option<Duration> {
        let d = self.freeze?;
        if self.frozen.len() >= MAX_FROZEN {
            self.frozen.retain(|_, until| *until > now);
            if self.frozen.len() >= MAX_FROZEN {
                return None;
            }
        }
        self.frozen.insert((mac, vid), now + d);
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_moves_in_the_window_flap_once() {
        let t0 = Instant::now();
        let mut f = Flaps::new();
        let m = MacAddr([2, 0, 0, 0, 0, 1]);
        let flagged: Vec<bool> = (0..7)
            .map(|i| f.moved(t0 + Duration::from_secs(i * 30), m, 0, "x"))
            .collect();
        assert_eq!(flagged, [false, false, false, false, true, false, false]);
        // Moves spread wider than the window never flap.
        let n = MacAddr([2, 0, 0, 0, 0, 2]);
        assert!((0..20).all(|i| !f.moved(t0 + Duration::from_secs(i * 50), n, 0, "x")));
        // Another network is another MAC.
        assert!(!f.moved(t0, m, 0x800a, "x"));
        // Detection only: nothing frozen.
        assert!(!f.is_frozen(t0 + Duration::from_secs(150), m, 0));
    }

    #[test]
    fn a_flapping_mac_is_frozen_for_the_freeze_time() {
        let t0 = Instant::now();
        let mut f = Flaps::new();
        f.set_freeze(Some(Duration::from_secs(60)));
        let m = MacAddr([2, 0, 0, 0, 0, 1]);
        for i in 0..5 {
            f.moved(t0 + Duration::from_secs(i), m, 0, "x");
        }
        let at = t0 + Duration::from_secs(4);
        assert!(f.is_frozen(at, m, 0));
        assert!(!f.is_frozen(at, m, 1), "another network is not frozen");
        assert!(f.is_frozen(at + Duration::from_secs(59), m, 0));
        assert!(!f.is_frozen(at + Duration::from_secs(60), m, 0));
        assert!(f.frozen.is_empty(), "forgotten once over");
    }

    #[test]
    fn the_frozen_table_is_bounded() {
        let t0 = Instant::now();
        let mut f = Flaps::new();
        f.set_freeze(Some(Duration::from_secs(60)));
        for n in 0..(MAX_FROZEN as u32 + 10) {
            let [_, a, b, c] = n.to_be_bytes();
            let m = MacAddr([2, 0, 0, a, b, c]);
            for _ in 0..5 {
                f.moved(t0, m, 0, "x");
            }
        }
        assert_eq!(f.frozen.len(), MAX_FROZEN);
        // Once the first freezes are over, new ones take their room.
        let later = t0 + Duration::from_secs(61);
        let m = MacAddr([2, 1, 0, 0, 0, 1]);
        for _ in 0..5 {
            f.moved(later, m, 0, "x");
        }
        assert!(f.is_frozen(later, m, 0));
        assert_eq!(f.frozen.len(), 1);
    }
}
