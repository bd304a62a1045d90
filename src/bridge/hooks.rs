//! The hook points where per-port features meet the hub, in the order a
//! frame meets them (batman-adv's mesh-interface.c calls loop avoidance,
//! DAT and multicast the same way, each from one place):
//!
//! - **port ingress** ([`Hooks::port_ingress`]): every frame from a port,
//!   before the switch learns its source. batman-adv's own ethertype
//!   (0x4305, plain or behind VLAN tags) never enters from a port: a
//!   kernel bat0 drops such frames, and a VM must not inject batman
//!   packets into the mesh's encapsulation. Then the port's policy
//!   (`policy/`): anti-spoofing, DHCP/RA guard, ARP/ND rate, and the
//!   port's network (a VLAN port's frames are tagged here).
//! - **flood** ([`Hooks::flood_admit`], called from `forward.rs`): every
//!   broadcast, multicast and unknown unicast from a port, before it is
//!   copied to ports and the mesh: ARP requests and NSs the bridge can
//!   answer on the owner's behalf are answered into the port and go no
//!   further (`arp_nd.rs`); the rest meet storm control.
//! - **port egress** ([`Hooks::port_egress`], `Bridge::port_out`): every
//!   frame written to a port, local or from the mesh: network isolation
//!   (frames of other networks dropped, the port's VLAN untagged), and a
//!   VM port without `ipv4` learning its address from its DHCP ACK.
//!
//! TCP MSS clamping runs at port ingress and egress: a SYN promising more
//! than the smallest link carries whole is rewritten (`wire/mss.rs`).
//!
//! Each hook counts what it drops, per reason, in total and per port.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::policy::{link_local, Enter, Leave, PortPolicy, PortState, Reason};
use crate::port::PortId;
use crate::wire::ethernet;
use crate::wire::mss;
use crate::wire::MacAddr;

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct HooksCounters {
    /// TCP SYNs whose MSS was lowered so the connection's segments cross
    /// every link whole (port ingress and egress).
    pub mss_clamped: u64,
    /// Frames from a port with batman-adv's ethertype (0x4305), plain or
    /// VLAN-tagged.
    pub drop_batman_from_port: u64,
    /// VM ports: a source MAC other than the port's `mac`.
    pub drop_spoofed_mac: u64,
    /// VM ports: an IPv4 source the port does not own.
    pub drop_spoofed_ipv4: u64,
    /// VM ports: an IPv6 source the port does not own.
    pub drop_spoofed_ipv6: u64,
    /// VM ports: ARP with another sender MAC or IPv4 address.
    pub drop_spoofed_arp: u64,
    /// VM ports: an NA for an address the port does not own, or an ND
    /// link-layer option with another MAC.
    pub drop_spoofed_nd: u64,
    /// DHCP (v4 or v6) server messages from a port that is not a server.
    pub drop_dhcp_server: u64,
    /// Router advertisements and redirects from a port that is no router.
    pub drop_router_advertisement: u64,
    /// ARP or IP the policy could not read (refused by the wire views,
    /// tiny first fragments, over-long IPv6 header chains).
    pub drop_malformed: u64,
    /// ARP and NS/NA beyond `arp_nd_rate`.
    pub drop_arp_nd_rate: u64,
    /// Floods (broadcast, multicast, unknown unicast) beyond `broadcast_rate`.
    pub drop_broadcast_rate: u64,
    /// Tagged frames from a VM port, or of a VLAN an uplink does not carry.
    pub drop_vlan: u64,
    /// Broadcast or multicast of a kind the port's `multicast` list lacks.
    pub drop_multicast_not_allowed: u64,
    /// Frames of another network not written to the port (isolation at
    /// egress; not a loss).
    pub egress_other_network: u64,
    /// IPv4 addresses learned from a DHCP ACK sent to the port.
    pub dhcp_learned: u64,
    /// ARP requests from the port answered on the owner's behalf (not
    /// flooded; see "ARP/ND suppression" in the README).
    pub arp_answered: u64,
    /// Neighbour solicitations from the port answered on the owner's behalf.
    pub nd_answered: u64,
    /// ARP requests and NSs from the port no answer was known for: flooded
    /// as before.
    pub arp_nd_unanswered: u64,
}

impl HooksCounters {
    /// Every frame the policy refused from the port (the egress filter is
    /// isolation, not a drop of the port's traffic).
    pub fn drops(&self) -> u64 {
        self.drop_batman_from_port
            + self.drop_spoofed_mac
            + self.drop_spoofed_ipv4
            + self.drop_spoofed_ipv6
            + self.drop_spoofed_arp
            + self.drop_spoofed_nd
            + self.drop_dhcp_server
            + self.drop_router_advertisement
            + self.drop_malformed
            + self.drop_arp_nd_rate
            + self.drop_broadcast_rate
            + self.drop_vlan
            + self.drop_multicast_not_allowed
    }
}

/// What port ingress decided.
pub enum Admit {
    Drop,
    Pass,
    /// The frame to switch instead (tagged with the port's VLAN); hand it
    /// back with [`Hooks::done_with`].
    Rewritten(Vec<u8>),
}

/// How often idle storm-control sources are forgotten.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// The ports' policies and the hooks' counters.
#[derive(Debug, Default)]
pub struct Hooks {
    counters: HooksCounters,
    per_port: HashMap<PortId, PortState>,
    /// The MSS clamp for IPv4 and IPv6 (None: off).
    mss: Option<(u16, u16)>,
    /// Buffers for rewritten frames (kept for their allocation).
    spare: Vec<Vec<u8>>,
    last_expire: Option<Instant>,
}

impl Hooks {
    /// Sets the policy of `port` (a port the bridge does not switch yet
    /// gets it when added). Other ports are untouched; this port's
    /// counters stay.
    pub fn set_policy(&mut self, port: PortId, policy: PortPolicy) {
        match self.per_port.get_mut(&port) {
            Some(st) => st.replace(policy),
            None => {
                self.per_port.insert(port, PortState::new(policy));
            }
        }
    }

    pub fn policy(&self, port: PortId) -> Option<&PortPolicy> {
        self.per_port.get(&port).map(|s| &s.policy)
    }

    /// The IPv4 address `port` learned from a DHCP ACK, if any.
    pub fn learned_v4(&self, port: PortId) -> Option<Ipv4Addr> {
        self.per_port.get(&port).and_then(PortState::learned_v4)
    }

    /// The batman vid of `port`'s own network (0: untagged).
    pub fn port_vid(&self, port: PortId) -> u16 {
        self.per_port.get(&port).map_or(0, PortState::vid)
    }

    /// The VM port (and its MAC) whose policy owns `ip` in network `vid`:
    /// its `ipv4`, `ipv6`, DHCP-learned IPv4 or its MAC's link-local
    /// address. A scan of the ports, for ARP requests and NSs only.
    pub fn owner_of(&self, vid: u16, ip: IpAddr) -> Option<(PortId, MacAddr)> {
        self.per_port.iter().find_map(|(&p, st)| {
            let mac = st.policy.mac?;
            if st.vid() != vid {
                return None;
            }
            let owns = match ip {
                IpAddr::V4(a) => st.policy.ipv4.contains(&a) || st.learned_v4() == Some(a),
                IpAddr::V6(a) => st.policy.ipv6.contains(&a) || link_local(mac) == a,
            };
            owns.then_some((p, mac))
        })
    }

    /// Counts a request of `port` answered (Some(true) ARP, Some(false)
    /// ND) or not (None).
    pub(super) fn count_arp_nd(&mut self, port: PortId, answered: Option<bool>) {
        let bump = |c: &mut HooksCounters| match answered {
            Some(true) => c.arp_answered += 1,
            Some(false) => c.nd_answered += 1,
            None => c.arp_nd_unanswered += 1,
        };
        bump(&mut self.counters);
        if let Some(st) = self.per_port.get_mut(&port) {
            bump(&mut st.counters);
        }
    }

    fn drop(&mut self, port: PortId, why: Reason) {
        why.count(&mut self.counters);
        if let Some(st) = self.per_port.get_mut(&port) {
            why.count(&mut st.counters);
        }
    }

    /// The ingress hook: whether (and as what) a frame from `port` may
    /// enter the bridge.
    pub fn port_ingress(&mut self, now: Instant, port: PortId, frame: &[u8]) -> Admit {
        if is_batman(frame) {
            self.drop(port, Reason::Batman);
            return Admit::Drop;
        }
        let Some(st) = self.per_port.get_mut(&port) else {
            return Admit::Pass;
        };
        match st.ingress(now, frame) {
            Ok(Enter::AsIs) => Admit::Pass,
            Ok(Enter::Tag(id)) => {
                let mut buf = self.spare.pop().unwrap_or_default();
                PortState::push_tag(frame, id, &mut buf);
                Admit::Rewritten(buf)
            }
            Err(why) => {
                self.drop(port, why);
                Admit::Drop
            }
        }
    }

    /// The flood hook: whether a broadcast, multicast or unknown unicast
    /// from `port` may be copied to the other ports and the mesh.
    pub fn flood_admit(&mut self, now: Instant, port: PortId, frame: &[u8]) -> bool {
        let Some(st) = self.per_port.get_mut(&port) else {
            return true;
        };
        match st.flood(now, frame) {
            Ok(()) => true,
            Err(why) => {
                self.drop(port, why);
                false
            }
        }
    }

    /// The egress hook: None when the frame must not be written to
    /// `port`; Some(None) as it is; Some(Some(copy)) rewritten (hand the
    /// copy back with [`Hooks::done_with`]).
    pub fn port_egress(&mut self, port: PortId, frame: &[u8]) -> Option<Option<Vec<u8>>> {
        let Some(st) = self.per_port.get_mut(&port) else {
            return Some(None);
        };
        match st.egress(frame) {
            Ok(Leave::AsIs) => Some(None),
            Ok(Leave::Untag) => {
                let mut buf = self.spare.pop().unwrap_or_default();
                PortState::strip_tag(frame, &mut buf);
                Some(Some(buf))
            }
            Err(why) => {
                self.drop(port, why);
                None
            }
        }
    }

    /// Timers: idle storm-control sources are forgotten once a second.
    pub fn tick(&mut self, now: Instant) {
        if self
            .last_expire
            .is_some_and(|t| now.saturating_duration_since(t) < EXPIRE_EVERY)
        {
            return;
        }
        self.last_expire = Some(now);
        for st in self.per_port.values_mut() {
            st.expire(now);
        }
    }

    /// TCP MSS clamping: SYNs crossing a port promise at most `v4` / `v6`
    /// bytes per segment, so TCP never needs batman fragments.
    pub fn set_mss_clamp(&mut self, clamp: Option<(u16, u16)>) {
        self.mss = clamp;
    }

    /// `frame` (or `copy`, its rewritten form, when there is one) with its
    /// SYN's MSS clamped, when it needs that: returns the copy to use, if
    /// any (hand it back with [`Hooks::done_with`]). Both port ingress and
    /// port egress call it: our VMs' SYNs bound what the far end sends,
    /// and the far end's (a kernel node's client, say) what our VMs send.
    pub fn clamp_mss(
        &mut self,
        port: PortId,
        frame: &[u8],
        copy: Option<Vec<u8>>,
    ) -> Option<Vec<u8>> {
        let Some((v4, v6)) = self.mss else {
            return copy;
        };
        if !mss::needs_clamp(copy.as_deref().unwrap_or(frame), v4, v6) {
            return copy;
        }
        let mut buf = copy.unwrap_or_else(|| {
            let mut b = self.spare.pop().unwrap_or_default();
            b.clear();
            b.extend_from_slice(frame);
            b
        });
        if mss::clamp(&mut buf, v4, v6).is_some() {
            self.counters.mss_clamped += 1;
            if let Some(st) = self.per_port.get_mut(&port) {
                st.counters.mss_clamped += 1;
            }
        }
        Some(buf)
    }

    /// Takes back a buffer a hook lent.
    pub fn done_with(&mut self, buf: Vec<u8>) {
        if self.spare.len() < 4 {
            self.spare.push(buf);
        }
    }

    pub fn counters(&self) -> &HooksCounters {
        &self.counters
    }

    /// What the hooks dropped of `port`'s frames.
    pub fn port_counters(&self, port: PortId) -> HooksCounters {
        self.per_port
            .get(&port)
            .map(|s| s.counters)
            .unwrap_or_default()
    }

    pub(super) fn port_added(&mut self, port: PortId) {
        self.per_port
            .entry(port)
            .or_insert_with(|| PortState::new(PortPolicy::default()));
    }

    pub(super) fn port_removed(&mut self, port: PortId) {
        self.per_port.remove(&port);
    }
}

/// batman-adv's ethertype, after up to two VLAN tags. A frame too short to
/// say is left to the switch, which drops and counts runts.
fn is_batman(frame: &[u8]) -> bool {
    ethernet::l3_offset(frame).is_some_and(|(_, et)| et == ethernet::ethertype::BATMAN)
}
