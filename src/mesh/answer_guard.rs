//! A limit on what one requester can make us send: a 28-byte TT_REQUEST
//! is answered with our whole table (up to ~20 KB in fragments), so an
//! authenticated peer asking in a loop, or naming other originators as the
//! requester, would turn us into an amplifier. Honest nodes ask about once
//! per TT disagreement (the requester's own limit is one request per
//! originator per `TT_REQUEST_TIMEOUT`), far below [`ANSWERS_PER_WINDOW`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::wire::MacAddr;

/// Answers per requester within [`WINDOW`].
pub const ANSWERS_PER_WINDOW: u8 = 5;
pub const WINDOW: Duration = Duration::from_secs(1);
/// Requesters tracked at once (memory bound). When full, finished windows
/// are dropped; if none is finished, new requesters wait.
pub const MAX_REQUESTERS: usize = 4096;

#[derive(Default)]
pub struct AnswerGuard {
    /// requester -> (start of its window, answers in it).
    seen: HashMap<MacAddr, (Instant, u8)>,
}

impl AnswerGuard {
    /// May we answer `requester` now? Counts the answer when we may.
    pub fn allow(&mut self, now: Instant, requester: MacAddr) -> bool {
        if !self.seen.contains_key(&requester) && self.seen.len() >= MAX_REQUESTERS {
            self.seen
                .retain(|_, (t, _)| now.saturating_duration_since(*t) < WINDOW);
            if self.seen.len() >= MAX_REQUESTERS {
                return false;
            }
        }
        let e = self.seen.entry(requester).or_insert((now, 0));
        if now.saturating_duration_since(e.0) >= WINDOW {
            *e = (now, 0);
        }
        if e.1 >= ANSWERS_PER_WINDOW {
            return false;
        }
        e.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requester_gets_its_share_per_window_and_others_theirs() {
        let t0 = Instant::now();
        let (a, b) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        let mut g = AnswerGuard::default();
        for _ in 0..ANSWERS_PER_WINDOW {
            assert!(g.allow(t0, a));
        }
        assert!(!g.allow(t0 + Duration::from_millis(500), a));
        assert!(g.allow(t0 + Duration::from_millis(500), b));
        assert!(g.allow(t0 + WINDOW, a));
    }

    #[test]
    fn the_table_of_requesters_is_bounded() {
        let t0 = Instant::now();
        let mut g = AnswerGuard::default();
        for i in 0..MAX_REQUESTERS {
            let m = MacAddr([2, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            assert!(g.allow(t0, m));
        }
        let new = MacAddr([2, 9, 9, 9, 9, 9]);
        assert!(!g.allow(t0, new), "full and nothing finished");
        assert!(g.allow(t0 + WINDOW, new), "finished windows make room");
        assert!(g.seen.len() <= MAX_REQUESTERS);
    }
}
