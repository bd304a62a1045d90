//! IPv6 fixed header (RFC 8200), the inner header when node addresses are IPv6.
//!
//! Extension headers are not walked: a gretap peer puts GRE (47) directly
//! after the fixed header, so anything else is `next_header() != 47` and the
//! caller counts it as unsupported.
//!
//! `Packet::new_checked` guarantees 40 bytes, version 6, and that the payload
//! length fits the buffer; bytes past it (padding) are not `payload()`.

use super::bytes::{be16, be32};
use std::net::Ipv6Addr;

use super::{WireError, WireResult};

pub mod field {
    use std::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

pub const HEADER_LEN: usize = 40;
/// Next-header value of the fragment extension header (RFC 8200 4.5).
pub const PROTO_FRAGMENT: u8 = 44;
/// The fragment header: next header, reserved, offset + M, identification.
pub const FRAG_HEADER_LEN: usize = 8;

pub mod frag_field {
    use std::ops::Range;
    pub const NXT_HDR: usize = 0;
    pub const RESERVED: usize = 1;
    pub const OFF_M: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..8;
}

const FRAG_M: u16 = 0x0001;
const FRAG_OFFSET_MASK: u16 = 0xfff8;

#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn addr_at(b: &[u8], r: std::ops::Range<usize>) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[r]);
    Ipv6Addr::from(a)
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> WireResult<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> WireResult<()> {
        let b = self.buffer.as_ref();
        let first = *b.first().ok_or(WireError::Truncated)?;
        if first >> 4 != 6 {
            return Err(WireError::Malformed);
        }
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if HEADER_LEN + usize::from(self.payload_len()) > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn word0(&self) -> u32 {
        be32(self.buffer.as_ref(), 0)
    }

    pub fn version(&self) -> u8 {
        (self.word0() >> 28) as u8
    }

    pub fn traffic_class(&self) -> u8 {
        (self.word0() >> 20) as u8
    }

    pub fn flow_label(&self) -> u32 {
        self.word0() & 0x000f_ffff
    }

    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), 4)
    }

    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), field::SRC_ADDR)
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// The bytes after the fixed header, up to the payload length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Version 6, traffic class and flow label in one go.
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let w = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&w.to_be_bytes());
    }

    pub fn set_payload_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = v;
    }

    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// A view of the 8-byte fragment header that follows the fixed header
/// when `next_header()` is PROTO_FRAGMENT. `new_checked` guarantees 8 bytes.
#[derive(Debug, Clone)]
pub struct FragHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FragHeader<T> {
    pub const fn new_unchecked(buffer: T) -> FragHeader<T> {
        FragHeader { buffer }
    }

    pub fn new_checked(buffer: T) -> WireResult<FragHeader<T>> {
        if buffer.as_ref().len() < FRAG_HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    fn off_m(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }

    /// The header of the fragmentable part (47 for a gretap).
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[frag_field::NXT_HDR]
    }

    /// Offset of this fragment's data in bytes (a multiple of 8).
    pub fn frag_offset(&self) -> u16 {
        self.off_m() & FRAG_OFFSET_MASK
    }

    pub fn more_frags(&self) -> bool {
        self.off_m() & FRAG_M != 0
    }

    pub fn ident(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }

    /// The fragment's data (what follows the 8 bytes).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[FRAG_HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FragHeader<T> {
    /// Writes all four fields (reserved bits zero). `offset` in bytes, a
    /// multiple of 8 (the low bits are dropped).
    pub fn emit(&mut self, next_header: u8, offset: u16, more_frags: bool, ident: u32) {
        let b = self.buffer.as_mut();
        b[frag_field::NXT_HDR] = next_header;
        b[frag_field::RESERVED] = 0;
        let m = if more_frags { FRAG_M } else { 0 };
        b[frag_field::OFF_M].copy_from_slice(&((offset & FRAG_OFFSET_MASK) | m).to_be_bytes());
        b[frag_field::IDENT].copy_from_slice(&ident.to_be_bytes());
    }
}

/// The fields of a header we originate (no extension headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: u8,
    pub payload_len: usize,
    pub hop_limit: u8,
}

impl Repr {
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 40-byte header into the front of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> WireResult<()> {
        let len = u16::try_from(self.payload_len).map_err(|_| WireError::Malformed)?;
        let hdr = buf.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
        let mut p = Packet::new_unchecked(hdr);
        p.set_version_tc_flow(0, 0);
        p.set_payload_len(len);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        Ok(())
    }
}

/// Extension headers the upper-layer walk passes (RFC 8200 §4).
pub mod ext {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AUTH: u8 = 51;
    pub const DEST_OPTS: u8 = 60;
}

/// Longest extension-header chain walked; longer ones are refused (RFC
/// 7112: the chain must fit the first fragment, and hosts need no more).
const MAX_EXT_HEADERS: usize = 8;

/// Where an IPv6 packet's upper-layer header is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// The protocol (58 ICMPv6, 17 UDP, ...).
    pub proto: u8,
    /// Offset of its header in the packet (the IPv6 header included).
    pub offset: usize,
    /// A fragment after the first: the upper-layer header is elsewhere.
    pub later_fragment: bool,
}

/// Walks the extension headers of a packet (the whole IPv6 packet, its
/// fixed header first) to the upper-layer header. `Truncated` when the
/// chain runs past the end, `Malformed` when it is longer than
/// `MAX_EXT_HEADERS`: RA guard evasion hides an RA behind such chains (RFC
/// 7113), so a caller that guards must drop what this refuses.
pub fn upper_layer(packet: &[u8]) -> WireResult<UpperLayer> {
    let p = Packet::new_checked(packet)?;
    let end = HEADER_LEN + usize::from(p.payload_len());
    let b = &packet[..end.min(packet.len())];
    let (mut proto, mut off) = (p.next_header(), HEADER_LEN);
    for _ in 0..MAX_EXT_HEADERS {
        let len = match proto {
            ext::HOP_BY_HOP | ext::ROUTING | ext::DEST_OPTS => {
                (usize::from(*b.get(off + 1).ok_or(WireError::Truncated)?) + 1) * 8
            }
            ext::AUTH => (usize::from(*b.get(off + 1).ok_or(WireError::Truncated)?) + 2) * 4,
            ext::FRAGMENT => {
                let f = FragHeader::new_checked(b.get(off..).unwrap_or(&[]))?;
                if f.frag_offset() != 0 {
                    return Ok(UpperLayer {
                        proto: f.next_header(),
                        offset: off + FRAG_HEADER_LEN,
                        later_fragment: true,
                    });
                }
                FRAG_HEADER_LEN
            }
            _ => {
                return Ok(UpperLayer {
                    proto,
                    offset: off,
                    later_fragment: false,
                })
            }
        };
        proto = *b.get(off).ok_or(WireError::Truncated)?;
        off += len;
        if off > b.len() {
            return Err(WireError::Truncated);
        }
    }
    Err(WireError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The IPv6 header of the neighbour solicitation a kernel bat0 carried in
    /// the capture (A-wg0 frame 51, inside batman UNICAST): fd00:198:19:1::1
    /// -> ff02::1:ff00:2, ICMPv6, hop limit 255, payload 32.
    const KERNEL_NS_HDR: [u8; 40] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, 0xfd, 0x00, 0x01, 0x98, 0x00, 0x19, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x00, 0x00, 0x02,
    ];

    fn ns_from_capture() -> Vec<u8> {
        // UNICAST_IPV6_NS: IPv4 20 + GRE 4 + Eth 14 + batman unicast 10 + Eth 14 = 62.
        crate::tunnel::captures::UNICAST_IPV6_NS[62..].to_vec()
    }

    #[test]
    fn kernel_ns_header() {
        let v = ns_from_capture();
        assert_eq!(&v[..40], &KERNEL_NS_HDR[..]);
        let p = Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0);
        assert_eq!(p.payload_len(), 32);
        assert_eq!(p.next_header(), 58);
        assert_eq!(p.hop_limit(), 255);
        assert_eq!(
            p.src_addr(),
            "fd00:198:19:1::1".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(p.dst_addr(), "ff02::1:ff00:2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload().len(), 32);
        assert_eq!(p.payload()[0], 135); // neighbour solicitation
    }

    #[test]
    fn emit_roundtrip() {
        let r = Repr {
            src_addr: "fd00::1".parse().unwrap(),
            dst_addr: "fd00::2".parse().unwrap(),
            next_header: 47,
            payload_len: 4,
            hop_limit: 64,
        };
        let mut b = [0u8; 44];
        r.emit(&mut b).unwrap();
        b[40..].copy_from_slice(&[0, 0, 0x65, 0x58]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.src_addr(), r.src_addr);
        assert_eq!(p.dst_addr(), r.dst_addr);
        assert_eq!(p.next_header(), 47);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.payload(), &[0, 0, 0x65, 0x58]);
        assert_eq!(r.emit(&mut [0u8; 39]), Err(WireError::Truncated));
    }

    #[test]
    fn fragment_header_roundtrip() {
        let mut b = [0u8; 12];
        FragHeader::new_checked(&mut b[..])
            .unwrap()
            .emit(47, 1392, true, 0xdead_beef);
        assert_eq!(&b[..8], &[47, 0, 0x05, 0x71, 0xde, 0xad, 0xbe, 0xef]);
        let f = FragHeader::new_checked(&b[..]).unwrap();
        assert_eq!(f.next_header(), 47);
        assert_eq!(f.frag_offset(), 1392);
        assert!(f.more_frags());
        assert_eq!(f.ident(), 0xdead_beef);
        assert_eq!(f.payload().len(), 4);
        assert_eq!(
            FragHeader::new_checked(&b[..7]).err(),
            Some(WireError::Truncated)
        );
    }

    #[test]
    fn rejects_truncation_and_version() {
        let v = ns_from_capture();
        for n in 0..v.len() {
            assert!(Packet::new_checked(&v[..n]).is_err(), "len {n}");
        }
        let mut w = v.clone();
        w[0] = 0x45;
        assert_eq!(
            Packet::new_checked(&w[..]).err(),
            Some(WireError::Malformed)
        );
    }

    #[test]
    fn upper_layer_walks_extension_headers() {
        let mut v = ns_from_capture();
        assert_eq!(
            upper_layer(&v),
            Ok(UpperLayer {
                proto: 58,
                offset: 40,
                later_fragment: false
            })
        );
        // A hop-by-hop header (8 bytes) in front of the ICMPv6 message.
        v[6] = ext::HOP_BY_HOP;
        let mut hbh = vec![58, 0, 5, 2, 0, 0, 1, 0];
        hbh.extend_from_slice(&v[40..]);
        v.truncate(40);
        v.extend_from_slice(&hbh);
        v[4..6].copy_from_slice(&(hbh.len() as u16).to_be_bytes());
        assert_eq!(upper_layer(&v).unwrap().offset, 48);
        assert_eq!(upper_layer(&v).unwrap().proto, 58);
        for n in 0..v.len() {
            let _ = upper_layer(&v[..n]);
        }
        // A chain of hop-by-hop headers that never ends.
        let mut chain = v[..40].to_vec();
        for _ in 0..20 {
            chain.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        }
        chain[4..6].copy_from_slice(&160u16.to_be_bytes());
        assert_eq!(upper_layer(&chain), Err(WireError::Malformed));
    }
}
