//! Frames the policy tests send: what a well-behaved VM sends, and what a
//! hostile one does (built with the wire module's own emitters where there
//! are some, so the checks meet real encodings).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::switch::announce;
use crate::wire::arp::{self, Operation};
use crate::wire::ethernet::ethertype;
use crate::wire::{dhcp, ipv4, ndisc, udp, MacAddr};

pub fn eth(dst: MacAddr, src: MacAddr, et: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(dst.as_bytes());
    f.extend_from_slice(src.as_bytes());
    f.extend_from_slice(&et.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

pub fn arp(op: Operation, src: MacAddr, sha: MacAddr, spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let mut p = [0u8; arp::PACKET_LEN];
    arp::Repr {
        operation: op,
        sha,
        spa,
        tha: MacAddr::ZERO,
        tpa,
    }
    .emit(&mut arp::Packet::new_unchecked(&mut p[..]));
    let dst = if op == Operation::Request {
        MacAddr::BROADCAST
    } else {
        MacAddr([2, 0, 0, 0, 0, 0xee])
    };
    eth(dst, src, ethertype::ARP, &p)
}

pub fn gratuitous_arp(mac: MacAddr, ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::new();
    announce::build_gratuitous_arp(&mut f, mac, ip, None);
    f
}

pub fn ipv4(
    src: MacAddr,
    dst: MacAddr,
    sip: Ipv4Addr,
    dip: Ipv4Addr,
    proto: u8,
    l4: &[u8],
) -> Vec<u8> {
    let mut p = vec![0u8; ipv4::HEADER_LEN];
    ipv4::Repr {
        src_addr: sip,
        dst_addr: dip,
        protocol: proto,
        payload_len: l4.len(),
        ttl: 64,
        tos: 0,
        ident: 1,
        dont_frag: false,
    }
    .emit(&mut p)
    .unwrap();
    p.extend_from_slice(l4);
    eth(dst, src, ethertype::IPV4, &p)
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// A BOOTP message: `op` 1 request, 2 reply; option 53 = `msg_type`.
pub fn bootp(op: u8, msg_type: u8, chaddr: MacAddr, yiaddr: Ipv4Addr) -> Vec<u8> {
    let mut b = vec![0u8; dhcp::BOOTP_LEN];
    b[0] = op;
    b[1] = 1;
    b[2] = 6;
    b[16..20].copy_from_slice(&yiaddr.octets());
    b[28..34].copy_from_slice(chaddr.as_bytes());
    b.extend_from_slice(&[99, 130, 83, 99, 53, 1, msg_type, 255]);
    b
}

pub fn dhcp_offer(server_mac: MacAddr, server: Ipv4Addr, client: MacAddr) -> Vec<u8> {
    let b = bootp(2, 2, client, Ipv4Addr::new(198, 19, 1, 99));
    ipv4(
        server_mac,
        MacAddr::BROADCAST,
        server,
        Ipv4Addr::BROADCAST,
        udp::PROTOCOL,
        &udp(67, 68, &b),
    )
}

pub fn dhcp_discover(client: MacAddr) -> Vec<u8> {
    let b = bootp(1, 1, client, Ipv4Addr::UNSPECIFIED);
    ipv4(
        client,
        MacAddr::BROADCAST,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        udp::PROTOCOL,
        &udp(68, 67, &b),
    )
}

/// An IPv6 packet in a frame, with `ext` (already encoded extension
/// headers, the first of type `first`) before an upper layer `next`.
pub fn ipv6_ext(
    src: MacAddr,
    dst: MacAddr,
    sip: Ipv6Addr,
    dip: Ipv6Addr,
    first: u8,
    ext: &[u8],
    l4: &[u8],
) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&((ext.len() + l4.len()) as u16).to_be_bytes());
    p.push(first);
    p.push(255);
    p.extend_from_slice(&sip.octets());
    p.extend_from_slice(&dip.octets());
    p.extend_from_slice(ext);
    p.extend_from_slice(l4);
    eth(dst, src, ethertype::IPV6, &p)
}

pub fn ipv6(
    src: MacAddr,
    dst: MacAddr,
    sip: Ipv6Addr,
    dip: Ipv6Addr,
    next: u8,
    l4: &[u8],
) -> Vec<u8> {
    ipv6_ext(src, dst, sip, dip, next, &[], l4)
}

/// An ICMPv6 message with its checksum.
pub fn icmpv6(sip: Ipv6Addr, dip: Ipv6Addr, mut msg: Vec<u8>) -> Vec<u8> {
    msg[2..4].copy_from_slice(&[0, 0]);
    let c = ndisc::icmpv6_checksum(&sip, &dip, &msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    msg
}

/// An NS for `target` (from `sip`; :: for DAD), with a source link-layer
/// option `sll` unless None.
pub fn ns(src: MacAddr, sip: Ipv6Addr, target: Ipv6Addr, sll: Option<MacAddr>) -> Vec<u8> {
    let mut m = vec![135, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&target.octets());
    if let Some(l) = sll {
        m.extend_from_slice(&[1, 1]);
        m.extend_from_slice(l.as_bytes());
    }
    let dip: Ipv6Addr = "ff02::1:ff00:1".parse().unwrap();
    let dmac = MacAddr([0x33, 0x33, 0xff, 0, 0, 1]);
    ipv6(src, dmac, sip, dip, 58, &icmpv6(sip, dip, m))
}

/// An NA for `target` with a target link-layer option `tll`.
pub fn na(src: MacAddr, sip: Ipv6Addr, target: Ipv6Addr, tll: MacAddr) -> Vec<u8> {
    let mut m = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    m.extend_from_slice(&target.octets());
    m.extend_from_slice(&[2, 1]);
    m.extend_from_slice(tll.as_bytes());
    let dip: Ipv6Addr = "ff02::1".parse().unwrap();
    ipv6(
        src,
        MacAddr([0x33, 0x33, 0, 0, 0, 1]),
        sip,
        dip,
        58,
        &icmpv6(sip, dip, m),
    )
}

/// A router advertisement (type 134), behind `ext` extension headers.
pub fn ra(src: MacAddr, sip: Ipv6Addr, first: u8, ext: &[u8]) -> Vec<u8> {
    let dip: Ipv6Addr = "ff02::1".parse().unwrap();
    let m = icmpv6(
        sip,
        dip,
        vec![134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    let first = if ext.is_empty() { 58 } else { first };
    ipv6_ext(
        src,
        MacAddr([0x33, 0x33, 0, 0, 0, 1]),
        sip,
        dip,
        first,
        ext,
        &m,
    )
}
