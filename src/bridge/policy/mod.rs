//! Port policy: what a port may send, how much of it may flood, and which
//! network it belongs to. The hooks (`hooks.rs`) call it at port ingress
//! (every frame from a port, before the switch learns), at the flood
//! (before a port's broadcast, multicast or unknown unicast is copied) and
//! at port egress (every frame written to a port).
//!
//! - `classify.rs`: one walk of the frame to what the checks look at;
//! - `spoof.rs`: the port's own MAC, IPv4/IPv6 sources, ARP sender, ND;
//! - `guard.rs`: DHCP server and router advertisement guard;
//! - `storm.rs`: token buckets (per port, per source MAC on uplinks);
//! - `mcast.rs`: the multicast allowlist;
//! - `vlan.rs`: isolated networks (tag at ingress, untag at egress).
//!
//! ARP/ND suppression and batman's distributed ARP table belong at the
//! flood hook as well, after storm control has admitted a request and
//! before it is copied: `Hooks::flood_admit` is where they will answer.
//!
//! A port with `mac` is a VM port: spoof checks on, DHCP and RA server
//! roles off, unless its policy says otherwise. A port without (a bridge
//! uplink) learns freely; both keep the rate limits.

mod classify;
mod guard;
pub mod mcast;
mod spoof;
pub mod storm;
mod vlan;

#[cfg(test)]
pub(crate) mod frames;
#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use serde::Serialize;

use crate::wire::ethernet::{self, Frame};
use crate::wire::{dhcp, MacAddr};

pub use spoof::link_local;

use super::hooks::HooksCounters;
use classify::{classify, Upper, L3};

/// ARP + NS/NA per second a port (or an uplink's source MAC) may send by
/// default: a VM resolving neighbours sends a few.
pub const DEFAULT_ARP_ND_RATE: u32 = 100;
/// Broadcast + multicast + unknown unicast per second by default: far
/// above what a VM's own discovery traffic needs.
pub const DEFAULT_BROADCAST_RATE: u32 = 1000;

/// One port's policy, as the config or `ctl port` states it (resolved:
/// defaults filled in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortPolicy {
    /// The only source MAC the port may use; Some makes it a VM port.
    pub mac: Option<MacAddr>,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    /// The port's network (VLAN id), untagged toward the port.
    pub vlan: Option<u16>,
    /// Uplinks: the VLANs carried tagged.
    pub trunk: Vec<u16>,
    pub dhcp_server: bool,
    pub router_advertisements: bool,
    /// Per second; 0 is no limit.
    pub arp_nd_rate: u32,
    pub broadcast_rate: u32,
    /// The broadcast and multicast kinds the port may send (None: all).
    pub multicast: Option<Vec<mcast::McastKind>>,
}

impl Default for PortPolicy {
    /// A bridge uplink: no MAC, every role, default rate limits.
    fn default() -> Self {
        PortPolicy {
            mac: None,
            ipv4: Vec::new(),
            ipv6: Vec::new(),
            vlan: None,
            trunk: Vec::new(),
            dhcp_server: true,
            router_advertisements: true,
            arp_nd_rate: DEFAULT_ARP_ND_RATE,
            broadcast_rate: DEFAULT_BROADCAST_RATE,
            multicast: None,
        }
    }
}

impl PortPolicy {
    /// A VM port's defaults: its MAC, no server roles.
    pub fn vm(mac: MacAddr) -> Self {
        PortPolicy {
            mac: Some(mac),
            dhcp_server: false,
            router_advertisements: false,
            ..PortPolicy::default()
        }
    }
}

/// Why a hook dropped a frame (each a counter in [`HooksCounters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Batman,
    SpoofedMac,
    SpoofedIpv4,
    SpoofedIpv6,
    SpoofedArp,
    SpoofedNd,
    DhcpServer,
    RouterAdvertisement,
    Malformed,
    ArpNdRate,
    BroadcastRate,
    Vlan,
    OtherNetwork,
    Multicast,
}

impl Reason {
    pub fn count(self, c: &mut HooksCounters) {
        let n = match self {
            Reason::Batman => &mut c.drop_batman_from_port,
            Reason::SpoofedMac => &mut c.drop_spoofed_mac,
            Reason::SpoofedIpv4 => &mut c.drop_spoofed_ipv4,
            Reason::SpoofedIpv6 => &mut c.drop_spoofed_ipv6,
            Reason::SpoofedArp => &mut c.drop_spoofed_arp,
            Reason::SpoofedNd => &mut c.drop_spoofed_nd,
            Reason::DhcpServer => &mut c.drop_dhcp_server,
            Reason::RouterAdvertisement => &mut c.drop_router_advertisement,
            Reason::Malformed => &mut c.drop_malformed,
            Reason::ArpNdRate => &mut c.drop_arp_nd_rate,
            Reason::BroadcastRate => &mut c.drop_broadcast_rate,
            Reason::Vlan => &mut c.drop_vlan,
            Reason::OtherNetwork => &mut c.egress_other_network,
            Reason::Multicast => &mut c.drop_multicast_not_allowed,
        };
        *n += 1;
    }
}

/// What ingress decided for a frame that may enter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Enter {
    AsIs,
    /// Tag it with this VLAN id first.
    Tag(u16),
}

/// What egress decided for a frame that may leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Leave {
    AsIs,
    Untag,
}

/// A port's policy and its live state.
#[derive(Debug)]
pub(super) struct PortState {
    pub policy: PortPolicy,
    pub counters: HooksCounters,
    net: vlan::Network,
    storm: storm::Storm,
    /// The IPv4 address a DHCP ACK granted (VM ports without `ipv4`).
    learned_v4: Option<Ipv4Addr>,
}

impl PortState {
    pub fn new(policy: PortPolicy) -> PortState {
        PortState {
            net: vlan::Network {
                vlan: policy.vlan,
                trunk: policy.trunk.clone(),
                vm: policy.mac.is_some(),
            },
            storm: storm::Storm::new(policy.mac.is_none()),
            learned_v4: None,
            counters: HooksCounters::default(),
            policy,
        }
    }

    /// A new policy for a running port: counters and a learned address
    /// for the same MAC stay, buckets start full.
    pub fn replace(&mut self, policy: PortPolicy) {
        let mut next = PortState::new(policy);
        next.counters = self.counters;
        if next.policy.mac == self.policy.mac {
            next.learned_v4 = self.learned_v4;
        }
        *self = next;
    }

    pub fn learned_v4(&self) -> Option<Ipv4Addr> {
        self.learned_v4
    }

    /// The network's batman vid (what the port's untagged frames carry).
    pub fn vid(&self) -> u16 {
        self.net.vid()
    }

    /// May a frame from this port enter?
    pub fn ingress(&mut self, now: Instant, frame: &[u8]) -> Result<Enter, Reason> {
        let enter = match self.net.ingress(frame) {
            vlan::In::Drop => return Err(Reason::Vlan),
            vlan::In::Pass => Enter::AsIs,
            vlan::In::Push(id) => Enter::Tag(id),
        };
        let (Some((off, et)), Ok(f)) = (ethernet::l3_offset(frame), Frame::new_checked(frame))
        else {
            // A runt: the switch drops and counts it.
            return Ok(enter);
        };
        let src = f.src_addr();
        let l3 = classify(et, frame.get(off..).unwrap_or(&[]));
        if let Some(mac) = self.policy.mac {
            let owner = spoof::Owner {
                mac,
                policy: &self.policy,
                learned_v4: self.learned_v4,
            };
            owner.check(src, &l3)?;
        }
        let g = guard::Guard {
            dhcp: !self.policy.dhcp_server,
            ra: !self.policy.router_advertisements,
        };
        if g.active() {
            g.check(&l3)?;
        }
        if let Some(allow) = &self.policy.multicast {
            if f.dst_addr().is_multicast() && !mcast::kind(&l3).is_some_and(|k| allow.contains(&k))
            {
                return Err(Reason::Multicast);
            }
        }
        if classify::is_arp_nd(&l3)
            && !self
                .storm
                .pair(now, src)
                .arp_nd
                .admit(now, self.policy.arp_nd_rate)
        {
            return Err(Reason::ArpNdRate);
        }
        Ok(enter)
    }

    /// May this port's broadcast, multicast or unknown unicast flood?
    pub fn flood(&mut self, now: Instant, frame: &[u8]) -> Result<(), Reason> {
        let rate = self.policy.broadcast_rate;
        if rate == 0 {
            return Ok(());
        }
        let src = Frame::new_checked(frame).map_or(MacAddr::ZERO, |f| f.src_addr());
        if self.storm.pair(now, src).flood.admit(now, rate) {
            Ok(())
        } else {
            Err(Reason::BroadcastRate)
        }
    }

    /// May a frame leave by this port? A VM port without `ipv4` learns
    /// its address from the DHCP ACK it is sent here.
    pub fn egress(&mut self, frame: &[u8]) -> Result<Leave, Reason> {
        let Ok(f) = Frame::new_checked(frame) else {
            return Ok(Leave::AsIs);
        };
        let leave = match self.net.egress(f.batman_vid()) {
            vlan::Out::Drop => return Err(Reason::OtherNetwork),
            vlan::Out::Pass => Leave::AsIs,
            vlan::Out::Strip => Leave::Untag,
        };
        if let (Some(mac), true) = (self.policy.mac, self.policy.ipv4.is_empty()) {
            self.learn_from_dhcp(mac, frame);
        }
        Ok(leave)
    }

    fn learn_from_dhcp(&mut self, mac: MacAddr, frame: &[u8]) {
        let Some((off, ethernet::ethertype::IPV4)) = ethernet::l3_offset(frame) else {
            return;
        };
        let L3::Ipv4 {
            upper:
                Upper::Udp {
                    dst_port: dhcp::V4_CLIENT_PORT,
                    payload,
                    ..
                },
            ..
        } = classify(ethernet::ethertype::IPV4, frame.get(off..).unwrap_or(&[]))
        else {
            return;
        };
        if let Some(ack) = dhcp::parse_ack(payload) {
            if ack.chaddr == mac.0 && !ack.yiaddr.is_unspecified() {
                if self.learned_v4 != Some(ack.yiaddr) {
                    self.counters.dhcp_learned += 1;
                }
                self.learned_v4 = Some(ack.yiaddr);
            }
        }
    }

    /// Timers: idle sources leave the storm tables.
    pub fn expire(&mut self, now: Instant) {
        self.storm.expire(now);
    }

    pub fn push_tag(frame: &[u8], id: u16, out: &mut Vec<u8>) {
        vlan::push_tag(frame, id, out);
    }

    pub fn strip_tag(frame: &[u8], out: &mut Vec<u8>) {
        vlan::strip_tag(frame, out);
    }
}
