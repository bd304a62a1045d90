//! IPv6 neighbour discovery: solicitation and advertisement (RFC 4861 §4.3,
//! §4.4), inside ICMPv6 inside IPv6.
//!
//! The switch needs to recognise two things in a VM's IPv6 traffic: an
//! unsolicited neighbour advertisement (a VM announcing itself, e.g. after a
//! live migration) and a duplicate address detection solicitation (a VM
//! claiming an address from `::`). It reads the IPv6 fixed header itself
//! with the small [`Ipv6Fixed`] view, so it does not depend on the full IPv6
//! module; extension headers are not followed (NDisc messages carry none).

use super::bytes::be16;
use std::net::Ipv6Addr;

use super::{MacAddr, WireError, WireResult};

/// Offsets in the IPv6 fixed header.
pub mod ip_field {
    use core::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

/// Offsets in an NS/NA ICMPv6 message.
pub mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    /// NA flags R, S, O in the first byte of the reserved word.
    pub const FLAGS: usize = 4;
    pub const TARGET: Range<usize> = 8..24;
    pub const OPTIONS: usize = 24;
}

pub const IPV6_HEADER_LEN: usize = 40;
pub const IPPROTO_ICMPV6: u8 = 58;
/// An NS or NA without options.
pub const MESSAGE_LEN: usize = 24;
/// RFC 4861 §7.1: a neighbour discovery message arrives with hop limit 255,
/// which proves it was not forwarded by a router.
pub const NDISC_HOP_LIMIT: u8 = 255;

pub const TYPE_NEIGHBOR_SOLICIT: u8 = 135;
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;
pub const FLAG_ROUTER: u8 = 0x80;
pub const FLAG_SOLICITED: u8 = 0x40;
pub const FLAG_OVERRIDE: u8 = 0x20;
pub const OPT_SOURCE_LLADDR: u8 = 1;
pub const OPT_TARGET_LLADDR: u8 = 2;
/// Options are bounded by the frame; this also bounds the walk.
const MAX_OPTIONS: usize = 64;

fn read_ipv6(b: &[u8], r: core::ops::Range<usize>) -> Ipv6Addr {
    b.get(r)
        .and_then(|s| <[u8; 16]>::try_from(s).ok())
        .map_or(Ipv6Addr::UNSPECIFIED, Ipv6Addr::from)
}

fn byte(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

fn write_byte(b: &mut [u8], i: usize, v: u8) {
    if let Some(x) = b.get_mut(i) {
        *x = v;
    }
}

fn write_bytes(b: &mut [u8], r: core::ops::Range<usize>, v: &[u8]) {
    if let Some(dst) = b.get_mut(r) {
        if dst.len() == v.len() {
            dst.copy_from_slice(v);
        }
    }
}

/// A minimal view of the IPv6 fixed header: enough to find an ICMPv6 body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Fixed<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Fixed<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Fixed { buffer }
    }

    /// Version 6, and the whole payload its length field claims is present.
    pub fn new_checked(buffer: T) -> WireResult<Self> {
        let h = Ipv6Fixed::new_unchecked(buffer);
        let len = h.buffer.as_ref().len();
        if len < IPV6_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if h.version() != 6 {
            return Err(WireError::Malformed);
        }
        if IPV6_HEADER_LEN + usize::from(h.payload_len()) > len {
            return Err(WireError::Truncated);
        }
        Ok(h)
    }

    pub fn version(&self) -> u8 {
        byte(self.buffer.as_ref(), ip_field::VER_TC_FLOW.start) >> 4
    }

    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), ip_field::PAYLOAD_LEN.start)
    }

    pub fn next_header(&self) -> u8 {
        byte(self.buffer.as_ref(), ip_field::NEXT_HEADER)
    }

    pub fn hop_limit(&self) -> u8 {
        byte(self.buffer.as_ref(), ip_field::HOP_LIMIT)
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        read_ipv6(self.buffer.as_ref(), ip_field::SRC)
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        read_ipv6(self.buffer.as_ref(), ip_field::DST)
    }

    /// The payload as the length field says (Ethernet padding cut off).
    pub fn payload(&self) -> &[u8] {
        let end = IPV6_HEADER_LEN + usize::from(self.payload_len());
        self.buffer
            .as_ref()
            .get(IPV6_HEADER_LEN..end)
            .unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Fixed<T> {
    /// Version 6, traffic class 0, flow label 0: how NDisc is sent.
    pub fn set_version_default(&mut self) {
        write_bytes(
            self.buffer.as_mut(),
            ip_field::VER_TC_FLOW,
            &[0x60, 0, 0, 0],
        );
    }

    pub fn set_payload_len(&mut self, len: u16) {
        write_bytes(
            self.buffer.as_mut(),
            ip_field::PAYLOAD_LEN,
            &len.to_be_bytes(),
        );
    }

    pub fn set_next_header(&mut self, proto: u8) {
        write_byte(self.buffer.as_mut(), ip_field::NEXT_HEADER, proto);
    }

    pub fn set_hop_limit(&mut self, hops: u8) {
        write_byte(self.buffer.as_mut(), ip_field::HOP_LIMIT, hops);
    }

    pub fn set_src_addr(&mut self, a: &Ipv6Addr) {
        write_bytes(self.buffer.as_mut(), ip_field::SRC, &a.octets());
    }

    pub fn set_dst_addr(&mut self, a: &Ipv6Addr) {
        write_bytes(self.buffer.as_mut(), ip_field::DST, &a.octets());
    }

    /// The payload after the fixed header, whatever the length field says.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(IPV6_HEADER_LEN..)
            .unwrap_or(&mut [])
    }
}

/// A zero-copy view of an ICMPv6 neighbour solicitation or advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Message<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Message { buffer }
    }

    /// An NS or NA with code 0 and a well-formed option list.
    pub fn new_checked(buffer: T) -> WireResult<Self> {
        let m = Message::new_unchecked(buffer);
        if m.buffer.as_ref().len() < MESSAGE_LEN {
            return Err(WireError::Truncated);
        }
        if !matches!(m.msg_type(), TYPE_NEIGHBOR_SOLICIT | TYPE_NEIGHBOR_ADVERT) {
            return Err(WireError::Unsupported);
        }
        if m.code() != 0 {
            return Err(WireError::Malformed);
        }
        m.check_options()?;
        Ok(m)
    }

    pub fn msg_type(&self) -> u8 {
        byte(self.buffer.as_ref(), field::TYPE)
    }

    pub fn code(&self) -> u8 {
        byte(self.buffer.as_ref(), field::CODE)
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    pub fn is_solicit(&self) -> bool {
        self.msg_type() == TYPE_NEIGHBOR_SOLICIT
    }

    pub fn is_advert(&self) -> bool {
        self.msg_type() == TYPE_NEIGHBOR_ADVERT
    }

    /// The NA flags byte (R, S, O); zero in a solicitation.
    pub fn flags(&self) -> u8 {
        if self.is_advert() {
            byte(self.buffer.as_ref(), field::FLAGS)
                & (FLAG_ROUTER | FLAG_SOLICITED | FLAG_OVERRIDE)
        } else {
            0
        }
    }

    pub fn router_flag(&self) -> bool {
        self.flags() & FLAG_ROUTER != 0
    }

    pub fn solicited_flag(&self) -> bool {
        self.flags() & FLAG_SOLICITED != 0
    }

    pub fn override_flag(&self) -> bool {
        self.flags() & FLAG_OVERRIDE != 0
    }

    pub fn target(&self) -> Ipv6Addr {
        read_ipv6(self.buffer.as_ref(), field::TARGET)
    }

    /// Walks the options; RFC 4861 §4.6: a zero length is invalid.
    fn check_options(&self) -> WireResult<()> {
        let b = self.buffer.as_ref();
        let mut off = field::OPTIONS;
        for _ in 0..MAX_OPTIONS {
            if off == b.len() {
                return Ok(());
            }
            let len = usize::from(*b.get(off + 1).ok_or(WireError::Truncated)?) * 8;
            if len == 0 {
                return Err(WireError::Malformed);
            }
            if off + len > b.len() {
                return Err(WireError::Truncated);
            }
            off += len;
        }
        Err(WireError::Malformed)
    }

    /// The first link-layer address option of type `kind` (1 source, 2 target).
    fn lladdr_option(&self, kind: u8) -> Option<MacAddr> {
        let b = self.buffer.as_ref();
        let mut off = field::OPTIONS;
        for _ in 0..MAX_OPTIONS {
            let t = *b.get(off)?;
            let len = usize::from(*b.get(off + 1)?) * 8;
            if len == 0 {
                return None;
            }
            if t == kind && len >= 8 {
                return b.get(off + 2..off + 8).and_then(MacAddr::from_bytes);
            }
            off += len;
        }
        None
    }

    pub fn source_lladdr(&self) -> Option<MacAddr> {
        self.lladdr_option(OPT_SOURCE_LLADDR)
    }

    pub fn target_lladdr(&self) -> Option<MacAddr> {
        self.lladdr_option(OPT_TARGET_LLADDR)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Message<T> {
    /// Computes and stores the ICMPv6 checksum for the given addresses.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        if let Some(c) = self.buffer.as_mut().get_mut(field::CHECKSUM) {
            c.copy_from_slice(&[0, 0]);
        }
        let sum = icmpv6_checksum(src, dst, self.buffer.as_ref());
        if let Some(c) = self.buffer.as_mut().get_mut(field::CHECKSUM) {
            c.copy_from_slice(&sum.to_be_bytes());
        }
    }

    pub fn set_flags(&mut self, flags: u8) {
        write_byte(self.buffer.as_mut(), field::FLAGS, flags);
    }

    /// Type (NS or NA) and code 0.
    pub fn set_msg_type(&mut self, msg_type: u8) {
        write_byte(self.buffer.as_mut(), field::TYPE, msg_type);
        write_byte(self.buffer.as_mut(), field::CODE, 0);
    }

    pub fn set_target(&mut self, target: &Ipv6Addr) {
        write_bytes(self.buffer.as_mut(), field::TARGET, &target.octets());
    }

    /// Writes a link-layer address option (`OPT_SOURCE_LLADDR` or
    /// `OPT_TARGET_LLADDR`, 8 bytes) as the first option.
    pub fn set_first_lladdr_option(&mut self, kind: u8, mac: MacAddr) {
        let b = self.buffer.as_mut();
        write_byte(b, field::OPTIONS, kind);
        write_byte(b, field::OPTIONS + 1, 1); // length in units of 8 bytes
        write_bytes(b, field::OPTIONS + 2..field::OPTIONS + 8, &mac.0);
    }
}

/// The ones-complement checksum over the IPv6 pseudo-header and `body`;
/// a body with a correct checksum field sums to 0.
pub fn icmpv6_checksum(src: &Ipv6Addr, dst: &Ipv6Addr, body: &[u8]) -> u16 {
    fn add(sum: u32, data: &[u8]) -> u32 {
        let mut s = sum;
        let mut chunks = data.chunks_exact(2);
        for c in &mut chunks {
            if let &[hi, lo] = c {
                s += u32::from(u16::from_be_bytes([hi, lo]));
                s = (s & 0xffff) + (s >> 16);
            }
        }
        if let [last] = chunks.remainder() {
            s += u32::from(*last) << 8;
        }
        (s & 0xffff) + (s >> 16)
    }
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut s = add(0, &src.octets());
    s = add(s, &dst.octets());
    s = add(s, &len.to_be_bytes());
    s = add(s, &[0, 0, 0, IPPROTO_ICMPV6]);
    s = add(s, body);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// What an NS or NA says, decoded from an IPv6 packet. No allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ndisc {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// `TYPE_NEIGHBOR_SOLICIT` or `TYPE_NEIGHBOR_ADVERT`.
    pub msg_type: u8,
    /// NA flags (R, S, O); 0 for an NS.
    pub flags: u8,
    pub target: Ipv6Addr,
    pub source_lladdr: Option<MacAddr>,
    pub target_lladdr: Option<MacAddr>,
}

impl Ndisc {
    /// Decodes an IPv6 packet (the Ethernet payload) carrying an NS or NA.
    /// `Unsupported` for any other IPv6 packet; `Malformed` when the hop
    /// limit is not 255 or the checksum is wrong (hosts would ignore it).
    pub fn parse(ipv6: &[u8]) -> WireResult<Ndisc> {
        let ip = Ipv6Fixed::new_checked(ipv6)?;
        if ip.next_header() != IPPROTO_ICMPV6 {
            return Err(WireError::Unsupported);
        }
        let m = Message::new_checked(ip.payload())?;
        if ip.hop_limit() != NDISC_HOP_LIMIT {
            return Err(WireError::Malformed);
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if icmpv6_checksum(&src, &dst, ip.payload()) != 0 {
            return Err(WireError::Malformed);
        }
        Ok(Ndisc {
            src,
            dst,
            msg_type: m.msg_type(),
            flags: m.flags(),
            target: m.target(),
            source_lladdr: m.source_lladdr(),
            target_lladdr: m.target_lladdr(),
        })
    }

    pub fn is_solicit(&self) -> bool {
        self.msg_type == TYPE_NEIGHBOR_SOLICIT
    }

    pub fn is_advert(&self) -> bool {
        self.msg_type == TYPE_NEIGHBOR_ADVERT
    }

    /// An advertisement nobody asked for: a host announcing its address
    /// (RFC 4861 §7.2.6), e.g. a VM that just arrived on this node.
    pub fn is_unsolicited_advert(&self) -> bool {
        self.is_advert() && self.flags & FLAG_SOLICITED == 0
    }

    /// Duplicate address detection (RFC 4862 §5.4.2): a solicitation from
    /// the unspecified address for a tentative address.
    pub fn is_dad_solicit(&self) -> bool {
        self.is_solicit() && self.src.is_unspecified()
    }
}

/// Captured frames shared with the other wire tests.
#[cfg(test)]
pub(crate) mod tests_frames {
    // Frames 20 and 21 of refvm/captures/A-bat0.pcap.
    pub const NS: &str = "3333ff000002020000000a0086dd6000000000203afffd000198001900010000000000000001ff0200000000000000000001ff0000028700703400000000fd0001980019000100000000000000020101020000000a00";
    pub const NA: &str = "020000000a00020000000b0086dd6000000000203afffd000198001900010000000000000002fd00019800190001000000000000000188000c8660000000fd0001980019000100000000000000020201020000000b00";
}

#[cfg(test)]
mod tests {
    use super::tests_frames::{NA, NS};
    use super::*;
    use crate::wire::ethernet::{ethertype, Frame};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn ipv6_payload(frame: &[u8]) -> &[u8] {
        let f = Frame::new_checked(frame).unwrap();
        assert_eq!(f.inner_ethertype(), ethertype::IPV6);
        &frame[f.payload_offset()..]
    }

    #[test]
    fn captured_solicit() {
        let b = hex(NS);
        let n = Ndisc::parse(ipv6_payload(&b)).unwrap();
        assert!(n.is_solicit());
        assert_eq!(n.src, "fd00:198:19:1::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(n.dst, "ff02::1:ff00:2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(n.target, "fd00:198:19:1::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(n.source_lladdr, Some("02:00:00:00:0a:00".parse().unwrap()));
        assert_eq!(n.target_lladdr, None);
        assert!(!n.is_dad_solicit());
        assert!(!n.is_unsolicited_advert());
    }

    #[test]
    fn captured_advert() {
        let b = hex(NA);
        let n = Ndisc::parse(ipv6_payload(&b)).unwrap();
        assert!(n.is_advert());
        assert_eq!(n.flags, FLAG_SOLICITED | FLAG_OVERRIDE);
        assert_eq!(n.target, "fd00:198:19:1::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(n.target_lladdr, Some("02:00:00:00:0b:00".parse().unwrap()));
        assert!(!n.is_unsolicited_advert());
    }

    #[test]
    fn unsolicited_advert_built_from_capture() {
        let mut b = hex(NA);
        // To all-nodes, S cleared: what a VM sends when it arrives.
        let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
        b[14 + 24..14 + 40].copy_from_slice(&all_nodes.octets());
        let src = Ipv6Fixed::new_checked(&b[14..]).unwrap().src_addr();
        let mut m = Message::new_unchecked(&mut b[14 + 40..]);
        m.set_flags(FLAG_OVERRIDE);
        m.fill_checksum(&src, &all_nodes);
        let n = Ndisc::parse(&b[14..]).unwrap();
        assert!(n.is_unsolicited_advert());
        assert!(!n.is_dad_solicit());
    }

    #[test]
    fn dad_solicit_built_from_capture() {
        let mut b = hex(NS);
        b[14 + 8..14 + 24].fill(0); // from ::
        let dst = Ipv6Fixed::new_checked(&b[14..]).unwrap().dst_addr();
        // DAD carries no source link-layer option: drop it, fix the length.
        b.truncate(14 + 40 + 24);
        b[14 + 4..14 + 6].copy_from_slice(&24u16.to_be_bytes());
        Message::new_unchecked(&mut b[14 + 40..]).fill_checksum(&Ipv6Addr::UNSPECIFIED, &dst);
        let n = Ndisc::parse(&b[14..]).unwrap();
        assert!(n.is_dad_solicit());
        assert_eq!(n.source_lladdr, None);
    }

    #[test]
    fn rejects_bad_checksum_hop_limit_and_options() {
        let b = hex(NS);
        let mut bad = b.clone();
        bad[14 + 40 + 2] ^= 1;
        assert_eq!(Ndisc::parse(&bad[14..]), Err(WireError::Malformed));
        let mut bad = b.clone();
        bad[14 + 7] = 64;
        assert_eq!(Ndisc::parse(&bad[14..]), Err(WireError::Malformed));
        let mut bad = b.clone();
        bad[14 + 40 + 25] = 0; // option length 0
        assert_eq!(Ndisc::parse(&bad[14..]), Err(WireError::Malformed));
        for n in 0..b.len() - 14 {
            assert!(Ndisc::parse(&b[14..14 + n]).is_err(), "{n}");
        }
        let mut v4 = b.clone();
        v4[14] = 0x40;
        assert_eq!(Ndisc::parse(&v4[14..]), Err(WireError::Malformed));
    }
}

/// A neighbour advertisement as values, with its target link-layer address
/// option (smoltcp's `Repr`): what announcements build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdvertRepr {
    pub flags: u8,
    pub target: Ipv6Addr,
    pub target_lladdr: MacAddr,
}

impl AdvertRepr {
    /// ICMPv6 message length: the NA and one 8-byte link-layer option.
    pub const LEN: usize = MESSAGE_LEN + 8;

    /// Writes the message into `m` (at least [`AdvertRepr::LEN`] bytes)
    /// with the checksum for `src` -> `dst`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        m: &mut Message<T>,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
    ) {
        m.set_msg_type(TYPE_NEIGHBOR_ADVERT);
        m.set_flags(self.flags);
        m.set_target(&self.target);
        m.set_first_lladdr_option(OPT_TARGET_LLADDR, self.target_lladdr);
        m.fill_checksum(src, dst);
    }

    /// Reads a checked NA (None: not an advertisement, or no target
    /// link-layer address option).
    pub fn parse<T: AsRef<[u8]>>(m: &Message<T>) -> Option<AdvertRepr> {
        if !m.is_advert() {
            return None;
        }
        Some(AdvertRepr {
            flags: m.flags(),
            target: m.target(),
            target_lladdr: m.target_lladdr()?,
        })
    }
}

#[cfg(test)]
mod advert_repr_tests {
    use super::*;

    #[test]
    fn emit_then_parse_with_a_valid_checksum() {
        let r = AdvertRepr {
            flags: FLAG_OVERRIDE,
            target: "fd00::5".parse().unwrap(),
            target_lladdr: MacAddr([2, 0, 0, 0, 0, 5]),
        };
        let mut buf = [0u8; AdvertRepr::LEN];
        let src: Ipv6Addr = "fd00::5".parse().unwrap();
        let dst: Ipv6Addr = "ff02::1".parse().unwrap();
        r.emit(&mut Message::new_unchecked(&mut buf[..]), &src, &dst);
        let m = Message::new_checked(&buf[..]).unwrap();
        assert_eq!(AdvertRepr::parse(&m), Some(r));
        assert_eq!(icmpv6_checksum(&src, &dst, &buf), 0, "checksum");
        assert_eq!(buf[0], TYPE_NEIGHBOR_ADVERT);
        assert_eq!(&buf[24..26], &[OPT_TARGET_LLADDR, 1]);
    }
}
