//! Logs an operator can read: drops and moves are worth a warning, but a
//! hostile VM or peer must not be able to flood the log through them. A
//! [`RateLimit`] lets a few lines a second through per key (a port, the
//! move log) and counts what it held back, for the next line to say.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct RateLimit {
    per_second: u32,
    window: Option<Instant>,
    lines: u32,
    suppressed: u64,
}

impl RateLimit {
    pub const fn new(per_second: u32) -> RateLimit {
        RateLimit {
            per_second,
            window: None,
            lines: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may go out now: Some(lines held back since the last
    /// one that went out), or None (held back and counted).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        let fresh = self
            .window
            .is_none_or(|w| now.saturating_duration_since(w) >= Duration::from_secs(1));
        if fresh {
            self.window = Some(now);
            self.lines = 0;
        }
        if self.lines >= self.per_second {
            self.suppressed += 1;
            return None;
        }
        self.lines += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_lines_a_second_and_the_rest_counted() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(2);
        assert_eq!(r.allow(t0), Some(0));
        assert_eq!(r.allow(t0), Some(0));
        assert_eq!(r.allow(t0), None);
        assert_eq!(r.allow(t0 + Duration::from_millis(500)), None);
        assert_eq!(r.allow(t0 + Duration::from_secs(1)), Some(2));
    }
}
