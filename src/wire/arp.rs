//! ARP and RARP for Ethernet/IPv4 (RFC 826, RFC 903).
//!
//! Only the Ethernet/IPv4 form exists on a VM segment. The switch looks at
//! these packets to notice a VM arriving: a gratuitous ARP from the VM, or
//! the RARP request qemu sends for a freshly migrated guest.

use super::bytes::be16;
use std::net::Ipv4Addr;

use super::{MacAddr, WireError, WireResult};

/// Field offsets of an Ethernet/IPv4 ARP packet.
pub mod field {
    use core::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
pub const HTYPE_ETHERNET: u16 = 1;
pub const PTYPE_IPV4: u16 = 0x0800;

/// ARP and RARP operation codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Request,
    Reply,
    /// RARP "request reverse": what qemu sends to announce a migrated VM.
    ReverseRequest,
    ReverseReply,
    Unknown(u16),
}

impl From<u16> for Operation {
    fn from(v: u16) -> Self {
        match v {
            1 => Operation::Request,
            2 => Operation::Reply,
            3 => Operation::ReverseRequest,
            4 => Operation::ReverseReply,
            o => Operation::Unknown(o),
        }
    }
}

impl From<Operation> for u16 {
    fn from(o: Operation) -> u16 {
        match o {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::ReverseRequest => 3,
            Operation::ReverseReply => 4,
            Operation::Unknown(v) => v,
        }
    }
}

/// A zero-copy view of an ARP/RARP packet (the Ethernet payload).
///
/// Getters on an unchecked short buffer read as zero instead of panicking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn read_ipv4(b: &[u8], r: core::ops::Range<usize>) -> Ipv4Addr {
    match b.get(r) {
        Some(&[a, b, c, d]) => Ipv4Addr::new(a, b, c, d),
        _ => Ipv4Addr::UNSPECIFIED,
    }
}

fn write_bytes(b: &mut [u8], r: core::ops::Range<usize>, v: &[u8]) {
    if let Some(dst) = b.get_mut(r) {
        if dst.len() == v.len() {
            dst.copy_from_slice(v);
        }
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// A view over an Ethernet/IPv4 ARP packet: `Truncated` when shorter than
    /// 28 bytes, `Unsupported` for other hardware/protocol types.
    pub fn new_checked(buffer: T) -> WireResult<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        p.check_types()?;
        Ok(p)
    }

    pub fn check_len(&self) -> WireResult<()> {
        if self.buffer.as_ref().len() < PACKET_LEN {
            Err(WireError::Truncated)
        } else {
            Ok(())
        }
    }

    /// Ethernet hardware addresses and IPv4 protocol addresses, nothing else.
    pub fn check_types(&self) -> WireResult<()> {
        if self.hardware_type() != HTYPE_ETHERNET
            || self.protocol_type() != PTYPE_IPV4
            || self.hardware_len() != 6
            || self.protocol_len() != 4
        {
            return Err(WireError::Unsupported);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn hardware_type(&self) -> u16 {
        be16(self.buffer.as_ref(), field::HTYPE.start)
    }

    pub fn protocol_type(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PTYPE.start)
    }

    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref().get(field::HLEN).copied().unwrap_or(0)
    }

    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref().get(field::PLEN).copied().unwrap_or(0)
    }

    pub fn operation(&self) -> Operation {
        be16(self.buffer.as_ref(), field::OPER.start).into()
    }

    /// Sender hardware address.
    pub fn sha(&self) -> MacAddr {
        self.buffer
            .as_ref()
            .get(field::SHA)
            .and_then(MacAddr::from_bytes)
            .unwrap_or_default()
    }

    /// Sender protocol address.
    pub fn spa(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), field::SPA)
    }

    /// Target hardware address.
    pub fn tha(&self) -> MacAddr {
        self.buffer
            .as_ref()
            .get(field::THA)
            .and_then(MacAddr::from_bytes)
            .unwrap_or_default()
    }

    /// Target protocol address.
    pub fn tpa(&self) -> Ipv4Addr {
        read_ipv4(self.buffer.as_ref(), field::TPA)
    }

    /// A request or reply about the sender's own address (spa == tpa): a host
    /// announcing or defending its IPv4 address, e.g. a VM that just moved.
    ///
    /// batman-adv's bridge loop avoidance claim frames also have this shape
    /// (spa == tpa == 0.0.0.0, sha = 43:05:43:05:...), so callers that treat
    /// this as a migration signal should also look at the sender.
    pub fn is_gratuitous(&self) -> bool {
        matches!(self.operation(), Operation::Request | Operation::Reply)
            && self.spa() == self.tpa()
    }

    /// The announcement qemu sends after live migration: a RARP request
    /// from the guest's MAC about itself (sha == tha).
    pub fn is_rarp_announce(&self) -> bool {
        self.operation() == Operation::ReverseRequest && self.sha() == self.tha()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Writes the Ethernet/IPv4 constants (htype, ptype, hlen, plen).
    pub fn set_ethernet_ipv4(&mut self) {
        let b = self.buffer.as_mut();
        write_bytes(b, field::HTYPE, &HTYPE_ETHERNET.to_be_bytes());
        write_bytes(b, field::PTYPE, &PTYPE_IPV4.to_be_bytes());
        write_bytes(b, field::HLEN..field::HLEN + 1, &[6]);
        write_bytes(b, field::PLEN..field::PLEN + 1, &[4]);
    }

    pub fn set_operation(&mut self, op: Operation) {
        write_bytes(
            self.buffer.as_mut(),
            field::OPER,
            &u16::from(op).to_be_bytes(),
        );
    }

    pub fn set_sha(&mut self, mac: MacAddr) {
        write_bytes(self.buffer.as_mut(), field::SHA, &mac.0);
    }

    pub fn set_spa(&mut self, ip: Ipv4Addr) {
        write_bytes(self.buffer.as_mut(), field::SPA, &ip.octets());
    }

    pub fn set_tha(&mut self, mac: MacAddr) {
        write_bytes(self.buffer.as_mut(), field::THA, &mac.0);
    }

    pub fn set_tpa(&mut self, ip: Ipv4Addr) {
        write_bytes(self.buffer.as_mut(), field::TPA, &ip.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::{ethertype, Frame};

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Frames 1, 2 and 5 of refvm/captures/A-bat0.pcap.
    const REQUEST: &str =
        "ffffffffffff020000000a0008060001080006040001020000000a00c6130101000000000000c6130102";
    const REPLY: &str =
        "020000000a00020000000b0008060001080006040002020000000b00c6130102020000000a00c6130101";
    const BLA_CLAIM: &str =
        "ffffffffffff020000000a010806000108000604000243054305d20600000000ff43050282c600000000";

    fn arp(frame: &[u8]) -> Packet<&[u8]> {
        let f = Frame::new_checked(frame).unwrap();
        assert_eq!(f.inner_ethertype(), ethertype::ARP);
        Packet::new_checked(&frame[f.payload_offset()..]).unwrap()
    }

    #[test]
    fn captured_request() {
        let b = hex(REQUEST);
        let p = arp(&b);
        assert_eq!(p.operation(), Operation::Request);
        assert_eq!(p.sha(), "02:00:00:00:0a:00".parse().unwrap());
        assert_eq!(p.spa(), Ipv4Addr::new(198, 19, 1, 1));
        assert_eq!(p.tha(), MacAddr::ZERO);
        assert_eq!(p.tpa(), Ipv4Addr::new(198, 19, 1, 2));
        assert!(!p.is_gratuitous());
    }

    #[test]
    fn captured_reply() {
        let b = hex(REPLY);
        let p = arp(&b);
        assert_eq!(p.operation(), Operation::Reply);
        assert_eq!(p.sha(), "02:00:00:00:0b:00".parse().unwrap());
        assert_eq!(p.tha(), "02:00:00:00:0a:00".parse().unwrap());
        assert!(!p.is_gratuitous());
    }

    #[test]
    fn captured_bla_claim_looks_gratuitous() {
        let b = hex(BLA_CLAIM);
        let p = arp(&b);
        assert_eq!(p.operation(), Operation::Reply);
        assert_eq!(p.spa(), Ipv4Addr::UNSPECIFIED);
        assert!(p.is_gratuitous());
        assert_eq!(p.sha().0[..2], [0x43, 0x05]);
    }

    #[test]
    fn built_gratuitous_and_rarp() {
        let vm: MacAddr = "02:00:00:00:0c:07".parse().unwrap();
        let ip = Ipv4Addr::new(198, 19, 1, 7);
        let mut b = [0u8; PACKET_LEN];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_ethernet_ipv4();
        p.set_operation(Operation::Request);
        p.set_sha(vm);
        p.set_spa(ip);
        p.set_tpa(ip);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.is_gratuitous());
        assert!(!p.is_rarp_announce());

        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_operation(Operation::ReverseRequest);
        p.set_tha(vm);
        p.set_spa(Ipv4Addr::UNSPECIFIED);
        p.set_tpa(Ipv4Addr::UNSPECIFIED);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.is_rarp_announce());
        assert!(!p.is_gratuitous(), "RARP is not ARP");
    }

    #[test]
    fn rejects_short_and_foreign() {
        let b = hex(REQUEST);
        let payload = &b[14..];
        for n in 0..PACKET_LEN {
            assert_eq!(
                Packet::new_checked(&payload[..n]),
                Err(WireError::Truncated)
            );
        }
        let mut other = payload.to_vec();
        other[5] = 16; // IPv6-sized protocol addresses
        assert_eq!(Packet::new_checked(&other[..]), Err(WireError::Unsupported));
        assert_eq!(
            Packet::new_unchecked(&payload[..3]).tpa(),
            Ipv4Addr::UNSPECIFIED
        );
    }
}

/// An Ethernet/IPv4 ARP (or RARP) packet as values (smoltcp's `Repr`):
/// what announcements build and policy checks read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub operation: Operation,
    pub sha: MacAddr,
    pub spa: Ipv4Addr,
    pub tha: MacAddr,
    pub tpa: Ipv4Addr,
}

impl Repr {
    /// Reads a checked Ethernet/IPv4 packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> WireResult<Repr> {
        p.check_len()?;
        p.check_types()?;
        Ok(Repr {
            operation: p.operation(),
            sha: p.sha(),
            spa: p.spa(),
            tha: p.tha(),
            tpa: p.tpa(),
        })
    }

    /// Writes all 28 bytes (the buffer must hold [`PACKET_LEN`]).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_ethernet_ipv4();
        p.set_operation(self.operation);
        p.set_sha(self.sha);
        p.set_spa(self.spa);
        p.set_tha(self.tha);
        p.set_tpa(self.tpa);
    }
}

#[cfg(test)]
mod repr_tests {
    use super::*;

    #[test]
    fn emit_then_parse_gives_the_same_values_and_known_bytes() {
        let r = Repr {
            operation: Operation::Request,
            sha: MacAddr([2, 0, 0, 0, 0, 1]),
            spa: Ipv4Addr::new(198, 19, 1, 5),
            tha: MacAddr::ZERO,
            tpa: Ipv4Addr::new(198, 19, 1, 5),
        };
        let mut buf = [0u8; PACKET_LEN];
        r.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(
            buf,
            [
                0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 198, 19, 1, 5, 0, 0, 0, 0, 0, 0, 198, 19,
                1, 5
            ]
        );
        assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()), Ok(r));
        assert!(Repr::parse(&Packet::new_unchecked(&buf[..20])).is_err());
    }
}
