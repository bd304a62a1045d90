//! The hook points where per-port features meet the hub, in the order a
//! frame meets them (batman-adv's mesh-interface.c calls loop avoidance,
//! DAT and multicast the same way, each from one place):
//!
//! - **port ingress** ([`Hooks::port_ingress`]): every frame from a port,
//!   before the switch learns its source. Port policy lives here: what a
//!   port may send at all. Today: batman-adv's own ethertype (0x4305,
//!   plain or behind VLAN tags) never enters from a port: a kernel
//!   bat0 drops such frames, and a VM must not inject batman packets into
//!   the mesh's encapsulation.
//! - **flood** (`Bridge::flood_ports`, `forward.rs`): every broadcast,
//!   multicast and unknown unicast, before it is copied to ports and the
//!   mesh: where storm control and ARP/ND answers will sit.
//! - **port egress** (`Bridge::port_out`, `forward.rs`): every frame written
//!   to a port, local or from the mesh: where network (VLAN) isolation
//!   will sit.
//!
//! TCP MSS clamping runs at port ingress and egress: a SYN promising more
//! than the smallest link carries whole is rewritten (`wire/mss.rs`).
//!
//! Each hook counts what it drops, per reason.

use std::collections::HashMap;

use serde::Serialize;

use crate::port::PortId;
use crate::wire::ethernet;
use crate::wire::mss;

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct HooksCounters {
    /// TCP SYNs whose MSS was lowered so the connection's segments cross
    /// every link whole (port ingress and egress).
    pub mss_clamped: u64,
    /// Frames from a port with batman-adv's ethertype (0x4305), plain or
    /// VLAN-tagged.
    pub drop_batman_from_port: u64,
}

/// Per-port drop counters of the hooks.
#[derive(Debug, Default)]
pub struct Hooks {
    counters: HooksCounters,
    per_port: HashMap<PortId, HooksCounters>,
    /// The MSS clamp for IPv4 and IPv6 (None: off).
    mss: Option<(u16, u16)>,
    /// A copy of a frame being rewritten (kept for its allocation).
    scratch: Vec<u8>,
}

impl Hooks {
    /// The ingress hook: whether a frame from `port` may enter the bridge.
    pub fn port_ingress(&mut self, port: PortId, frame: &[u8]) -> bool {
        if is_batman(frame) {
            self.counters.drop_batman_from_port += 1;
            if let Some(c) = self.per_port.get_mut(&port) {
                c.drop_batman_from_port += 1;
            }
            return false;
        }
        true
    }

    /// TCP MSS clamping: SYNs crossing a port promise at most `v4` / `v6`
    /// bytes per segment, so TCP never needs batman fragments.
    pub fn set_mss_clamp(&mut self, clamp: Option<(u16, u16)>) {
        self.mss = clamp;
    }

    /// A copy of `frame` with its SYN's MSS clamped, when it needs that
    /// (hand the copy back with [`Hooks::done_with`]). Both port ingress and
    /// port egress call it: our VMs' SYNs bound what the far end sends, and
    /// the far end's (a kernel node's client, say) what our VMs send.
    pub fn clamp_mss(&mut self, port: PortId, frame: &[u8]) -> Option<Vec<u8>> {
        let (v4, v6) = self.mss?;
        if !mss::needs_clamp(frame, v4, v6) {
            return None;
        }
        let mut copy = std::mem::take(&mut self.scratch);
        copy.clear();
        copy.extend_from_slice(frame);
        mss::clamp(&mut copy, v4, v6)?;
        self.counters.mss_clamped += 1;
        if let Some(c) = self.per_port.get_mut(&port) {
            c.mss_clamped += 1;
        }
        Some(copy)
    }

    /// Takes back the buffer `clamp_mss` lent.
    pub fn done_with(&mut self, scratch: Vec<u8>) {
        self.scratch = scratch;
    }

    pub fn counters(&self) -> &HooksCounters {
        &self.counters
    }

    /// What the hooks dropped of `port`'s frames.
    pub fn port_counters(&self, port: PortId) -> HooksCounters {
        self.per_port.get(&port).copied().unwrap_or_default()
    }

    pub(super) fn port_added(&mut self, port: PortId) {
        self.per_port.entry(port).or_default();
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
