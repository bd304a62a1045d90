//! TCP MSS clamping on an Ethernet frame (what `iptables -j TCPMSS` does
//! on a router): a SYN (or SYN-ACK) whose MSS option promises more than a
//! path carries whole is rewritten in place to the clamp, and its TCP
//! checksum updated incrementally (RFC 1624), so TCP never sends segments
//! that would need fragments. Everything else is left untouched.
//!
//! Walks: Ethernet, up to two VLAN tags (802.1Q / 802.1ad), IPv4 (not a
//! fragment) or IPv6 (TCP as the first next header), the TCP options.
//! Malformed input is left alone: clamping is an optimisation, never a
//! reason to drop.

use super::bytes::get_be16;
use super::ethernet::{self, ethertype};
use super::{ipv4, ipv6, tcp};

const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;

/// Where the TCP header starts, the IP version and the VLAN tags in
/// front, for a TCP segment carried whole in `frame`.
fn tcp_offset(frame: &[u8]) -> Option<(usize, bool, u16)> {
    let (l3, et) = ethernet::l3_offset(frame)?;
    let tags = ((l3 - ethernet::HEADER_LEN) / ethernet::VLAN_TAG_LEN) as u16;
    match et {
        ethertype::IPV4 => {
            let ip = ipv4::Packet::new_checked(frame.get(l3..)?).ok()?;
            (ip.protocol() == tcp::PROTOCOL && !ip.is_fragment())
                .then(|| (l3 + ip.header_len(), false, tags))
        }
        ethertype::IPV6 => {
            let ip = ipv6::Packet::new_checked(frame.get(l3..)?).ok()?;
            (ip.next_header() == tcp::PROTOCOL).then_some((l3 + ipv6::HEADER_LEN, true, tags))
        }
        _ => None,
    }
}

/// Whether `frame` is a SYN whose MSS option exceeds the clamp (a read-only
/// walk: the caller copies only the frames that need it).
pub fn needs_clamp(frame: &[u8], mss_v4: u16, mss_v6: u16) -> bool {
    mss_at(frame, mss_v4, mss_v6).is_some()
}

/// The offset of a SYN's MSS value that exceeds the clamp, and the clamp.
fn mss_at(frame: &[u8], mss_v4: u16, mss_v6: u16) -> Option<(usize, u16, usize)> {
    let (t, v6, tags) = tcp_offset(frame)?;
    let hdr = frame.get(t..t + tcp::HEADER_LEN)?;
    if hdr[tcp::field::FLAGS] & tcp::flags::SYN == 0 {
        return None;
    }
    let hlen = usize::from(hdr[tcp::field::DATA_OFF] >> 4) * 4;
    if hlen < tcp::HEADER_LEN {
        return None;
    }
    // Each VLAN tag takes 4 bytes of what the link carries whole.
    let clamp = (if v6 { mss_v6 } else { mss_v4 }).saturating_sub(4 * tags);
    let end = t + hlen;
    let mut i = t + tcp::HEADER_LEN;
    while i < end {
        match *frame.get(i)? {
            OPT_END => return None,
            OPT_NOP => i += 1,
            kind => {
                let len = usize::from(*frame.get(i + 1)?);
                if len < 2 || i + len > end {
                    return None;
                }
                if kind == OPT_MSS && len == 4 {
                    let old = get_be16(frame, i + 2)?;
                    return (old > clamp).then_some((i + 2, clamp, t));
                }
                i += len;
            }
        }
    }
    None
}

/// Clamps the MSS option of a SYN in `frame` to `mss_v4` / `mss_v6`.
/// Returns the MSS it replaced, when it did.
pub fn clamp(frame: &mut [u8], mss_v4: u16, mss_v6: u16) -> Option<u16> {
    let (at, clamp, t) = mss_at(frame, mss_v4, mss_v6)?;
    let old = get_be16(frame, at)?;
    frame
        .get_mut(at..at + 2)?
        .copy_from_slice(&clamp.to_be_bytes());
    fix_checksum(frame, t, old, clamp)?;
    Some(old)
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m').
fn fix_checksum(frame: &mut [u8], t: usize, old: u16, new: u16) -> Option<()> {
    let at = t + tcp::field::CHECKSUM.start;
    let hc = get_be16(frame, at)?;
    let mut sum = u32::from(!hc) + u32::from(!old) + u32::from(new);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    frame
        .get_mut(at..at + 2)?
        .copy_from_slice(&(!(sum as u16)).to_be_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// An Ethernet frame with a SYN carrying `opts`, checksums right.
    fn syn(v6: bool, vlan: bool, flags: u8, opts: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
        }
        let hlen = 20 + opts.len();
        let mut tcph = vec![0u8; 20];
        tcph[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcph[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcph[12] = ((hlen / 4) as u8) << 4;
        tcph[13] = flags;
        tcph[14..16].copy_from_slice(&65535u16.to_be_bytes());
        tcph.extend_from_slice(opts);
        let (s4, d4) = (Ipv4Addr::new(198, 19, 1, 1), Ipv4Addr::new(198, 19, 1, 2));
        let (s6, d6): (Ipv6Addr, Ipv6Addr) =
            ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        let ph = if v6 {
            checksum::pseudo_header_v6(s6, d6, 6, hlen as u32)
        } else {
            checksum::pseudo_header_v4(s4, d4, 6, hlen as u32)
        };
        let c = checksum::finish(checksum::combine(&[ph, checksum::sum(&tcph)]));
        tcph[16..18].copy_from_slice(&c.to_be_bytes());
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd]);
            let mut ip = vec![0x60, 0, 0, 0];
            ip.extend_from_slice(&(hlen as u16).to_be_bytes());
            ip.extend_from_slice(&[6, 64]);
            ip.extend_from_slice(&s6.octets());
            ip.extend_from_slice(&d6.octets());
            f.extend_from_slice(&ip);
        } else {
            f.extend_from_slice(&[0x08, 0x00]);
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&((20 + hlen) as u16).to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
            ip.extend_from_slice(&s4.octets());
            ip.extend_from_slice(&d4.octets());
            let c = checksum::checksum(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        f.extend_from_slice(&tcph);
        f
    }

    /// The TCP checksum computed from scratch over the frame as it is.
    fn tcp_ok(f: &[u8]) -> bool {
        let (t, v6, _) = tcp_offset(f).unwrap();
        let seg = &f[t..];
        let ph = if v6 {
            let ip = ipv6::Packet::new_checked(&f[t - 40..]).unwrap();
            checksum::pseudo_header_v6(ip.src_addr(), ip.dst_addr(), 6, seg.len() as u32)
        } else {
            let ip = ipv4::Packet::new_checked(&f[t - 20..]).unwrap();
            checksum::pseudo_header_v4(ip.src_addr(), ip.dst_addr(), 6, seg.len() as u32)
        };
        checksum::finish(checksum::combine(&[ph, checksum::sum(seg)])) == 0
    }

    const MSS_1460: [u8; 4] = [2, 4, 0x05, 0xb4];

    #[test]
    fn a_syn_is_clamped_with_a_valid_checksum_in_every_encapsulation() {
        for v6 in [false, true] {
            for vlan in [false, true] {
                let opts = [&[1, 1][..], &MSS_1460, &[1, 3, 3, 7, 4, 2, 0, 0]].concat();
                let mut f = syn(v6, vlan, tcp::flags::SYN, &opts);
                assert!(tcp_ok(&f));
                assert_eq!(clamp(&mut f, 1326, 1306), Some(1460), "v6 {v6} vlan {vlan}");
                assert!(tcp_ok(&f), "checksum after clamping (v6 {v6} vlan {vlan})");
                let (t, _, _) = tcp_offset(&f).unwrap();
                let want: u16 = if v6 { 1306 } else { 1326 } - if vlan { 4 } else { 0 };
                assert_eq!(get_be16(&f, t + 24), Some(want));
            }
        }
    }

    #[test]
    fn small_mss_plain_segments_and_other_traffic_are_left_alone() {
        let mut small = syn(false, false, tcp::flags::SYN, &[2, 4, 0x02, 0x18]);
        let before = small.clone();
        assert_eq!(clamp(&mut small, 1326, 1306), None);
        assert_eq!(small, before);
        let mut ack = syn(false, false, tcp::flags::ACK, &MSS_1460);
        assert_eq!(clamp(&mut ack, 1326, 1306), None);
        let mut synack = syn(true, false, tcp::flags::SYN | tcp::flags::ACK, &MSS_1460);
        assert_eq!(clamp(&mut synack, 1326, 1306), Some(1460));
        assert!(tcp_ok(&synack));
        let mut arp = vec![0xffu8; 42];
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(clamp(&mut arp, 1326, 1306), None);
    }

    #[test]
    fn hostile_options_and_truncation_never_panic() {
        let good = syn(false, true, tcp::flags::SYN, &[1, 1, 2, 4, 5, 0xb4, 0, 0]);
        for cut in 0..good.len() {
            let mut f = good[..cut].to_vec();
            let _ = clamp(&mut f, 1000, 1000);
        }
        for opts in [
            &[2u8, 0, 0, 0][..],
            &[2, 1, 0, 0],
            &[2, 40, 0, 0],
            &[3, 0, 1, 1],
            &[0, 2, 4, 5],
            &[2, 5, 5, 0xb4],
        ] {
            let mut f = syn(false, false, tcp::flags::SYN, opts);
            let _ = clamp(&mut f, 1000, 1000);
        }
        let mut x: u32 = 7;
        for _ in 0..20_000 {
            let mut f = good.clone();
            for _ in 0..3 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let i = (x as usize >> 8) % f.len();
                f[i] = (x >> 16) as u8;
            }
            let _ = clamp(&mut f, 1000, 1000);
        }
    }
}
