//! Sliding sequence-number windows (`bitarray.c`, `batadv_window_protected`).
//! Bit 0 is the newest sequence number, bit n the one n steps older.

use std::time::{Duration, Instant};

/// `BATADV_TQ_LOCAL_WINDOW_SIZE` and `BATADV_BCAST_MAX_AGE`: both 64, one u64.
pub const WINDOW_SIZE: i32 = 64;
/// `BATADV_EXPECTED_SEQNO_RANGE`.
pub const EXPECTED_SEQNO_RANGE: i32 = 65536;
/// `BATADV_RESET_PROTECTION_MS`.
pub const RESET_PROTECTION: Duration = Duration::from_millis(30_000);

/// Is `curr` (relative to the newest `last`) already marked?
pub fn test_bit(bits: u64, last: u32, curr: u32) -> bool {
    let diff = last.wrapping_sub(curr) as i32;
    if !(0..WINDOW_SIZE).contains(&diff) {
        return false;
    }
    bits & (1u64 << diff) != 0
}

/// Marks bit `n` (0 = newest); out-of-window positions are ignored.
pub fn set_bit(bits: &mut u64, n: i32) {
    if (0..WINDOW_SIZE).contains(&n) {
        *bits |= 1u64 << n;
    }
}

/// `batadv_bit_get_packet`: moves the window for a packet `diff` newer than
/// the newest seen and marks it when `set_mark`. Returns true if the window moved.
pub fn bit_get_packet(bits: &mut u64, diff: i32, set_mark: bool) -> bool {
    if diff <= 0 && diff > -WINDOW_SIZE {
        if set_mark {
            set_bit(bits, -diff);
        }
        return false;
    }
    if diff > 0 && diff < WINDOW_SIZE {
        *bits <<= diff;
    } else {
        // far newer (missed many) or far older (the other host restarted)
        *bits = 0;
    }
    if set_mark {
        set_bit(bits, 0);
    }
    true
}

/// `batadv_window_protected`: a seqno far outside the window is accepted as a
/// restart at most once per `RESET_PROTECTION`; within that time it is refused.
pub fn window_protected(
    diff: i32,
    range: i32,
    last_reset: &mut Option<Instant>,
    now: Instant,
) -> bool {
    if diff <= -range || diff >= EXPECTED_SEQNO_RANGE {
        if let Some(t) = *last_reset {
            if now.saturating_duration_since(t) < RESET_PROTECTION {
                return true;
            }
        }
        *last_reset = Some(now);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_marks_and_slides() {
        let mut b = 0u64;
        assert!(bit_get_packet(&mut b, 1, true));
        assert_eq!(b, 1);
        assert!(!bit_get_packet(&mut b, -3, true));
        assert_eq!(b, 0b1001);
        assert!(test_bit(b, 100, 97));
        assert!(!test_bit(b, 100, 98));
        assert!(!test_bit(b, 100, 101));
        assert!(bit_get_packet(&mut b, 2, false));
        assert_eq!(b, 0b100100);
        assert!(bit_get_packet(&mut b, 64, true));
        assert_eq!(b, 1);
        assert!(bit_get_packet(&mut b, -64, true));
        assert_eq!(b, 1);
    }

    #[test]
    fn reset_protection() {
        let t0 = Instant::now();
        let mut r = None;
        assert!(!window_protected(-100, 64, &mut r, t0));
        assert!(window_protected(
            -100,
            64,
            &mut r,
            t0 + Duration::from_secs(1)
        ));
        assert!(!window_protected(
            5,
            64,
            &mut r,
            t0 + Duration::from_secs(1)
        ));
        assert!(!window_protected(
            -100,
            64,
            &mut r,
            t0 + Duration::from_secs(31)
        ));
    }
}
