//! Anti-spoofing (BCP 38 at the port, as ebtables rules and libvirt's
//! clean-traffic do it by hand): a VM port may only speak as its own MAC
//! and its own addresses. A frame that claims anything else is dropped
//! before the switch sees it, so it is never learned and never moves a
//! MAC (no migration event, no ROAM advert).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::classify::{icmpv6, Upper, L3};
use super::{PortPolicy, Reason};
use crate::wire::{dhcp, ndisc, MacAddr};

/// The addresses a VM port owns.
pub(super) struct Owner<'a> {
    pub mac: MacAddr,
    pub policy: &'a PortPolicy,
    /// The address its DHCP ACK granted (ports without `ipv4`).
    pub learned_v4: Option<Ipv4Addr>,
}

impl Owner<'_> {
    fn owns_v4(&self, a: Ipv4Addr) -> bool {
        self.policy.ipv4.contains(&a) || self.learned_v4 == Some(a)
    }

    /// Its configured IPv6 addresses and the link-local from its MAC.
    fn owns_v6(&self, a: &Ipv6Addr) -> bool {
        *a == link_local(self.mac) || self.policy.ipv6.contains(a)
    }

    /// Checks a frame whose Ethernet source is `src` and L3 part `l3`.
    pub fn check(&self, src: MacAddr, l3: &L3<'_>) -> Result<(), Reason> {
        if src != self.mac {
            return Err(Reason::SpoofedMac);
        }
        match l3 {
            L3::Arp(a) => {
                // Probes (RFC 5227) come from 0.0.0.0.
                let spa = a.spa();
                if a.sha() != self.mac || !(spa.is_unspecified() || self.owns_v4(spa)) {
                    return Err(Reason::SpoofedArp);
                }
                Ok(())
            }
            L3::Ipv4 { src, upper } => {
                if self.owns_v4(*src) || (src.is_unspecified() && is_dhcp_client(upper)) {
                    Ok(())
                } else {
                    Err(Reason::SpoofedIpv4)
                }
            }
            L3::Ipv6 { src, upper } => self.check_v6(src, upper),
            L3::Malformed => Err(Reason::Malformed),
            L3::Rarp | L3::Other => Ok(()),
        }
    }

    fn check_v6(&self, src: &Ipv6Addr, upper: &Upper<'_>) -> Result<(), Reason> {
        let icmp = match upper {
            Upper::Icmpv6(m) => Some(*m),
            _ => None,
        };
        let ty = icmp.and_then(|m| m.first().copied());
        if src.is_unspecified() {
            // Duplicate address detection: the NS and the MLD reports
            // that go with it (RFC 4862 §5.4.2, RFC 3810 §5.2.13).
            if !matches!(
                ty,
                Some(icmpv6::NEIGHBOR_SOLICIT | icmpv6::MLD_REPORT | icmpv6::MLD2_REPORT)
            ) {
                return Err(Reason::SpoofedIpv6);
            }
        } else if !self.owns_v6(src) {
            return Err(Reason::SpoofedIpv6);
        }
        match (ty, icmp) {
            (Some(icmpv6::NEIGHBOR_SOLICIT | icmpv6::NEIGHBOR_ADVERT), Some(m)) => {
                self.check_nd(src, m)
            }
            _ => Ok(()),
        }
    }

    /// An NA may only advertise the port's own addresses with its own MAC;
    /// an NS may only carry its own MAC, and a DAD probe only claim its
    /// own addresses.
    fn check_nd(&self, src: &Ipv6Addr, m: &[u8]) -> Result<(), Reason> {
        let Ok(msg) = ndisc::Message::new_checked(m) else {
            return Err(Reason::Malformed);
        };
        let foreign = |o: Option<MacAddr>| o.is_some_and(|mac| mac != self.mac);
        let bad = if msg.is_advert() {
            !self.owns_v6(&msg.target()) || foreign(msg.target_lladdr())
        } else {
            foreign(msg.source_lladdr()) || (src.is_unspecified() && !self.owns_v6(&msg.target()))
        };
        if bad {
            Err(Reason::SpoofedNd)
        } else {
            Ok(())
        }
    }
}

/// A DHCP client's request (from 0.0.0.0 before it has an address).
fn is_dhcp_client(upper: &Upper<'_>) -> bool {
    matches!(
        upper,
        Upper::Udp {
            src_port: dhcp::V4_CLIENT_PORT,
            dst_port: dhcp::V4_SERVER_PORT,
            ..
        }
    )
}

/// The EUI-64 link-local address of `mac` (RFC 4291 appendix A): what a
/// guest's kernel configures by default.
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::from([
        0xfe,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        m[0] ^ 0x02,
        m[1],
        m[2],
        0xff,
        0xfe,
        m[3],
        m[4],
        m[5],
    ])
}
