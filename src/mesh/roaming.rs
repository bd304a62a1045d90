//! Client roaming, the claiming side: the ROAM_ADV anti-flap limit and the
//! out-of-cycle OGM that carries a claim without waiting for the interval.
//!
//! batman-adv sends a ROAM_ADV to the old originator when a client appears
//! here, but at most `BATADV_ROAMING_MAX_COUNT` times per client within
//! `BATADV_ROAMING_MAX_TIME` (`batadv_tt_check_roam_count`): a client that
//! flaps between two nodes must not turn into a storm of adverts. The kernel
//! announces the claim in its next periodic OGM; meshwire sends that OGM at
//! once (rate-limited), so every node learns the new originator within
//! milliseconds even with a long originator interval.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::wire::MacAddr;

/// `BATADV_ROAMING_MAX_TIME`.
pub const ROAMING_MAX_TIME: Duration = Duration::from_secs(20);
/// `BATADV_ROAMING_MAX_COUNT`.
pub const ROAMING_MAX_COUNT: u8 = 5;
/// Clients whose roaming is tracked at once (memory bound); beyond it the
/// oldest window is forgotten, which at worst allows a few extra adverts.
pub const MAX_ROAM_ENTRIES: usize = 4096;
/// Out-of-cycle OGMs are at least this far apart: a burst of claims (many
/// VMs arriving together) rides in one OGM.
pub const OOC_OGM_MIN_GAP: Duration = Duration::from_millis(20);

#[derive(Default)]
pub struct RoamGuard {
    /// (client, vid) -> (start of its window, adverts sent in it).
    seen: HashMap<(MacAddr, u16), (Instant, u8)>,
}

impl RoamGuard {
    /// May a ROAM_ADV for this client go out now? Counts it when it may.
    pub fn allow(&mut self, now: Instant, mac: MacAddr, vid: u16) -> bool {
        if self.seen.len() >= MAX_ROAM_ENTRIES && !self.seen.contains_key(&(mac, vid)) {
            self.expire(now);
            if self.seen.len() >= MAX_ROAM_ENTRIES {
                if let Some(oldest) = self
                    .seen
                    .iter()
                    .min_by_key(|(_, (t, _))| *t)
                    .map(|(k, _)| *k)
                {
                    self.seen.remove(&oldest);
                }
            }
        }
        let e = self.seen.entry((mac, vid)).or_insert((now, 0));
        if now.saturating_duration_since(e.0) > ROAMING_MAX_TIME {
            *e = (now, 0);
        }
        if e.1 >= ROAMING_MAX_COUNT {
            return false;
        }
        e.1 += 1;
        true
    }

    /// Forgets windows that ended.
    pub fn expire(&mut self, now: Instant) {
        self.seen
            .retain(|_, (t, _)| now.saturating_duration_since(*t) <= ROAMING_MAX_TIME);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// When the next own OGM should go out after a claim at `now`: at once,
/// unless an out-of-cycle OGM went out less than `OOC_OGM_MIN_GAP` ago;
/// never later than the periodic one already planned.
pub fn ooc_ogm_time(now: Instant, last_ooc: Option<Instant>, planned: Option<Instant>) -> Instant {
    let earliest = last_ooc.map_or(now, |t| (t + OOC_OGM_MIN_GAP).max(now));
    planned.map_or(earliest, |p| p.min(earliest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: MacAddr = MacAddr([2, 0, 0, 0, 0, 9]);

    #[test]
    fn five_adverts_per_window_then_quiet_then_again() {
        let t0 = Instant::now();
        let mut g = RoamGuard::default();
        for i in 0..ROAMING_MAX_COUNT {
            assert!(
                g.allow(t0 + Duration::from_secs(i as u64), M, 0),
                "advert {i}"
            );
        }
        assert!(
            !g.allow(t0 + Duration::from_secs(10), M, 0),
            "sixth within 20 s"
        );
        // Another VLAN is another client.
        assert!(g.allow(t0 + Duration::from_secs(10), M, 0x8005));
        assert!(g.allow(t0 + ROAMING_MAX_TIME + Duration::from_secs(1), M, 0));
    }

    #[test]
    fn bounded() {
        let t0 = Instant::now();
        let mut g = RoamGuard::default();
        for i in 0..(MAX_ROAM_ENTRIES as u32 + 100) {
            let b = i.to_be_bytes();
            g.allow(t0, MacAddr([2, 0, b[0], b[1], b[2], b[3]]), 0);
        }
        assert!(g.len() <= MAX_ROAM_ENTRIES);
        g.expire(t0 + ROAMING_MAX_TIME + Duration::from_secs(1));
        assert!(g.is_empty());
    }

    #[test]
    fn ooc_ogm_is_immediate_but_rate_limited() {
        let t0 = Instant::now();
        let planned = Some(t0 + Duration::from_secs(10));
        assert_eq!(ooc_ogm_time(t0, None, planned), t0);
        let soon = t0 + Duration::from_millis(5);
        assert_eq!(ooc_ogm_time(soon, Some(t0), planned), t0 + OOC_OGM_MIN_GAP);
        // A periodic OGM due sooner is not pushed back.
        let p = Some(t0 + Duration::from_millis(1));
        assert_eq!(
            ooc_ogm_time(soon, Some(t0), p),
            t0 + Duration::from_millis(1)
        );
    }
}
