//! Ethernet II frames with at most one 802.1Q tag.
//!
//! A VM frame is what the switch and batman-adv look at: destination, source,
//! and the VLAN it belongs to. batman-adv keys its translation table on
//! (MAC, vid) where vid is 0 for an untagged frame and `0x8000 | id` for a
//! tagged one (`BATADV_VLAN_HAS_TAG`), so [`Frame::batman_vid`] returns that
//! encoding directly. Q-in-Q is not unpacked: the outer tag decides the VLAN,
//! as it does in batman-adv's `batadv_get_vid()`.

use super::bytes::{be16, get_be16};
use super::{MacAddr, WireError, WireResult};

/// EtherType values the project handles.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    /// Reverse ARP: qemu announces a migrated VM with a RARP request.
    pub const RARP: u16 = 0x8035;
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service tag (QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
    pub const IPV6: u16 = 0x86dd;
    /// batman-adv's own ethertype (ETH_P_BATMAN).
    pub const BATMAN: u16 = 0x4305;
}

/// Field offsets of an Ethernet II header and of an 802.1Q tag after it.
pub mod field {
    use core::ops::Range;
    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    /// Tag control information (PCP, DEI, VID) when ETHERTYPE is 0x8100.
    pub const VLAN_TCI: Range<usize> = 14..16;
    /// The encapsulated ethertype after a tag.
    pub const VLAN_ETHERTYPE: Range<usize> = 16..18;
}

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Length of the header with one 802.1Q tag.
pub const VLAN_HEADER_LEN: usize = 18;
/// An 802.1Q tag.
pub const VLAN_TAG_LEN: usize = 4;
/// The VLAN id bits of a TCI.
pub const VID_MASK: u16 = 0x0fff;
/// batman-adv's marker for "tagged" in its (MAC, vid) keys.
pub const BATMAN_VLAN_HAS_TAG: u16 = 0x8000;

/// A zero-copy view of an Ethernet frame.
///
/// After [`Frame::new_checked`] every getter reads inside the buffer. Getters
/// on a view built with [`Frame::new_unchecked`] over a short buffer read as
/// zero instead of panicking: hostile input can never abort the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

fn read_mac(b: &[u8], r: core::ops::Range<usize>) -> MacAddr {
    b.get(r).and_then(MacAddr::from_bytes).unwrap_or_default()
}

fn write_bytes(b: &mut [u8], r: core::ops::Range<usize>, v: &[u8]) {
    if let Some(dst) = b.get_mut(r) {
        if dst.len() == v.len() {
            dst.copy_from_slice(v);
        }
    }
}

impl<T: AsRef<[u8]>> Frame<T> {
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// A view whose getters are all in bounds, or `Truncated`.
    pub fn new_checked(buffer: T) -> WireResult<Frame<T>> {
        let f = Frame::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// The buffer holds the whole header, including the 802.1Q tag if the
    /// ethertype announces one.
    pub fn check_len(&self) -> WireResult<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.ethertype() == ethertype::VLAN && len < VLAN_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn dst_addr(&self) -> MacAddr {
        read_mac(self.buffer.as_ref(), field::DESTINATION)
    }

    pub fn src_addr(&self) -> MacAddr {
        read_mac(self.buffer.as_ref(), field::SOURCE)
    }

    /// The outer ethertype (0x8100 for a tagged frame).
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE.start)
    }

    pub fn is_tagged(&self) -> bool {
        self.ethertype() == ethertype::VLAN
    }

    /// The tag control information of an 802.1Q frame.
    pub fn vlan_tci(&self) -> Option<u16> {
        self.is_tagged()
            .then(|| be16(self.buffer.as_ref(), field::VLAN_TCI.start))
    }

    /// The 12-bit VLAN id of an 802.1Q frame (0 for a priority tag).
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan_tci().map(|t| t & VID_MASK)
    }

    /// The VLAN in batman-adv's encoding: 0 untagged, `0x8000 | id` tagged.
    pub fn batman_vid(&self) -> u16 {
        self.vlan_id().map_or(0, |id| id | BATMAN_VLAN_HAS_TAG)
    }

    /// The ethertype of the payload: after the tag when there is one.
    pub fn inner_ethertype(&self) -> u16 {
        if self.is_tagged() {
            be16(self.buffer.as_ref(), field::VLAN_ETHERTYPE.start)
        } else {
            self.ethertype()
        }
    }

    /// Where the payload starts: 14, or 18 behind a tag.
    pub fn payload_offset(&self) -> usize {
        if self.is_tagged() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// The payload after the (tagged) header; empty when the buffer ends there.
    pub fn payload(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(self.payload_offset()..)
            .unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    pub fn set_dst_addr(&mut self, mac: MacAddr) {
        write_bytes(self.buffer.as_mut(), field::DESTINATION, &mac.0);
    }

    pub fn set_src_addr(&mut self, mac: MacAddr) {
        write_bytes(self.buffer.as_mut(), field::SOURCE, &mac.0);
    }

    pub fn set_ethertype(&mut self, value: u16) {
        write_bytes(self.buffer.as_mut(), field::ETHERTYPE, &value.to_be_bytes());
    }

    /// Writes the 802.1Q tag fields; the outer ethertype must be set to
    /// [`ethertype::VLAN`] separately.
    pub fn set_vlan_tag(&mut self, tci: u16, inner: u16) {
        let b = self.buffer.as_mut();
        write_bytes(b, field::VLAN_TCI, &tci.to_be_bytes());
        write_bytes(b, field::VLAN_ETHERTYPE, &inner.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let off = self.payload_offset();
        self.buffer.as_mut().get_mut(off..).unwrap_or(&mut [])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Frame 1 of refvm/captures/A-bat0.pcap: ARP who-has 198.19.1.2.
    const ARP_REQUEST: &str =
        "ffffffffffff020000000a0008060001080006040001020000000a00c6130101000000000000c6130102";

    #[test]
    fn parses_captured_arp() {
        let b = hex(ARP_REQUEST);
        let f = Frame::new_checked(&b[..]).unwrap();
        assert_eq!(f.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(f.src_addr(), "02:00:00:00:0a:00".parse().unwrap());
        assert_eq!(f.ethertype(), ethertype::ARP);
        assert_eq!(f.inner_ethertype(), ethertype::ARP);
        assert_eq!(f.vlan_id(), None);
        assert_eq!(f.batman_vid(), 0);
        assert_eq!(f.payload_offset(), 14);
        assert_eq!(f.payload().len(), 28);
    }

    #[test]
    fn tagged_frame() {
        // The captured ARP with a tag (PCP 5, VID 42) inserted.
        let mut b = hex(ARP_REQUEST);
        b.splice(12..12, [0x81, 0x00, 0xa0, 0x2a]);
        let f = Frame::new_checked(&b[..]).unwrap();
        assert!(f.is_tagged());
        assert_eq!(f.vlan_tci(), Some(0xa02a));
        assert_eq!(f.vlan_id(), Some(42));
        assert_eq!(f.batman_vid(), 0x8000 | 42);
        assert_eq!(f.inner_ethertype(), ethertype::ARP);
        assert_eq!(f.payload_offset(), 18);
        assert_eq!(f.payload(), &hex(ARP_REQUEST)[14..]);
    }

    #[test]
    fn priority_tag_is_vlan_zero_tagged() {
        let mut b = hex(ARP_REQUEST);
        b.splice(12..12, [0x81, 0x00, 0x60, 0x00]);
        let f = Frame::new_checked(&b[..]).unwrap();
        assert_eq!(f.vlan_id(), Some(0));
        assert_eq!(f.batman_vid(), 0x8000);
    }

    #[test]
    fn truncation() {
        let b = hex(ARP_REQUEST);
        for n in 0..HEADER_LEN {
            assert_eq!(Frame::new_checked(&b[..n]), Err(WireError::Truncated));
        }
        assert!(Frame::new_checked(&b[..14]).is_ok());
        let tagged = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x81, 0, 0, 1, 8];
        assert_eq!(Frame::new_checked(&tagged[..]), Err(WireError::Truncated));
        // Unchecked views over short buffers read zeros instead of panicking.
        let f = Frame::new_unchecked(&tagged[..]);
        assert_eq!(f.vlan_id(), Some(1));
        assert_eq!(f.inner_ethertype(), 0);
        assert!(f.payload().is_empty());
    }

    #[test]
    fn setters_round_trip() {
        let mut b = [0u8; 18 + 4];
        let mut f = Frame::new_unchecked(&mut b[..]);
        let a: MacAddr = "02:00:00:00:0b:00".parse().unwrap();
        f.set_dst_addr(MacAddr::BROADCAST);
        f.set_src_addr(a);
        f.set_ethertype(ethertype::VLAN);
        f.set_vlan_tag(7, ethertype::IPV6);
        f.payload_mut().copy_from_slice(&[1, 2, 3, 4]);
        let f = Frame::new_checked(&b[..]).unwrap();
        assert_eq!(f.src_addr(), a);
        assert_eq!(f.batman_vid(), 0x8007);
        assert_eq!(f.inner_ethertype(), ethertype::IPV6);
        assert_eq!(f.payload(), &[1, 2, 3, 4]);
    }

    /// Deterministic xorshift so a failure reproduces.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Drives every accessor of the Ethernet, ARP and NDisc views over
    /// 200k random and truncated buffers; any panic fails the test.
    #[test]
    fn random_and_truncated_buffers_never_panic() {
        use crate::wire::{arp, ndisc};
        let seeds = [hex(ARP_REQUEST), hex(crate::wire::ndisc::tests_frames::NS)];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut buf = [0u8; 160];
        let (mut parsed, mut ndisc_parsed) = (0usize, 0usize);
        for i in 0..200_000 {
            let len = (rng.next() % buf.len() as u64) as usize;
            for b in buf.iter_mut() {
                *b = rng.next() as u8;
            }
            if i % 2 == 0 {
                // Mutate a real frame so the deep parsers get exercised too.
                let seed = &seeds[i / 2 % seeds.len()];
                buf[..seed.len()].copy_from_slice(seed);
                let flips = rng.next() % 4;
                for _ in 0..flips {
                    let at = (rng.next() % seed.len() as u64) as usize;
                    buf[at] = rng.next() as u8;
                }
                if i % 8 == 0 {
                    buf[12..16].copy_from_slice(&[0x81, 0x00, 0x00, 0x05]);
                }
            }
            let b = &buf[..len];
            let f = Frame::new_unchecked(b);
            let _ = (f.dst_addr(), f.src_addr(), f.vlan_id(), f.batman_vid());
            let _ = (f.inner_ethertype(), f.payload().len());
            let checked = Frame::new_checked(b);
            let p = f.payload();
            let a = arp::Packet::new_unchecked(p);
            let _ = (a.operation(), a.sha(), a.spa(), a.tha(), a.tpa());
            let _ = (a.is_gratuitous(), a.is_rarp_announce());
            if arp::Packet::new_checked(p).is_ok() {
                parsed += 1;
            }
            let m = ndisc::Message::new_unchecked(p);
            let _ = (m.flags(), m.target(), m.source_lladdr(), m.target_lladdr());
            let ip = ndisc::Ipv6Fixed::new_unchecked(p);
            let _ = (ip.src_addr(), ip.dst_addr(), ip.payload().len());
            if let Ok(n) = ndisc::Ndisc::parse(p) {
                assert!(checked.is_ok());
                let _ = (n.is_dad_solicit(), n.is_unsolicited_advert());
                ndisc_parsed += 1;
            }
            let mut owned = [0u8; 160];
            owned[..len].copy_from_slice(b);
            let mut fm = Frame::new_unchecked(&mut owned[..len]);
            fm.set_src_addr(MacAddr::BROADCAST);
            fm.set_vlan_tag(1, 2);
            let _ = fm.payload_mut().len();
        }
        // The mutated real frames must reach the deep parsers sometimes.
        assert!(parsed > 1000, "only {parsed} ARP parsed");
        assert!(ndisc_parsed > 1000, "only {ndisc_parsed} NDisc parsed");
    }
}

/// Where the L3 header starts and its ethertype, after up to two VLAN tags
/// (802.1Q, and an 802.1ad outer tag for QinQ): the one place frames are
/// walked to L3 (segmentation, coalescing, MSS clamping, the hooks).
pub fn l3_offset(frame: &[u8]) -> Option<(usize, u16)> {
    let mut off = HEADER_LEN;
    let mut et = get_be16(frame, off - 2)?;
    for _ in 0..2 {
        if et != ethertype::VLAN && et != ethertype::QINQ {
            break;
        }
        off += VLAN_TAG_LEN;
        et = get_be16(frame, off - 2)?;
    }
    Some((off, et))
}

#[cfg(test)]
mod l3_tests {
    use super::*;

    #[test]
    fn untagged_tagged_and_qinq() {
        let mut f = vec![0u8; 30];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(l3_offset(&f), Some((14, ethertype::IPV4)));
        f[12..14].copy_from_slice(&[0x81, 0x00]);
        f[16..18].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(l3_offset(&f), Some((18, ethertype::IPV6)));
        f[12..14].copy_from_slice(&[0x88, 0xa8]);
        f[16..18].copy_from_slice(&[0x81, 0x00]);
        f[20..22].copy_from_slice(&[0x43, 0x05]);
        assert_eq!(l3_offset(&f), Some((22, ethertype::BATMAN)));
        assert_eq!(l3_offset(&f[..21]), None);
        assert_eq!(l3_offset(&[]), None);
    }
}
