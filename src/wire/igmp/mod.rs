//! IGMP (RFC 2236, 3376) and MLD (RFC 2710, 3810) membership messages,
//! as a snooping switch reads them: zero-copy views over the message,
//! `check_len` before any accessor, and the group records of v3/v2
//! reports walked without allocation. Also the general queries meshwire
//! sends as querier on its ports, and the classification of a multicast
//! frame's destination that batman-adv's `batadv_mcast_forw_mode_check`
//! makes (unsnoopable, routable, or a report).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::bytes::be16;
use super::checksum;
use super::ethernet::{self, ethertype, Frame};
use super::{ipv4, ipv6, MacAddr, WireError, WireResult};

/// IP protocol number of IGMP.
pub const PROTO_IGMP: u8 = 2;
/// IPv6 next header of ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;

pub mod igmp_type {
    pub const QUERY: u8 = 0x11;
    pub const V1_REPORT: u8 = 0x12;
    pub const V2_REPORT: u8 = 0x16;
    pub const LEAVE: u8 = 0x17;
    pub const V3_REPORT: u8 = 0x22;
}

pub mod mld_type {
    pub const QUERY: u8 = 130;
    pub const V1_REPORT: u8 = 131;
    pub const V1_DONE: u8 = 132;
    pub const V2_REPORT: u8 = 143;
}

/// IGMPv1/v2 messages and the fixed part of v3 ones.
const IGMP_MIN_LEN: usize = 8;
/// MLDv1 messages: type, code, checksum, delay, reserved, group.
const MLD_V1_LEN: usize = 24;
/// The fixed part of an MLDv2 report (type, code, checksum, reserved, count).
const MLD_V2_HDR: usize = 8;

/// What a membership message says about one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A listener is (still) there.
    Join,
    /// The listener left (IGMPv2 leave, MLDv1 done, a v3/v2 record that
    /// leaves no source wanted).
    Leave,
}

/// The kind of membership message a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A report or leave: its records went to the callback.
    Report,
    /// A query (someone else is querier: a multicast router, likely).
    Query { v6: bool },
}

/// A v3 (IGMP) or v2 (MLD) group record list: `count` records of which each
/// is type, aux words, source count, group, sources, aux data.
struct Records<'a> {
    buf: &'a [u8],
    count: usize,
    addr_len: usize,
}

impl Records<'_> {
    /// Every record must fit whole before any is believed: a report cut
    /// short or with a lying count is refused as a unit.
    fn check_len(&self) -> WireResult<()> {
        let mut off = 0;
        for _ in 0..self.count {
            off += self.record_len(off)?;
        }
        Ok(())
    }

    fn record_len(&self, off: usize) -> WireResult<usize> {
        let hdr = self
            .buf
            .get(off..off + 4 + self.addr_len)
            .ok_or(WireError::Truncated)?;
        let aux = usize::from(hdr[1]) * 4;
        let nsrc = usize::from(be16(hdr, 2));
        let len = 4 + self.addr_len + nsrc * self.addr_len + aux;
        if off + len > self.buf.len() {
            return Err(WireError::Truncated);
        }
        Ok(len)
    }

    /// Calls `each` for every record (after `check_len`). Record types 1-4
    /// are MODE_IS/CHANGE_TO INCLUDE/EXCLUDE, 5 ALLOW, 6 BLOCK: as an
    /// any-source snooper, INCLUDE with no source is a leave, BLOCK changes
    /// nothing, everything else is a listener.
    fn walk(&self, mut each: impl FnMut(IpAddr, Change)) -> WireResult<()> {
        let mut off = 0;
        for _ in 0..self.count {
            let len = self.record_len(off)?;
            let r = &self.buf[off..off + len];
            let nsrc = be16(r, 2);
            let group = addr(&r[4..4 + self.addr_len]);
            match (r[0], nsrc) {
                (1 | 3, 0) => each(group, Change::Leave),
                (1..=5, _) => each(group, Change::Join),
                (6, _) => {}
                _ => return Err(WireError::Malformed),
            }
            off += len;
        }
        Ok(())
    }
}

fn addr(b: &[u8]) -> IpAddr {
    match b.len() {
        4 => IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])),
        _ => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[..16]);
            IpAddr::V6(Ipv6Addr::from(a))
        }
    }
}

/// A zero-copy view of an IGMP message (the IPv4 payload).
pub struct Igmp<'a>(&'a [u8]);

impl<'a> Igmp<'a> {
    pub fn new_checked(b: &'a [u8]) -> WireResult<Igmp<'a>> {
        let m = Igmp(b);
        m.check_len()?;
        Ok(m)
    }

    pub fn check_len(&self) -> WireResult<()> {
        if self.0.len() < IGMP_MIN_LEN {
            return Err(WireError::Truncated);
        }
        if !checksum::verify(self.0) {
            return Err(WireError::Malformed);
        }
        if self.msg_type() == igmp_type::V3_REPORT {
            self.records().check_len()?;
        }
        Ok(())
    }

    pub fn msg_type(&self) -> u8 {
        self.0[0]
    }

    fn group(&self) -> IpAddr {
        addr(&self.0[4..8])
    }

    fn records(&self) -> Records<'a> {
        Records {
            buf: &self.0[IGMP_MIN_LEN..],
            count: usize::from(be16(self.0, 6)),
            addr_len: 4,
        }
    }
}

/// A zero-copy view of an MLD message (the ICMPv6 message), checked with
/// the IPv6 pseudo-header's addresses.
pub struct Mld<'a>(&'a [u8]);

impl<'a> Mld<'a> {
    pub fn new_checked(b: &'a [u8], src: Ipv6Addr, dst: Ipv6Addr) -> WireResult<Mld<'a>> {
        let m = Mld(b);
        m.check_len(src, dst)?;
        Ok(m)
    }

    pub fn check_len(&self, src: Ipv6Addr, dst: Ipv6Addr) -> WireResult<()> {
        let b = self.0;
        let t = *b.first().ok_or(WireError::Truncated)?;
        let min = if t == mld_type::V2_REPORT {
            MLD_V2_HDR
        } else {
            MLD_V1_LEN
        };
        if b.len() < min {
            return Err(WireError::Truncated);
        }
        let len = u32::try_from(b.len()).map_err(|_| WireError::Malformed)?;
        let ph = checksum::pseudo_header_v6(src, dst, PROTO_ICMPV6, len);
        if checksum::combine(&[ph, checksum::sum(b)]) != 0xffff {
            return Err(WireError::Malformed);
        }
        if t == mld_type::V2_REPORT {
            self.records().check_len()?;
        }
        Ok(())
    }

    pub fn msg_type(&self) -> u8 {
        self.0[0]
    }

    fn group(&self) -> IpAddr {
        addr(&self.0[8..24])
    }

    fn records(&self) -> Records<'a> {
        Records {
            buf: &self.0[MLD_V2_HDR..],
            count: usize::from(be16(self.0, 6)),
            addr_len: 16,
        }
    }
}

/// Reads the membership message in an untagged Ethernet frame: Ok(None)
/// for any other frame (the common case, a few byte compares), Ok(Some)
/// with every record handed to `each`, Err for a membership message that
/// does not parse (hostile or broken: its records are not believed).
pub fn parse(frame: &[u8], each: impl FnMut(IpAddr, Change)) -> WireResult<Option<Kind>> {
    let Ok(f) = Frame::new_checked(frame) else {
        return Ok(None);
    };
    let l3 = &frame[ethernet::HEADER_LEN..];
    match f.ethertype() {
        ethertype::IPV4 => parse_v4(l3, each),
        ethertype::IPV6 => parse_v6(l3, each),
        _ => Ok(None),
    }
}

fn parse_v4(l3: &[u8], mut each: impl FnMut(IpAddr, Change)) -> WireResult<Option<Kind>> {
    if l3.len() < ipv4::HEADER_LEN || l3[9] != PROTO_IGMP {
        return Ok(None);
    }
    // Not IPv4 to begin with: no membership message (the port policy has
    // its own view of broken IP).
    let Ok(p) = ipv4::Packet::new_checked(l3) else {
        return Ok(None);
    };
    if p.is_fragment() {
        return Err(WireError::Malformed);
    }
    let m = Igmp::new_checked(p.payload())?;
    match m.msg_type() {
        igmp_type::QUERY => return Ok(Some(Kind::Query { v6: false })),
        igmp_type::V1_REPORT | igmp_type::V2_REPORT => each(m.group(), Change::Join),
        igmp_type::LEAVE => each(m.group(), Change::Leave),
        igmp_type::V3_REPORT => m.records().walk(each)?,
        _ => return Ok(None),
    }
    Ok(Some(Kind::Report))
}

fn parse_v6(l3: &[u8], mut each: impl FnMut(IpAddr, Change)) -> WireResult<Option<Kind>> {
    // MLD always comes behind a hop-by-hop header (router alert): an IPv6
    // packet straight to another protocol is no MLD.
    if l3.len() < ipv6::HEADER_LEN || l3[6] != ipv6::ext::HOP_BY_HOP {
        return Ok(None);
    }
    let Ok(up) = ipv6::upper_layer(l3) else {
        return Ok(None);
    };
    if up.proto != PROTO_ICMPV6 || up.later_fragment {
        return Ok(None);
    }
    let p = ipv6::Packet::new_checked(l3)?;
    let end = ipv6::HEADER_LEN + usize::from(p.payload_len());
    let msg = l3.get(up.offset..end).ok_or(WireError::Truncated)?;
    if !matches!(msg.first(), Some(130..=132 | 143)) {
        return Ok(None);
    }
    let m = Mld::new_checked(msg, p.src_addr(), p.dst_addr())?;
    match m.msg_type() {
        mld_type::QUERY => return Ok(Some(Kind::Query { v6: true })),
        mld_type::V1_REPORT => each(m.group(), Change::Join),
        mld_type::V1_DONE => each(m.group(), Change::Leave),
        _ => m.records().walk(each)?,
    }
    Ok(Some(Kind::Report))
}

/// Where a multicast frame's destination stands for batman-adv's
/// multicast optimisation (`batadv_mcast_forw_mode_check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McastDst {
    pub v6: bool,
    /// Link-local groups whose listeners no report reveals (224.0.0.0/24,
    /// ff02::1): only nodes that want all unsnoopables get them.
    pub unsnoopable: bool,
    /// Groups a multicast router may want (beyond link-local scope).
    pub routable: bool,
}

/// None: the frame must be broadcast (tagged, not IP, a membership report,
/// an IPv6 group narrower than link-local scope), as the kernel does.
pub fn mcast_dst(frame: &[u8]) -> Option<McastDst> {
    let f = Frame::new_checked(frame).ok()?;
    let l3 = &frame[ethernet::HEADER_LEN..];
    match f.ethertype() {
        ethertype::IPV4 => {
            let p = ipv4::Packet::new_checked(l3).ok()?;
            if p.protocol() == PROTO_IGMP {
                return None;
            }
            let d = p.dst_addr().octets();
            let unsnoopable = d[0] == 224 && d[1] == 0 && d[2] == 0;
            Some(McastDst {
                v6: false,
                unsnoopable,
                routable: !unsnoopable,
            })
        }
        ethertype::IPV6 => {
            let p = ipv6::Packet::new_checked(l3).ok()?;
            if is_mld(l3) {
                return None;
            }
            let d = p.dst_addr();
            let scope = d.octets()[1] & 0x0f;
            if !d.is_multicast() || scope < 2 {
                return None;
            }
            let unsnoopable = d == ALL_NODES;
            Some(McastDst {
                v6: true,
                unsnoopable,
                routable: scope > 2,
            })
        }
        _ => None,
    }
}

fn is_mld(l3: &[u8]) -> bool {
    match ipv6::upper_layer(l3) {
        Ok(up) if up.proto == PROTO_ICMPV6 => {
            matches!(l3.get(up.offset), Some(130..=132 | 143))
        }
        // An unreadable chain: broadcast it as the kernel would.
        Err(_) => true,
        _ => false,
    }
}

/// ff02::1, the link-local all-nodes group.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The group's multicast MAC (RFC 1112: 01:00:5e + low 23 bits; RFC 2464:
/// 33:33 + low 32 bits).
pub fn group_mac(group: IpAddr) -> MacAddr {
    match group {
        IpAddr::V4(a) => {
            let o = a.octets();
            MacAddr([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
        }
        IpAddr::V6(a) => {
            let o = a.octets();
            MacAddr([0x33, 0x33, o[12], o[13], o[14], o[15]])
        }
    }
}

/// The maximum response time our queries ask for, in tenths of a second
/// (IGMP) and milliseconds (MLD): 10 s, the RFCs' default.
const MAX_RESP_DS: u8 = 100;
const MAX_RESP_MS: u16 = 10_000;
/// The querier's robustness variable and query interval (s) the queries
/// announce: RFC defaults.
const QRV: u8 = 2;
const QQIC: u8 = 125;

/// An IGMPv3 general query from `src` (IPv4 source 0.0.0.0, as a bridge's
/// querier without an address sends; hosts accept it), with router alert.
/// v3 rather than v2: a v3 host that hears a v2 query drops to v2 mode.
pub fn igmp_general_query(src: MacAddr, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&[0x01, 0x00, 0x5e, 0, 0, 1]);
    buf.extend_from_slice(src.as_bytes());
    buf.extend_from_slice(&ethertype::IPV4.to_be_bytes());
    let ip_start = buf.len();
    let total: u16 = 24 + 12;
    buf.extend_from_slice(&[0x46, 0xc0]);
    buf.extend_from_slice(&total.to_be_bytes());
    buf.extend_from_slice(&[0, 0, 0, 0, 1, PROTO_IGMP, 0, 0]);
    buf.extend_from_slice(&[0, 0, 0, 0, 224, 0, 0, 1]);
    buf.extend_from_slice(&[0x94, 0x04, 0, 0]);
    let ck = checksum::checksum(&buf[ip_start..]);
    buf[ip_start + 10..ip_start + 12].copy_from_slice(&ck.to_be_bytes());
    let igmp_start = buf.len();
    buf.extend_from_slice(&[igmp_type::QUERY, MAX_RESP_DS, 0, 0, 0, 0, 0, 0]);
    buf.extend_from_slice(&[QRV, QQIC, 0, 0]);
    let ck = checksum::checksum(&buf[igmp_start..]);
    buf[igmp_start + 2..igmp_start + 4].copy_from_slice(&ck.to_be_bytes());
}

/// An MLDv2 general query from `src`'s link-local address (hosts drop
/// queries from any other source, RFC 3810 5.1.14), with router alert.
pub fn mld_general_query(src: MacAddr, src_ip: Ipv6Addr, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    buf.extend_from_slice(src.as_bytes());
    buf.extend_from_slice(&ethertype::IPV6.to_be_bytes());
    let msg_len: u16 = 28;
    buf.extend_from_slice(&[0x60, 0, 0, 0]);
    buf.extend_from_slice(&(8 + msg_len).to_be_bytes());
    buf.extend_from_slice(&[ipv6::ext::HOP_BY_HOP, 1]);
    buf.extend_from_slice(&src_ip.octets());
    buf.extend_from_slice(&ALL_NODES.octets());
    // hop-by-hop: router alert (MLD), PadN
    buf.extend_from_slice(&[PROTO_ICMPV6, 0, 0x05, 0x02, 0, 0, 0x01, 0x00]);
    let m = buf.len();
    buf.extend_from_slice(&[mld_type::QUERY, 0, 0, 0]);
    buf.extend_from_slice(&MAX_RESP_MS.to_be_bytes());
    buf.extend_from_slice(&[0; 18]);
    buf.extend_from_slice(&[QRV, QQIC, 0, 0]);
    let ph = checksum::pseudo_header_v6(src_ip, ALL_NODES, PROTO_ICMPV6, msg_len.into());
    let ck = checksum::finish(checksum::combine(&[ph, checksum::sum(&buf[m..])]));
    buf[m + 2..m + 4].copy_from_slice(&ck.to_be_bytes());
}

#[cfg(test)]
pub(crate) mod tests;
