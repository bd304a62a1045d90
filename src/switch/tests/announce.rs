//! The announcement builders, checked field by field with our own wire views,
//! and the detector against captured and built frames.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::super::announce::*;
use super::*;
use crate::wire::arp;
use crate::wire::ethernet::BATMAN_VLAN_HAS_TAG;
use crate::wire::ndisc::{self, icmpv6_checksum, Ipv6Fixed, Message, Ndisc};

const VM: &str = "02:00:00:00:0c:07";

/// qemu's self-announce, captured (tcpdump on the TAP, scratch namespace)
/// from qemu 7.2.22, `-device virtio-net-pci,mac=52:54:00:12:34:56` and the
/// QMP command `announce-self` (what migration runs on the destination).
/// Five rounds came 50, 150, 250 and 350 ms apart, 60 bytes each.
const QEMU_RARP_525400123456: &str = concat!(
    "ffffffffffff525400123456",
    "8035",
    "0001080006040003",
    "525400123456",
    "00000000",
    "525400123456",
    "00000000",
    "000000000000000000000000000000000000",
);

#[test]
fn gratuitous_arp_fields() {
    let ip = Ipv4Addr::new(198, 19, 7, 10);
    let mut b = vec![0xaa; 3]; // old contents are discarded
    build_gratuitous_arp(&mut b, mac(VM), ip, None);
    assert_eq!(b.len(), ETH_ZLEN);
    let f = Frame::new_checked(&b[..]).unwrap();
    assert_eq!(
        (f.dst_addr(), f.src_addr(), f.ethertype()),
        (MacAddr::BROADCAST, mac(VM), ethertype::ARP)
    );
    let a = arp::Packet::new_checked(f.payload()).unwrap();
    assert_eq!(a.operation(), arp::Operation::Request);
    assert_eq!((a.sha(), a.spa()), (mac(VM), ip));
    assert_eq!((a.tha(), a.tpa()), (MacAddr::ZERO, ip));
    assert!(a.is_gratuitous());
    assert!(b[14 + arp::PACKET_LEN..].iter().all(|&x| x == 0), "padding");
    assert_eq!(Announce::detect(&f), Some(Announce::GratuitousArp));
    // The reply form (RFC 5227 announcements, some guests) counts too.
    let mut reply = b.clone();
    let mut a = arp::Packet::new_unchecked(&mut reply[14..]);
    a.set_operation(arp::Operation::Reply);
    a.set_tha(mac(VM));
    let f = Frame::new_checked(&reply[..]).unwrap();
    assert_eq!(Announce::detect(&f), Some(Announce::GratuitousArp));
}

#[test]
fn tagged_gratuitous_arp() {
    let ip = Ipv4Addr::new(198, 19, 7, 11);
    let mut b = Vec::new();
    build_gratuitous_arp(&mut b, mac(VM), ip, Some(0x0123));
    assert_eq!(b.len(), ETH_ZLEN);
    let f = Frame::new_checked(&b[..]).unwrap();
    assert_eq!(f.vlan_id(), Some(0x0123));
    assert_eq!(f.vlan_tci(), Some(0x0123), "priority bits zero");
    assert_eq!(f.inner_ethertype(), ethertype::ARP);
    assert_eq!(f.batman_vid(), BATMAN_VLAN_HAS_TAG | 0x0123);
    assert_eq!(vlan_of_batman_vid(f.batman_vid()), Some(0x0123));
    assert_eq!(vlan_of_batman_vid(0), None);
    let a = arp::Packet::new_checked(f.payload()).unwrap();
    assert_eq!((a.sha(), a.spa(), a.tpa()), (mac(VM), ip, ip));
    assert_eq!(Announce::detect(&f), Some(Announce::GratuitousArp));
}

#[test]
fn rarp_is_byte_identical_to_qemus() {
    let mut b = Vec::new();
    build_rarp(&mut b, mac("52:54:00:12:34:56"), None);
    assert_eq!(b, hex(QEMU_RARP_525400123456));
    let f = Frame::new_checked(&b[..]).unwrap();
    let a = arp::Packet::new_checked(f.payload()).unwrap();
    assert!(a.is_rarp_announce());
    assert_eq!(Announce::detect(&f), Some(Announce::Rarp));
    // A RARP reply, or one about another MAC, is not an announcement.
    let mut reply = b.clone();
    reply[21] = 4;
    assert_eq!(
        Announce::detect(&Frame::new_checked(&reply[..]).unwrap()),
        None
    );
    let mut other = b.clone();
    other[6..12].copy_from_slice(mac(VM).as_bytes());
    assert_eq!(
        Announce::detect(&Frame::new_checked(&other[..]).unwrap()),
        None
    );
}

#[test]
fn unsolicited_na_fields_and_checksum() {
    let ip: Ipv6Addr = "fd00:198:19:7::10".parse().unwrap();
    for vlan in [None, Some(7)] {
        let mut b = Vec::new();
        build_unsolicited_na(&mut b, mac(VM), ip, vlan);
        let f = Frame::new_checked(&b[..]).unwrap();
        assert_eq!(f.dst_addr(), mac("33:33:00:00:00:01"));
        assert_eq!(f.src_addr(), mac(VM));
        assert_eq!(f.inner_ethertype(), ethertype::IPV6);
        assert_eq!(f.vlan_id(), vlan);
        assert_eq!(b.len(), f.payload_offset() + 40 + 32);
        let h = Ipv6Fixed::new_checked(f.payload()).unwrap();
        assert_eq!((h.version(), h.payload_len(), h.next_header()), (6, 32, 58));
        assert_eq!(h.hop_limit(), 255);
        assert_eq!((h.src_addr(), h.dst_addr()), (ip, ALL_NODES));
        assert_eq!(f.payload()[1..4], [0, 0, 0], "traffic class, flow label");
        let m = Message::new_checked(h.payload()).unwrap();
        assert!(m.is_advert());
        assert_eq!(m.flags(), ndisc::FLAG_OVERRIDE);
        assert_eq!(m.target(), ip);
        assert_eq!(m.target_lladdr(), Some(mac(VM)));
        assert_eq!(m.source_lladdr(), None);
        // Reserved bits after the flags are zero.
        assert_eq!(h.payload()[4..8], [ndisc::FLAG_OVERRIDE, 0, 0, 0]);
        // The checksum: the whole body sums to zero, and recomputing it over
        // a zeroed field gives the stored value.
        assert_eq!(icmpv6_checksum(&ip, &ALL_NODES, h.payload()), 0);
        let mut body = h.payload().to_vec();
        let stored = u16::from_be_bytes([body[2], body[3]]);
        body[2..4].fill(0);
        assert_eq!(icmpv6_checksum(&ip, &ALL_NODES, &body), stored);
        assert_ne!(stored, 0);
        let n = Ndisc::parse(f.payload()).unwrap();
        assert!(n.is_unsolicited_advert());
        assert_eq!(Announce::detect(&f), Some(Announce::UnsolicitedNa));
    }
}

#[test]
fn detector_refuses_lookalikes() {
    // Captured ordinary ARP and NDisc traffic.
    for h in [ARP_REQUEST, ARP_REPLY] {
        let b = hex(h);
        assert_eq!(Announce::detect(&Frame::new_checked(&b[..]).unwrap()), None);
    }
    use crate::wire::ndisc::tests_frames::{NA, NS};
    for h in [NA, NS] {
        let b = hex(h);
        assert_eq!(Announce::detect(&Frame::new_checked(&b[..]).unwrap()), None);
    }
    let ip: Ipv6Addr = "fd00:198:19:7::10".parse().unwrap();
    let mut b = Vec::new();
    build_unsolicited_na(&mut b, mac(VM), ip, None);
    let detect = |b: &[u8]| Announce::detect(&Frame::new_checked(b).unwrap());
    // Solicited flag set: an answer, not an announcement.
    let mut solicited = b.clone();
    Message::new_unchecked(&mut solicited[54..])
        .set_flags(ndisc::FLAG_SOLICITED | ndisc::FLAG_OVERRIDE);
    Message::new_unchecked(&mut solicited[54..]).fill_checksum(&ip, &ALL_NODES);
    assert!(Ndisc::parse(&solicited[14..]).is_ok());
    assert_eq!(detect(&solicited), None);
    // Target link-layer address of another host.
    let mut other = b.clone();
    other[54 + 26..54 + 32].copy_from_slice(mac(A).as_bytes());
    Message::new_unchecked(&mut other[54..]).fill_checksum(&ip, &ALL_NODES);
    assert_eq!(detect(&other), None);
    // Wrong checksum, forwarded (hop limit 254): hosts drop these, so do we.
    let mut bad = b.clone();
    bad[56] ^= 0x40;
    assert_eq!(detect(&bad), None);
    let mut hop = b.clone();
    hop[21] = 254;
    assert_eq!(detect(&hop), None);
    // An ARP probe (sender IP 0.0.0.0) announces no address.
    let mut probe = Vec::new();
    build_gratuitous_arp(&mut probe, mac(VM), Ipv4Addr::UNSPECIFIED, None);
    assert_eq!(detect(&probe), None);
    // Truncations: an ARP/RARP is an announcement exactly while its 28 bytes
    // are there (the rest is padding); an NA only whole (IPv6 length field).
    let mut rarp = Vec::new();
    build_rarp(&mut rarp, mac(VM), Some(3));
    let mut garp = Vec::new();
    build_gratuitous_arp(&mut garp, mac(VM), Ipv4Addr::new(198, 19, 7, 12), None);
    for (f, whole_at) in [(b.clone(), b.len()), (rarp, 18 + 28), (garp, 14 + 28)] {
        for n in 0..=f.len() {
            let got = Frame::new_checked(&f[..n])
                .ok()
                .and_then(|fr| Announce::detect(&fr));
            assert_eq!(got.is_some(), n >= whole_at, "length {n} of {}", f.len());
        }
    }
}

#[test]
fn builders_reuse_the_buffer() {
    let mut b = Vec::with_capacity(128);
    let cap = b.capacity();
    let ip6: Ipv6Addr = "fd00::7".parse().unwrap();
    build_unsolicited_na(&mut b, mac(VM), ip6, Some(4095));
    let na_len = b.len();
    build_gratuitous_arp(&mut b, mac(VM), Ipv4Addr::new(198, 19, 0, 7), None);
    assert_eq!(b.len(), ETH_ZLEN);
    build_rarp(&mut b, mac(VM), None);
    assert_eq!(b.len(), ETH_ZLEN);
    assert_eq!(na_len, 18 + 72);
    assert_eq!(b.capacity(), cap, "no reallocation");
}
