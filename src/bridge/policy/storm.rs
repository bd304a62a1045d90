//! Storm control: token buckets for what a port may flood (broadcast,
//! multicast and unknown unicast: `broadcast_rate`) and for ARP and NS/NA
//! (`arp_nd_rate`), per second with a burst of one second's worth.
//!
//! A VM port has one pair of buckets. An uplink (a bridge of many VMs
//! behind one port) has a pair per source MAC, so one noisy VM behind the
//! bridge does not silence the others; the table is bounded, and sources
//! beyond the bound share one overflow pair (a random-MAC flood then meets
//! a single budget). Idle sources are forgotten on the timer.
//!
//! The buckets are GCRA (the virtual-scheduling form of a token bucket):
//! one timestamp each, exact at any rate, no refill arithmetic.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::wire::MacAddr;

/// Sources an uplink keeps buckets for; beyond it they share one pair.
pub const MAX_SOURCES: usize = 4096;
/// A source silent this long loses its buckets (they would be full again).
const SOURCE_IDLE: Duration = Duration::from_secs(10);

/// One bucket: `rate` per second, a burst of `rate`. Rate 0 is no limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gcra {
    /// The theoretical arrival time of the next conforming frame.
    tat: Option<Instant>,
}

impl Gcra {
    pub fn admit(&mut self, now: Instant, rate: u32) -> bool {
        if rate == 0 {
            return true;
        }
        let interval = Duration::from_nanos(1_000_000_000 / u64::from(rate));
        let tolerance = interval * (rate - 1);
        let tat = self.tat.filter(|&t| t > now).unwrap_or(now);
        if tat.saturating_duration_since(now) > tolerance {
            return false;
        }
        self.tat = Some(tat + interval);
        true
    }
}

/// The two budgets of one sender.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pair {
    pub arp_nd: Gcra,
    pub flood: Gcra,
    last: Option<Instant>,
}

/// A port's buckets: one pair, or one per source MAC.
#[derive(Debug)]
pub enum Storm {
    Port(Pair),
    PerSource {
        table: HashMap<MacAddr, Pair>,
        overflow: Pair,
        /// Sources that found the table full (they share `overflow`).
        overflowed: u64,
    },
}

impl Storm {
    pub fn new(per_source: bool) -> Storm {
        if per_source {
            Storm::PerSource {
                table: HashMap::new(),
                overflow: Pair::default(),
                overflowed: 0,
            }
        } else {
            Storm::Port(Pair::default())
        }
    }

    /// The pair that `src`'s frames are counted against.
    pub fn pair(&mut self, now: Instant, src: MacAddr) -> &mut Pair {
        let p = match self {
            Storm::Port(p) => p,
            Storm::PerSource {
                table,
                overflow,
                overflowed,
            } => {
                if table.len() >= MAX_SOURCES && !table.contains_key(&src) {
                    *overflowed += 1;
                    overflow
                } else {
                    table.entry(src).or_default()
                }
            }
        };
        p.last = Some(now);
        p
    }

    /// Forgets idle sources (a scan of at most `MAX_SOURCES`, on the timer).
    pub fn expire(&mut self, now: Instant) {
        if let Storm::PerSource { table, .. } = self {
            table.retain(|_, p| {
                p.last
                    .is_some_and(|t| now.saturating_duration_since(t) < SOURCE_IDLE)
            });
        }
    }

    pub fn sources(&self) -> usize {
        match self {
            Storm::Port(_) => 1,
            Storm::PerSource { table, .. } => table.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = Gcra::default();
        let passed = (0..100).filter(|_| b.admit(t0, 20)).count();
        assert_eq!(passed, 20, "a burst of one second's worth");
        // One more every 50 ms after that, whatever is offered.
        let mut passed = 0;
        for ms in 1..=1000u64 {
            let now = t0 + Duration::from_millis(ms);
            for _ in 0..10 {
                passed += usize::from(b.admit(now, 20));
            }
        }
        assert_eq!(passed, 20);
        assert!(Gcra::default().admit(t0, 0), "0 is no limit");
    }

    #[test]
    fn per_source_table_is_bounded() {
        let t0 = Instant::now();
        let mut s = Storm::new(true);
        let mut passed = 0;
        for i in 0..(MAX_SOURCES as u32 + 5000) {
            let b = i.to_be_bytes();
            let mac = MacAddr([2, 0, b[0], b[1], b[2], b[3]]);
            passed += usize::from(s.pair(t0, mac).flood.admit(t0, 5));
        }
        assert_eq!(s.sources(), MAX_SOURCES);
        // Each tabled source its frame, the rest one shared burst.
        assert_eq!(passed, MAX_SOURCES + 5);
        s.expire(t0 + SOURCE_IDLE);
        assert_eq!(s.sources(), 0);
    }
}
