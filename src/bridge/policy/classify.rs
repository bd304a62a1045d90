//! One walk of a port frame to what the policy looks at: the L3 source,
//! ARP's sender, and the upper-layer bits the guards need (UDP ports,
//! ICMPv6 type). Built on the `wire` views; never panics, and anything the
//! views refuse is `Malformed`, which a guarded port drops.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::{arp, ethernet, ipv4, ipv6, ndisc, udp};

/// What the L3 payload of a frame is, as far as the policy cares.
pub(super) enum L3<'a> {
    Arp(arp::Packet<&'a [u8]>),
    Ipv4 {
        src: Ipv4Addr,
        upper: Upper<'a>,
    },
    Ipv6 {
        src: Ipv6Addr,
        upper: Upper<'a>,
    },
    /// RARP (qemu's announcement): only its Ethernet source matters.
    Rarp,
    /// Any other ethertype.
    Other,
    /// An ARP, IPv4 or IPv6 packet its view refused.
    Malformed,
}

/// The upper layer of an IP packet.
pub(super) enum Upper<'a> {
    Udp {
        src_port: u16,
        dst_port: u16,
        payload: &'a [u8],
    },
    /// The ICMPv6 message (type first).
    Icmpv6(&'a [u8]),
    /// A fragment after the first: no upper-layer header to look at.
    LaterFragment,
    /// A first fragment or packet too short for its UDP or ICMPv6 header
    /// (tiny-fragment evasion of the guards).
    Truncated,
    /// Another protocol (its number).
    Other(u8),
}

/// Classifies the L3 part `l3` of a frame with ethertype `et`.
pub(super) fn classify(et: u16, l3: &[u8]) -> L3<'_> {
    match et {
        ethernet::ethertype::ARP => match arp::Packet::new_checked(l3) {
            Ok(a) => L3::Arp(a),
            Err(_) => L3::Malformed,
        },
        ethernet::ethertype::RARP => L3::Rarp,
        ethernet::ethertype::IPV4 => match ipv4::Packet::new_checked(l3) {
            Ok(p) => L3::Ipv4 {
                src: p.src_addr(),
                upper: if p.frag_offset() != 0 {
                    Upper::LaterFragment
                } else {
                    upper(p.protocol(), ipv4_payload(l3, &p))
                },
            },
            Err(_) => L3::Malformed,
        },
        ethernet::ethertype::IPV6 => {
            let (Ok(p), Ok(u)) = (ipv6::Packet::new_checked(l3), ipv6::upper_layer(l3)) else {
                return L3::Malformed;
            };
            let end = (ipv6::HEADER_LEN + usize::from(p.payload_len())).min(l3.len());
            let body = l3.get(u.offset..end).unwrap_or(&[]);
            L3::Ipv6 {
                src: p.src_addr(),
                upper: if u.later_fragment {
                    Upper::LaterFragment
                } else {
                    upper(u.proto, body)
                },
            }
        }
        _ => L3::Other,
    }
}

fn ipv4_payload<'a>(l3: &'a [u8], p: &ipv4::Packet<&'a [u8]>) -> &'a [u8] {
    l3.get(p.header_len()..usize::from(p.total_len()))
        .unwrap_or(&[])
}

fn upper(proto: u8, body: &[u8]) -> Upper<'_> {
    match proto {
        udp::PROTOCOL => match body.get(..udp::HEADER_LEN) {
            Some(h) => Upper::Udp {
                src_port: u16::from_be_bytes([h[0], h[1]]),
                dst_port: u16::from_be_bytes([h[2], h[3]]),
                payload: &body[udp::HEADER_LEN..],
            },
            None => Upper::Truncated,
        },
        // Type, code and checksum at least.
        ndisc::IPPROTO_ICMPV6 if body.len() >= 4 => Upper::Icmpv6(body),
        ndisc::IPPROTO_ICMPV6 => Upper::Truncated,
        p => Upper::Other(p),
    }
}

/// ICMPv6 types the policy knows.
pub(super) mod icmpv6 {
    pub const MLD_REPORT: u8 = 131;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    pub const REDIRECT: u8 = 137;
    pub const MLD2_REPORT: u8 = 143;
}

/// Whether a frame is ARP or an NS/NA (the `arp_nd_rate` budget).
pub(super) fn is_arp_nd(l3: &L3<'_>) -> bool {
    match l3 {
        L3::Arp(_) => true,
        L3::Ipv6 {
            upper: Upper::Icmpv6(m),
            ..
        } => matches!(
            m.first(),
            Some(&(icmpv6::NEIGHBOR_SOLICIT | icmpv6::NEIGHBOR_ADVERT))
        ),
        _ => false,
    }
}
