//! The MTU arithmetic of the encapsulation, in one place: config defaults,
//! the tunnel's datagram sizes and the ports' frame limits all come from
//! here. Outside in, a VM frame crossing the mesh carries
//!
//! ```text
//! underlay IP (20 / 40) + UDP 8 + WireGuard 32      (underlay_overhead)
//!   inner IP (20 / 40) + GRE 4 + Ethernet 14       (gretap_overhead)
//!     batman unicast header 10                     (BATMAN_UNICAST_HEADER)
//!       the VM's Ethernet header 14 (+ 4 per VLAN tag) and payload (its MTU)
//! ```
//!
//! 98 bytes before the batman header over IPv4, 138 over IPv6 (meshwire
//! uses IPv6 inner addresses whenever anything is IPv6).

use super::{ethernet, gre, ipv4, ipv6, wireguard};

pub const UDP_HEADER_LEN: usize = 8;
/// batman-adv's unicast header, the one a whole client frame travels behind.
pub const BATMAN_UNICAST_HEADER: usize = 10;

/// An IP header of either family.
pub const fn ip_header_len(v6: bool) -> usize {
    if v6 {
        ipv6::HEADER_LEN
    } else {
        ipv4::HEADER_LEN
    }
}

/// Underlay IP + UDP + WireGuard data framing around an inner packet.
pub const fn underlay_overhead(underlay_v6: bool) -> usize {
    ip_header_len(underlay_v6) + UDP_HEADER_LEN + wireguard::DATA_OVERHEAD
}

/// Inner IP + GRE + the hard interface's Ethernet header around a batman
/// packet: what a kernel gretap adds.
pub const fn gretap_overhead(inner_v6: bool) -> usize {
    ip_header_len(inner_v6) + gre::HEADER_LEN + ethernet::HEADER_LEN
}

/// Everything before the batman header.
pub const fn link_overhead(v6: bool) -> usize {
    underlay_overhead(v6) + gretap_overhead(v6)
}

/// The largest batman packet a link carries in one datagram over an
/// underlay of `underlay_mtu` (1402 over a 1500-byte IPv4 underlay).
pub const fn hardif_mtu(underlay_mtu: usize, v6: bool) -> usize {
    underlay_mtu.saturating_sub(link_overhead(v6))
}

/// The largest VM MTU whose frames cross a link of `hardif_mtu` whole, in
/// one batman unicast (1378 over a 1500-byte IPv4 underlay). Larger frames
/// travel as batman fragments.
pub const fn unfragmented_port_mtu(hardif_mtu: usize) -> usize {
    hardif_mtu.saturating_sub(BATMAN_UNICAST_HEADER + ethernet::HEADER_LEN)
}

/// The largest frame a port of MTU `mtu` carries: the Ethernet header and
/// one 802.1Q tag on top of the MTU.
pub const fn max_frame_len(mtu: usize) -> usize {
    mtu + ethernet::HEADER_LEN + ethernet::VLAN_TAG_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_figures() {
        assert_eq!(link_overhead(false), 98);
        assert_eq!(link_overhead(true), 138);
        assert_eq!(hardif_mtu(1500, false), 1402);
        assert_eq!(unfragmented_port_mtu(hardif_mtu(1500, false)), 1378);
        assert_eq!(unfragmented_port_mtu(hardif_mtu(1500, true)), 1338);
        assert_eq!(underlay_overhead(false), 60);
        assert_eq!(underlay_overhead(true), 80);
        assert_eq!(max_frame_len(1500), 1518);
        assert_eq!(hardif_mtu(50, false), 0);
    }
}
