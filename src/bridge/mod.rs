//! The hub between the ports and the mesh, sans I/O: meshwire's
//! counterpart of batman-adv's `mesh-interface.c`.
//!
//! Given a frame and `now`, the [`Bridge`] decides and hands the result to
//! an [`Egress`]: a client frame out of a local port, or an Ethernet frame
//! (batman inside) into the tunnel of a peer. The dataplane implements
//! `Egress` over its TAP queues and send batches; the tests implement it
//! over plain vectors and wire several bridges together without root.
//!
//! A frame walks one way through here:
//! - port -> [`hooks`] ingress policy -> switch decides -> local port, or
//!   mesh unicast/broadcast -> link;
//! - link -> batman packet -> mesh -> (forward to a link) or deliver ->
//!   switch -> local ports, or on to a client's new originator.
//!
//! What lives where:
//! - `forward.rs`: carrying out the switch's decision, the unknown
//!   destination (translation table, else flood) in one place, the
//!   zero-copy unicast path, and redirecting frames in flight after a move;
//! - `sync.rs`: the FDB <-> translation-table sync (claims, withdrawals,
//!   ROAM adverts, TT claims from other originators), and move logs;
//! - `links.rs`: one record per peer link (hard interface MAC, MTU,
//!   liveness) and the Ethernet framing of batman packets;
//! - `hooks.rs`: the named hook points where per-port features plug in
//!   (ingress policy, egress policy, flood control, ARP/ND answers);
//! - `arp_nd.rs`: ARP/ND suppression (the snooped table, the answers);
//! - `announce.rs`: `meshwire ctl announce`, frames built on a VM's behalf;
//! - `mcast_snoop.rs`, `mcast.rs`: IGMP/MLD snooping and querier, listeners
//!   as TT entries, our multicast as unicast copies (batman's multicast
//!   optimisation).
//!
//! A mesh-delivered frame goes to local ports, or (only when it came as
//! unicast for a client that just left one of our ports) on to that
//! client's new originator with the received TTL minus one; a port frame
//! never goes back to its own port. That, with batman's own duplicate
//! detection and TTL, keeps the process loop-free.

#![forbid(unsafe_code)]

mod announce;
pub mod arp_nd;
mod dat;
mod dual;
pub mod events;
mod flap;
mod forward;
pub mod hooks;
mod links;
mod mcast;
pub mod mcast_snoop;
pub mod policy;
mod probe;
mod sync;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::mesh::{HardifId, Mesh, MeshOutput};
use crate::port::PortId;
use crate::switch::{Location, Switch};
use crate::tunnel::PeerId;
use crate::wire::ethernet::Frame;
use crate::wire::MacAddr;

pub use dual::DualCounters;
pub use hooks::{Hooks, HooksCounters};
pub use links::{Link, LinkEvent};
pub use policy::PortPolicy;

/// Where the bridge's decisions go: the I/O side.
pub trait Egress {
    /// A client frame out of local port `port`.
    fn to_port(&mut self, port: PortId, frame: &[u8]);
    /// An Ethernet frame (batman inside) into the tunnel of `peer`, given
    /// in parts that the callee joins (a header and a client frame need not
    /// be joined first).
    fn to_peer(&mut self, peer: PeerId, parts: &[&[u8]]);
}

/// Drops and events the bridge itself counts (the layers count their own).
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct BridgeCounters {
    /// Frames inside GRE that were too short for an Ethernet header.
    pub tunnel_runt: u64,
    /// Frames inside GRE with another ethertype than batman-adv (a kernel
    /// gretap's own IPv6 MLD/DAD frames land here).
    pub tunnel_not_batman: u64,
    /// Batman frames addressed to another hard interface's MAC.
    pub tunnel_not_for_us: u64,
    /// Batman frames from a peer that is not (or no longer) a link.
    pub tunnel_unknown_link: u64,
    /// Batman frames whose Ethernet source is not the peer's own hard
    /// interface MAC on that link (pinned at its first packet).
    pub tunnel_wrong_source: u64,
    /// Client frames for an originator the mesh has no route to.
    pub no_route: u64,
    /// Links taken out of the mesh because WireGuard saw the peer die.
    pub links_lost: u64,
    /// Unicast frames for a client that left one of our ports, sent on to
    /// its new originator (the old node of a migration).
    pub redirected: u64,
    /// Unknown destinations the translation table resolved.
    pub tt_resolved: u64,
    /// Remote MAC table entries moved by another originator's TT claim.
    pub tt_claims_applied: u64,
    /// Mesh broadcasts whose source MAC the translation table puts at
    /// another originator than the one the broadcast names: delivered, but
    /// the FDB learns nothing from them (a forged origin).
    pub mesh_source_contradicted: u64,
    /// VM moves: a MAC that changed place (port <-> port, port <-> mesh).
    pub moves: u64,
    /// MACs that moved 5 times within 180 s (logged: a duplicate MAC or a
    /// loop).
    pub mac_flaps: u64,
    /// Port frames from a frozen flapping MAC on a port other than where
    /// it was frozen (`[node] mac_flap_freeze_ms`).
    pub drop_mac_frozen: u64,
    /// DHT_GETs from other nodes answered with a DAT_CACHE_REPLY.
    pub dat_answered: u64,
    /// DHT_GETs we could not answer (handed to our ports).
    pub dat_unanswered: u64,
    /// Held ARP requests the DHT answered in time: never flooded.
    pub dat_fallback_prevented: u64,
    /// Held ARP requests the DHT did not answer: flooded after 250 ms.
    pub dat_fallback: u64,
    /// DAT packets without a usable ARP packet inside.
    pub dat_malformed: u64,
    /// Cache replies after the first for one held request (every candidate
    /// that knows answers): not delivered.
    pub dat_duplicate_replies: u64,
    /// Multicast from our ports sent into the mesh as one broadcast.
    pub mcast_broadcast: u64,
    /// Multicast from our ports no originator wanted: not sent into the
    /// mesh (local ports still had it).
    pub mcast_no_listener: u64,
    /// Unicast copies of multicast from our ports, one per originator that
    /// wants the group.
    pub mcast_unicast_copies: u64,
}

/// The hub: the mesh and the switch, the links and the local ports, and
/// the hooks between them.
pub struct Bridge {
    pub mesh: Mesh,
    pub switch: Switch,
    pub hooks: Hooks,
    links: links::Links,
    /// The local ports, in the order floods visit them (no allocation per
    /// flood).
    ports: Vec<PortId>,
    counters: BridgeCounters,
    /// The mesh's output for the call in progress, kept for its allocation.
    out: Vec<MeshOutput>,
    moves_log: sync::MoveLog,
    flaps: flap::Flaps,
    /// For `ctl event` (events.rs).
    events: events::EventLog,
    /// Snooped neighbour addresses for ARP/ND suppression.
    arp_nd: arp_nd::ArpNdTable,
    /// The buffer ARP/ND answers are built in (kept for its allocation).
    answer_buf: Vec<u8>,
    /// ARP requests waiting for the distributed ARP table (`dat.rs`).
    dat_held: dat::HeldQueue,
    /// Dual delivery during live migrations (`dual.rs`).
    dual: dual::Dual,
    /// IGMP/MLD listeners per port, the querier's clock.
    snoop: mcast_snoop::Snoop,
}

impl Bridge {
    pub fn new(mesh: Mesh, switch: Switch) -> Bridge {
        Bridge {
            mesh,
            switch,
            hooks: Hooks::default(),
            links: links::Links::default(),
            ports: Vec::new(),
            counters: BridgeCounters::default(),
            out: Vec::with_capacity(64),
            moves_log: sync::MoveLog::new(),
            flaps: flap::Flaps::new(),
            events: events::EventLog::default(),
            arp_nd: arp_nd::ArpNdTable::default(),
            answer_buf: Vec::new(),
            dat_held: dat::HeldQueue::new(),
            dual: dual::Dual::default(),
            snoop: mcast_snoop::Snoop::default(),
        }
    }

    pub fn originator(&self) -> MacAddr {
        self.mesh.originator()
    }

    pub fn counters(&self) -> &BridgeCounters {
        &self.counters
    }

    /// A frame a VM sent into port `port`.
    pub fn from_port(&mut self, now: Instant, port: PortId, frame: &[u8], io: &mut impl Egress) {
        self.dual.now = Some(now);
        let copy = match self.hooks.port_ingress(now, port, frame) {
            hooks::Admit::Drop => return,
            hooks::Admit::Pass => None,
            hooks::Admit::Rewritten(f) => Some(f),
        };
        let copy = self.hooks.clamp_mss(port, frame, copy);
        self.switch_port_frame(now, port, copy.as_deref().unwrap_or(frame), io);
        if let Some(c) = copy {
            self.hooks.done_with(c);
        }
    }

    fn switch_port_frame(
        &mut self,
        now: Instant,
        port: PortId,
        frame: &[u8],
        io: &mut impl Egress,
    ) {
        if self.frozen_elsewhere(now, port, frame) {
            self.counters.drop_mac_frozen += 1;
            return;
        }
        if !self.mcast_snoop(now, port, frame) {
            return;
        }
        self.snoop_arp_nd(now, frame);
        self.dat_put(frame);
        let (decision, learned) = self.switch.from_port(now, port, frame);
        if let Some(l) = learned {
            self.claim(l);
        }
        self.log_moves(now);
        self.forward(now, Some(port), decision, frame, io);
        self.flush(now, io);
    }

    /// How long a flapping MAC stays frozen where it is (None or zero:
    /// detection and logging only).
    pub fn set_mac_flap_freeze(&mut self, freeze: Option<Duration>) {
        self.flaps.set_freeze(freeze);
    }

    /// A frame whose source MAC is frozen at another place than `port`.
    fn frozen_elsewhere(&mut self, now: Instant, port: PortId, frame: &[u8]) -> bool {
        let Ok(f) = Frame::new_checked(frame) else {
            return false;
        };
        let (src, vid) = (f.src_addr(), f.batman_vid());
        self.flaps.is_frozen(now, src, vid)
            && self
                .switch
                .lookup(now, src, vid)
                .is_some_and(|e| e.location != Location::Port(port))
    }

    /// A frame a peer's tunnel delivered (Ethernet, batman inside): to the
    /// mesh, and what the mesh decides goes out at once.
    pub fn from_peer(&mut self, now: Instant, peer: PeerId, frame: &[u8], io: &mut impl Egress) {
        self.dual.now = Some(now);
        self.mesh_frame(now, peer, frame);
        self.sync_mesh(now);
        self.flush(now, io);
        // A claim that just arrived ends a migration's dual delivery.
        self.dual_check(now, io);
    }

    /// Timers: OGMs and purges; with `fdb_ageing`, the MAC table's ageing.
    pub fn tick(&mut self, now: Instant, fdb_ageing: bool, io: &mut impl Egress) {
        self.dual.now = Some(now);
        self.mesh.tick(now, &mut self.out);
        self.hooks.tick(now);
        self.check_routes(now);
        self.arp_nd.expire(now);
        self.dat_tick(now, io);
        self.mcast_tick(now, io);
        if fdb_ageing {
            for (mac, vid) in self.switch.expire(now) {
                self.mesh.tt_local_del(mac, vid);
            }
        }
        self.flush(now, io);
        self.dual_check(now, io);
    }

    /// When the mesh wants the next [`Bridge::tick`].
    pub fn next_deadline(&self) -> Instant {
        let mesh = self.mesh.next_deadline();
        self.dat_deadline().map_or(mesh, |d| d.min(mesh))
    }

    /// A local port to switch (its name is for tables and logs).
    pub fn add_port(&mut self, port: PortId, name: &str) {
        self.switch.set_port_name(port, name);
        if !self.ports.contains(&port) {
            self.ports.push(port);
        }
        self.hooks.port_added(port);
        self.snoop.port_added(port);
    }

    /// Stops switching a port: its MACs leave the FDB and the translation
    /// table.
    pub fn remove_port(&mut self, port: PortId) {
        for (mac, vid) in self.switch.port_removed(port) {
            self.mesh.tt_local_del(mac, vid);
        }
        self.ports.retain(|&p| p != port);
        self.hooks.port_removed(port);
        self.snoop.port_removed(port);
        self.mcast_apply();
    }

    pub fn ports(&self) -> &[PortId] {
        &self.ports
    }

    /// Carries out what the mesh asked for: transmissions into links and
    /// deliveries to local ports. A delivery may queue more (a frame in
    /// flight sent on to a client's new originator): that goes out in the
    /// next round, so one call empties the queue.
    fn flush(&mut self, now: Instant, io: &mut impl Egress) {
        while !self.out.is_empty() {
            let mut out = std::mem::take(&mut self.out);
            for o in out.drain(..) {
                match o {
                    MeshOutput::Transmit {
                        hardif,
                        dst,
                        packet,
                    } => self.transmit(hardif, dst, [&packet, &[]], io),
                    MeshOutput::Deliver {
                        frame,
                        source_orig,
                        broadcast,
                        ttl,
                    } => self.deliver(now, &frame, source_orig, broadcast, ttl, io),
                    MeshOutput::Dat {
                        subtype,
                        source_orig,
                        frame,
                        ttl,
                    } => self.dat_in(now, subtype, source_orig, &frame, ttl, io),
                }
            }
            if self.out.is_empty() {
                // Keep the allocation for the next call.
                self.out = out;
            }
        }
    }

    /// Frames a batman packet for the link `hardif` and hands it out.
    fn transmit(
        &mut self,
        hardif: HardifId,
        dst: MacAddr,
        packet: [&[u8]; 2],
        io: &mut impl Egress,
    ) {
        if let Some((peer, src)) = self.links.sender(hardif) {
            links::send(io, peer, dst, src, packet);
        }
    }
}
