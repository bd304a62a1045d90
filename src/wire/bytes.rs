//! The one big-endian reader of the wire formats. Out-of-range reads give
//! 0 (or None): a view that checked its length never sees them, and one
//! that did not cannot panic.

/// The big-endian u16 at `at`, 0 when `b` is too short.
pub fn be16(b: &[u8], at: usize) -> u16 {
    get_be16(b, at).unwrap_or(0)
}

/// The big-endian u16 at `at`, None when `b` is too short.
pub fn get_be16(b: &[u8], at: usize) -> Option<u16> {
    match b.get(at..at.checked_add(2)?) {
        Some(&[hi, lo]) => Some(u16::from_be_bytes([hi, lo])),
        _ => None,
    }
}

/// The big-endian u32 at `at`, 0 when `b` is too short.
pub fn be32(b: &[u8], at: usize) -> u32 {
    match at.checked_add(4).and_then(|end| b.get(at..end)) {
        Some(&[a, b1, c, d]) => u32::from_be_bytes([a, b1, c, d]),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_range_and_out() {
        let b = [1, 2, 3, 4, 5];
        assert_eq!(be16(&b, 0), 0x0102);
        assert_eq!(be16(&b, 4), 0);
        assert_eq!(get_be16(&b, 3), Some(0x0405));
        assert_eq!(get_be16(&b, usize::MAX), None);
        assert_eq!(be32(&b, 1), 0x0203_0405);
        assert_eq!(be32(&b, 2), 0);
        assert_eq!(be32(&b, usize::MAX - 1), 0);
    }
}
