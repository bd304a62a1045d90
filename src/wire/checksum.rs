//! The Internet checksum (RFC 1071): the 16-bit one's complement of the one's
//! complement sum of 16-bit big-endian words.
//!
//! `sum` returns the folded but *uncomplemented* partial sum so callers can
//! combine a pseudo-header with a payload (`combine`) before taking the
//! complement (`finish`). A buffer whose stored checksum is right sums to
//! 0xffff, which is what `verify` tests.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Adds up `data` as big-endian 16-bit words (an odd last byte is padded with
/// a zero byte, as RFC 1071 says) and folds the carries into 16 bits.
pub fn sum(data: &[u8]) -> u16 {
    // Accumulate 32-bit words in a u64: with at most 2^32 words per call no
    // carry is lost, and the wide chunks keep the loop short.
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc += u64::from(u32::from_be_bytes(tail));
    fold(acc)
}

/// Folds a wide one's complement accumulator into 16 bits.
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// One's complement sum of partial sums (pseudo-header + header + payload).
pub fn combine(parts: &[u16]) -> u16 {
    fold(parts.iter().map(|&p| u64::from(p)).sum())
}

/// The value to store in a checksum field, given the partial sum of
/// everything it covers (with the field itself zero).
pub fn finish(partial: u16) -> u16 {
    !partial
}

/// The checksum of `data` as it would be stored (field zeroed beforehand).
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data))
}

/// True when `data`, including its stored checksum field, sums to all ones.
pub fn verify(data: &[u8]) -> bool {
    sum(data) == 0xffff
}

/// Partial sum of the IPv4 pseudo-header used by UDP, TCP (RFC 768/793).
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u32) -> u16 {
    let mut acc = u64::from(sum(&src.octets())) + u64::from(sum(&dst.octets()));
    acc += u64::from(protocol);
    acc += u64::from(length >> 16) + u64::from(length & 0xffff);
    fold(acc)
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 section 8.1), used by
/// ICMPv6, UDP and TCP over IPv6.
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u16 {
    let mut acc = u64::from(sum(&src.octets())) + u64::from(sum(&dst.octets()));
    acc += u64::from(next_header);
    acc += u64::from(length >> 16) + u64::from(length & 0xffff);
    fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example of RFC 1071 section 3: words 0001 f203 f4f5 f6f7
    /// sum to ddf2 (folded), so the checksum is 220d.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(checksum(&data), 0x220d);
    }

    /// A real IPv4 header from the kernel capture (A-wg0, frame 3): its
    /// stored checksum 0xcb1a must verify, and recomputing it must agree.
    #[test]
    fn kernel_ipv4_header() {
        let mut h = [
            0x45, 0x00, 0x00, 0x5a, 0xe3, 0x30, 0x40, 0x00, 0x40, 0x2f, 0xcb, 0x1a, 0xc6, 0x13,
            0x00, 0x01, 0xc6, 0x13, 0x00, 0x02,
        ];
        assert!(verify(&h));
        h[10] = 0;
        h[11] = 0;
        assert_eq!(checksum(&h), 0xcb1a);
        h[19] ^= 1;
        h[10] = 0xcb;
        h[11] = 0x1a;
        assert!(!verify(&h));
    }

    /// Odd lengths pad with a zero byte: [ab] == [ab 00].
    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0xab]), sum(&[0xab, 0x00]));
        assert_eq!(sum(&[1, 2, 3, 4, 5]), sum(&[1, 2, 3, 4, 5, 0]));
        assert_eq!(sum(&[]), 0);
    }

    /// The word-at-a-time loop agrees with a naive 16-bit loop for every
    /// length and a spread of contents (carries included).
    #[test]
    fn matches_naive_sum() {
        let mut x: u32 = 0x1234_5678;
        let mut buf = vec![0u8; 300];
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = (x >> 3) as u8 | 0x80;
        }
        for len in 0..buf.len() {
            let d = &buf[..len];
            let mut acc: u32 = 0;
            for c in d.chunks(2) {
                let w = if c.len() == 2 {
                    u16::from_be_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], 0])
                };
                acc += u32::from(w);
                acc = (acc & 0xffff) + (acc >> 16);
            }
            assert_eq!(u32::from(sum(d)), acc, "len {len}");
        }
    }

    #[test]
    fn pseudo_header_v4_words() {
        let p = pseudo_header_v4(
            Ipv4Addr::new(198, 19, 0, 1),
            Ipv4Addr::new(198, 19, 0, 2),
            17,
            8,
        );
        // c613 + 0001 + c613 + 0002 + 0011 + 0008 = 18c42 -> 8c43
        assert_eq!(p, 0x8c43);
        assert_eq!(combine(&[0xffff, 0x0001]), 0x0001);
    }
}
