//! The DHCP and router-advertisement guard: only ports that are meant to
//! (`dhcp_server`, `router_advertisements`) may send a DHCP server's
//! messages or RAs and redirects; a rogue server in a VM reaches nobody.
//! What the guard cannot see into (a first fragment too short for its UDP
//! or ICMPv6 header, an IPv6 header chain it will not walk) is dropped on
//! a guarded port: that is how RA guard is evaded (RFC 7113).

use super::classify::{icmpv6, Upper, L3};
use super::Reason;
use crate::wire::dhcp;

/// Which server roles a port is refused.
#[derive(Debug, Clone, Copy)]
pub(super) struct Guard {
    pub dhcp: bool,
    pub ra: bool,
}

impl Guard {
    pub fn active(&self) -> bool {
        self.dhcp || self.ra
    }

    pub fn check(&self, l3: &L3<'_>) -> Result<(), Reason> {
        let (v6, upper) = match l3 {
            L3::Ipv4 { upper, .. } => (false, upper),
            L3::Ipv6 { upper, .. } => (true, upper),
            L3::Malformed => return Err(Reason::Malformed),
            _ => return Ok(()),
        };
        match *upper {
            Upper::Udp {
                src_port,
                dst_port,
                payload,
            } if self.dhcp => {
                let server = if v6 {
                    dhcp::is_v6_server_message(src_port, dst_port, payload)
                } else {
                    dhcp::is_v4_server_message(src_port, dst_port, payload)
                };
                if server {
                    return Err(Reason::DhcpServer);
                }
            }
            Upper::Icmpv6(m) if self.ra => {
                if matches!(m.first(), Some(&(icmpv6::ROUTER_ADVERT | icmpv6::REDIRECT))) {
                    return Err(Reason::RouterAdvertisement);
                }
            }
            Upper::Truncated => return Err(Reason::Malformed),
            _ => {}
        }
        Ok(())
    }
}
