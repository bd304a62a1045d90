//! The multicast allowlist (what Gluon recommends from about 50 nodes on):
//! a port with `multicast` set sends broadcast and multicast only of the
//! kinds listed; everything else a VM multicasts (service discovery
//! chatter, a misbehaving protocol) stays on its own port instead of
//! crossing every node. Without the key, every kind passes.

use serde::{Deserialize, Serialize};

use super::classify::{icmpv6, Upper, L3};
use crate::wire::dhcp;

/// Kinds of broadcast and multicast traffic a port may be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum McastKind {
    /// ARP and RARP.
    Arp,
    /// DHCPv4 and DHCPv6 (client and server ports).
    Dhcp,
    /// IPv6 neighbour discovery: RS, RA, NS, NA, redirect.
    Nd,
    /// IGMP (IPv4 multicast membership).
    Igmp,
    /// MLD (IPv6 multicast membership).
    Mld,
    /// OSPF, VRRP, PIM and RIP.
    Routing,
    /// Multicast DNS (UDP 5353).
    Mdns,
}

const PROTO_IGMP: u8 = 2;
const PROTO_OSPF: u8 = 89;
const PROTO_PIM: u8 = 103;
const PROTO_VRRP: u8 = 112;
const RIP: u16 = 520;
const RIPNG: u16 = 521;
const MDNS: u16 = 5353;

/// The kind of a broadcast or multicast frame's payload, if it is one of
/// the listed kinds.
pub(super) fn kind(l3: &L3<'_>) -> Option<McastKind> {
    match l3 {
        L3::Arp(_) | L3::Rarp => Some(McastKind::Arp),
        L3::Ipv4 { upper, .. } | L3::Ipv6 { upper, .. } => match *upper {
            Upper::Udp {
                src_port, dst_port, ..
            } => udp_kind(src_port, dst_port),
            Upper::Icmpv6(m) => match m.first().copied()? {
                icmpv6::ROUTER_SOLICIT..=icmpv6::REDIRECT => Some(McastKind::Nd),
                130..=132 | icmpv6::MLD2_REPORT => Some(McastKind::Mld),
                _ => None,
            },
            Upper::Other(PROTO_IGMP) => Some(McastKind::Igmp),
            Upper::Other(PROTO_OSPF | PROTO_PIM | PROTO_VRRP) => Some(McastKind::Routing),
            _ => None,
        },
        L3::Other | L3::Malformed => None,
    }
}

fn udp_kind(src: u16, dst: u16) -> Option<McastKind> {
    let either = |p: u16| src == p || dst == p;
    if [
        dhcp::V4_CLIENT_PORT,
        dhcp::V4_SERVER_PORT,
        dhcp::V6_CLIENT_PORT,
        dhcp::V6_SERVER_PORT,
    ]
    .contains(&dst)
    {
        Some(McastKind::Dhcp)
    } else if either(MDNS) {
        Some(McastKind::Mdns)
    } else if either(RIP) || either(RIPNG) {
        Some(McastKind::Routing)
    } else {
        None
    }
}
