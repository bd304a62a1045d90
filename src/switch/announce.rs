//! Announcements: the frames with which a host says "this MAC (and address)
//! is here now". After a live migration they are the first thing the new
//! node hears from a VM, so the switch treats them as claims that move the
//! MAC at once (see the rules in the module doc of [`super`]).
//!
//! - A gratuitous ARP (request or reply with sender IP == target IP), sent
//!   by a guest kernel on link-up or when asked by virtio's GUEST_ANNOUNCE.
//! - A RARP request about the sender itself (ethertype 0x8035, op 3,
//!   sha == tha, IPs 0): what qemu sends on its own for a migrated guest,
//!   first ~50 ms after the guest resumes, then in rounds further apart.
//! - An unsolicited IPv6 neighbour advertisement (S flag clear).
//!
//! Detection requires the ARP sender / NA target link-layer address to be
//! the frame's own source MAC: the announcement must be about the sender,
//! otherwise it moves nothing. batman-adv's bridge loop avoidance claim
//! frames look gratuitous too (sha 43:05:43:05:xx:xx) and are not ours.
//!
//! The builders write into a caller-provided `Vec` (cleared first, its
//! allocation reused): `meshwire ctl announce` uses them to announce a VM
//! into its port and the mesh on its behalf.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::wire::arp::{self, Operation};
use crate::wire::ethernet::{
    ethertype, Frame, BATMAN_VLAN_HAS_TAG, HEADER_LEN, VID_MASK, VLAN_TAG_LEN,
};
use crate::wire::ndisc::{self, Ipv6Fixed, Message, Ndisc};
use crate::wire::MacAddr;

/// The Ethernet minimum frame length without FCS; ARP frames are padded to it
/// (qemu pads its RARP the same way).
pub const ETH_ZLEN: usize = 60;
/// batman-adv's bridge loop avoidance claim frames use ARP with this sender
/// hardware address prefix.
const BLA_CLAIM_PREFIX: [u8; 4] = [0x43, 0x05, 0x43, 0x05];
/// ff02::1, and the Ethernet group address it maps to (RFC 2464 §7).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
pub const ALL_NODES_MAC: MacAddr = MacAddr([0x33, 0x33, 0, 0, 0, 1]);
/// Length of an NA with one link-layer address option.
const NA_ICMP_LEN: usize = ndisc::AdvertRepr::LEN;

/// Which announcement a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Announce {
    GratuitousArp,
    Rarp,
    UnsolicitedNa,
}

impl Announce {
    /// What announcement, if any, a checked frame carries about its source.
    /// Never panics: every inner view is checked.
    pub fn detect<T: AsRef<[u8]>>(frame: &Frame<T>) -> Option<Announce> {
        let src = frame.src_addr();
        match frame.inner_ethertype() {
            ethertype::ARP => {
                let a = arp::Packet::new_checked(frame.payload()).ok()?;
                let about_sender = a.sha() == src && !a.spa().is_unspecified();
                let bla = a.sha().0.starts_with(&BLA_CLAIM_PREFIX);
                (a.is_gratuitous() && about_sender && !bla).then_some(Announce::GratuitousArp)
            }
            ethertype::RARP => {
                let a = arp::Packet::new_checked(frame.payload()).ok()?;
                (a.is_rarp_announce() && a.sha() == src).then_some(Announce::Rarp)
            }
            ethertype::IPV6 => {
                let n = Ndisc::parse(frame.payload()).ok()?;
                // A NA without the option still names its sender by the
                // frame's source; one that names another MAC is not about it.
                let lladdr_ok = n.target_lladdr.is_none_or(|m| m == src);
                (n.is_unsolicited_advert() && lladdr_ok).then_some(Announce::UnsolicitedNa)
            }
            _ => None,
        }
    }
}

/// The 802.1Q VLAN id of a batman-adv vid (`0x8000 | id`), None untagged.
pub fn vlan_of_batman_vid(vid: u16) -> Option<u16> {
    (vid & BATMAN_VLAN_HAS_TAG != 0).then_some(vid & VID_MASK)
}

/// Clears `out`, sizes it to `payload_len` after an Ethernet header (with an
/// 802.1Q tag of id `vlan` if given), zero-filled, writes the header and
/// returns where the payload starts.
pub(crate) fn start_frame(
    out: &mut Vec<u8>,
    dst: MacAddr,
    src: MacAddr,
    proto: u16,
    vlan: Option<u16>,
    payload_len: usize,
) -> usize {
    let header = HEADER_LEN + vlan.map_or(0, |_| VLAN_TAG_LEN);
    out.clear();
    out.resize(header + payload_len, 0);
    let mut f = Frame::new_unchecked(&mut out[..]);
    f.set_dst_addr(dst);
    f.set_src_addr(src);
    match vlan {
        Some(id) => {
            f.set_ethertype(ethertype::VLAN);
            f.set_vlan_tag(id & VID_MASK, proto);
        }
        None => f.set_ethertype(proto),
    }
    header
}

/// Pads short frames to the Ethernet minimum.
pub(crate) fn pad(out: &mut Vec<u8>) {
    if out.len() < ETH_ZLEN {
        out.resize(ETH_ZLEN, 0);
    }
}

/// A gratuitous ARP request for `ip` at `mac`: broadcast, sender == target
/// IP, target hardware address zero (like Linux's own announcements).
pub fn build_gratuitous_arp(out: &mut Vec<u8>, mac: MacAddr, ip: Ipv4Addr, vlan: Option<u16>) {
    let off = start_frame(
        out,
        MacAddr::BROADCAST,
        mac,
        ethertype::ARP,
        vlan,
        arp::PACKET_LEN,
    );
    let repr = arp::Repr {
        operation: Operation::Request,
        sha: mac,
        spa: ip,
        tha: MacAddr::ZERO,
        tpa: ip,
    };
    repr.emit(&mut arp::Packet::new_unchecked(
        out.get_mut(off..).unwrap_or(&mut []),
    ));
    pad(out);
}

/// A RARP "request reverse" about `mac` as qemu sends it for a migrated
/// guest: broadcast, sha == tha == mac, both IPs 0, padded to 60 bytes.
pub fn build_rarp(out: &mut Vec<u8>, mac: MacAddr, vlan: Option<u16>) {
    let off = start_frame(
        out,
        MacAddr::BROADCAST,
        mac,
        ethertype::RARP,
        vlan,
        arp::PACKET_LEN,
    );
    let repr = arp::Repr {
        operation: Operation::ReverseRequest,
        sha: mac,
        spa: Ipv4Addr::UNSPECIFIED,
        tha: mac,
        tpa: Ipv4Addr::UNSPECIFIED,
    };
    repr.emit(&mut arp::Packet::new_unchecked(
        out.get_mut(off..).unwrap_or(&mut []),
    ));
    pad(out);
}

/// An unsolicited neighbour advertisement for `ip` at `mac` (RFC 4861
/// §7.2.6): to ff02::1, hop limit 255, Override set (so neighbours replace a
/// cached address), Solicited clear, with a target link-layer address option
/// and the ICMPv6 checksum. The IPv6 source is `ip` itself: the address is
/// assigned to the VM, whose link-local address we do not know.
pub fn build_unsolicited_na(out: &mut Vec<u8>, mac: MacAddr, ip: Ipv6Addr, vlan: Option<u16>) {
    let off = start_frame(
        out,
        ALL_NODES_MAC,
        mac,
        ethertype::IPV6,
        vlan,
        ndisc::IPV6_HEADER_LEN + NA_ICMP_LEN,
    );
    let mut h = Ipv6Fixed::new_unchecked(out.get_mut(off..).unwrap_or(&mut []));
    h.set_version_default();
    h.set_payload_len(NA_ICMP_LEN as u16);
    h.set_next_header(ndisc::IPPROTO_ICMPV6);
    h.set_hop_limit(ndisc::NDISC_HOP_LIMIT);
    h.set_src_addr(&ip);
    h.set_dst_addr(&ALL_NODES);
    let na = ndisc::AdvertRepr {
        flags: ndisc::FLAG_OVERRIDE,
        target: ip,
        target_lladdr: mac,
    };
    na.emit(
        &mut Message::new_unchecked(h.payload_mut()),
        &ip,
        &ALL_NODES,
    );
}
