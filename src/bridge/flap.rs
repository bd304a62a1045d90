//! MAC-flap detection, as EVPN's duplicate-address detection: a MAC that
//! moves `FLAP_MOVES` times within `FLAP_WINDOW` is a duplicate MAC, a loop
//! or a VM fighting another over an address. It is logged (rate-limited)
//! and counted; the moves themselves still happen (freezing the MAC where
//! it is would be the switch's decision, not done yet).

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

#[derive(Debug)]
pub(super) struct Flaps {
    /// (MAC, vid) -> moves in the current window and when it began.
    moves: HashMap<(MacAddr, u16), (u8, Instant)>,
    log: RateLimit,
}

impl Flaps {
    pub fn new() -> Flaps {
        Flaps {
            moves: HashMap::new(),
            log: RateLimit::new(10),
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
        if let Some(suppressed) = self.log.allow(now) {
            warn!(
                %mac,
                vlan = vid & 0x0fff,
                moves = FLAP_MOVES,
                window_s = FLAP_WINDOW.as_secs(),
                now_at = to,
                suppressed,
                "MAC flapping: a duplicate MAC or a loop"
            );
        }
        true
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
    }
}
