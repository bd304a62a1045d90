//! One node: the glue between ports, switch, mesh and tunnel.
//!
//! A frame walks one way through here:
//! - port -> switch decides -> local port, or mesh unicast/broadcast -> tunnel;
//! - tunnel -> batman packet -> mesh -> (forward to a tunnel) or deliver ->
//!   switch -> local ports.
//!
//! A mesh-delivered frame only ever goes to local ports, and a port frame
//! never back to its own port: that is what keeps the process loop-free on
//! top of batman's own duplicate detection.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::frames::Frames;
use super::worker::Board;

use crate::config::Validated;
use crate::keys;
use crate::mesh::{HardifId, Mesh, MeshConfig, MeshOutput};
use crate::port::{PortId, Ports, TapOptions};
use crate::switch::{announce, Decision, Switch, SwitchConfig};
use crate::tunnel::{PeerId, TunnelConfig, Tunnels};
use crate::wire::ethernet::{self, Frame};
use crate::wire::MacAddr;

/// Drops the node itself counts (the layers count their own).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct NodeCounters {
    /// Frames inside GRE that were too short for an Ethernet header.
    pub tunnel_runt: u64,
    /// Frames inside GRE with another ethertype than batman-adv (a kernel
    /// gretap's own IPv6 MLD/DAD frames land here).
    pub tunnel_not_batman: u64,
    /// Batman frames addressed to another hard interface's MAC.
    pub tunnel_not_for_us: u64,
    /// Client frames for an originator the mesh has no route to.
    pub no_route: u64,
    /// Sends the tunnel refused (queue full, no endpoint yet).
    pub tunnel_send_errors: u64,
    /// Links taken out of the mesh because WireGuard saw the peer die.
    pub links_lost: u64,
}

pub struct Node {
    pub public_key: [u8; 32],
    pub originator: MacAddr,
    pub tunnels: Tunnels,
    pub mesh: Mesh,
    pub switch: Switch,
    pub ports: Ports,
    /// The ports' ids, kept beside `ports` so a flood needs no allocation.
    port_ids: Vec<PortId>,
    /// Our hard interface MAC towards each peer, by PeerId.
    pub hardif_macs: Vec<MacAddr>,
    pub peer_addrs: Vec<IpAddr>,
    pub counters: NodeCounters,
    /// Whether each peer's link is in the mesh (WireGuard liveness).
    link_up: Vec<bool>,
    peer_timeout: std::time::Duration,
    /// Each link's MTU for batman fragmentation (None: never fragment).
    hardif_mtus: Vec<Option<usize>>,
    out: Vec<MeshOutput>,
    /// Frames for the tunnels, encrypted after the node lock is released
    /// (see `frames.rs`); a worker lends its own with `swap_io`.
    pending: Frames,
    /// Dataplane workers (`node.workers`).
    pub workers: usize,
    /// What each worker last reported (their own queues' counters).
    pub board: Arc<Board>,
}

impl Node {
    pub fn new(cfg: &Validated) -> Result<Node, String> {
        let public_key = cfg.public_key;
        let originator = keys::originator_mac(&public_key);
        let mut mesh = Mesh::new(MeshConfig {
            ogm_interval: std::time::Duration::from_millis(cfg.raw.mesh.originator_interval_ms),
            ..MeshConfig::new(originator)
        });
        let hardif_mtus: Vec<Option<usize>> = (0..cfg.peers.len())
            .map(|i| {
                let frag = cfg.raw.mesh.fragmentation;
                frag.then_some(cfg.peer_hardif_mtu(i) as usize)
            })
            .collect();
        let mut hardif_macs = Vec::with_capacity(cfg.peers.len());
        for (i, p) in cfg.peers.iter().enumerate() {
            let mac = keys::hardif_mac(&public_key, &p.public_key);
            add_link(&mut mesh, i as HardifId, mac, hardif_mtus[i]);
            hardif_macs.push(mac);
        }
        let workers = cfg.workers();
        let tunnels = Tunnels::with_reuse_port(TunnelConfig::from_validated(cfg), workers > 1)
            .map_err(|e| format!("node.listen_port {}: {e}", cfg.raw.node.listen_port))?;
        let mut ports = Ports::new();
        for p in &cfg.raw.ports {
            let mtu = cfg.port_mtu(p);
            ports
                .open_with(
                    &p.name,
                    mtu,
                    TapOptions {
                        offload: p.offload,
                        multi_queue: workers > 1,
                    },
                )
                .map_err(|e| format!("port {}: {e}", p.name))
                .map(|id| ports.set_udp_coalescing(id, p.udp_coalescing))?;
        }
        let mut switch = Switch::new(SwitchConfig::default());
        for id in ports.ids() {
            if let Some(name) = ports.name(id) {
                switch.set_port_name(id, name);
            }
        }
        Ok(Node {
            public_key,
            originator,
            tunnels,
            mesh,
            switch,
            port_ids: ports.ids().collect(),
            ports,
            hardif_macs,
            peer_addrs: cfg.peers.iter().map(|p| p.address).collect(),
            counters: NodeCounters::default(),
            link_up: vec![false; cfg.peers.len()],
            peer_timeout: cfg.peer_timeout(),
            hardif_mtus,
            out: Vec::with_capacity(64),
            pending: Frames::default(),
            workers,
            board: Arc::new(Board::new(workers)),
        })
    }

    /// Lends a worker's I/O (its underlay socket and batches, its queues of
    /// the ports) to the node, or takes it back: call once before and once
    /// after the work. Everything the node sends in between joins the
    /// worker's batches, which the worker flushes after releasing the node.
    pub fn swap_io(&mut self, ports: &mut Ports, pending: &mut Frames) {
        std::mem::swap(&mut self.ports, ports);
        std::mem::swap(&mut self.pending, pending);
    }

    /// Frames a worker decrypted (outside the node lock) go to the mesh.
    /// What that sends is left in the lent `pending` for the worker to
    /// encrypt after the lock.
    pub fn on_mesh_frames(&mut self, now: Instant, frames: &Frames) {
        let Node {
            mesh,
            hardif_macs,
            counters,
            out,
            ..
        } = self;
        for (peer, frame) in frames.iter() {
            mesh_frame(mesh, hardif_macs, counters, out, now, peer, frame);
        }
        self.roams(now);
        self.flush(now);
    }

    /// Encrypts and queues what `pending` holds on the node's own path (the
    /// first socket): for callers without a worker's path, and for timer
    /// traffic.
    pub fn drain_pending(&mut self) {
        let refused = self.tunnels.send_frames(self.pending.iter());
        self.counters.tunnel_send_errors += refused as u64;
        self.pending.clear();
    }

    /// A frame a VM sent into port `port`.
    pub fn on_port_frame(&mut self, now: Instant, port: PortId, frame: &[u8]) {
        let (decision, learned) = self.switch.from_port(now, port, frame);
        if let Some(l) = learned {
            // A new client, a move or an announcement: claim it at once. The
            // mesh sends ROAM adverts to an originator that still announces
            // it, which then reroutes frames in flight to us.
            self.mesh.tt_local_add_announce(l.mac, l.vid, &mut self.out);
        }
        self.forward(now, port, decision, frame);
        self.flush(now);
    }

    /// Carries out a switch decision for a frame that came from port `from`.
    fn forward(&mut self, now: Instant, from: PortId, decision: Decision, frame: &[u8]) {
        match decision {
            Decision::Port(p) => self.port_write(p, frame),
            Decision::Originator(o) => self.unicast_or_flood(now, o, frame, Some(from)),
            Decision::Flood { except, mesh } => {
                self.flood_ports(except, frame);
                if mesh {
                    self.mesh.send_broadcast(now, frame, &mut self.out);
                }
            }
            Decision::Unknown { except } => {
                let (dst, vid) = dst_and_vid(frame);
                match self.mesh.tt_global_lookup(dst, vid) {
                    Some(o) => self.unicast_or_flood(now, o, frame, except),
                    None => {
                        self.flood_ports(except, frame);
                        self.mesh.send_broadcast(now, frame, &mut self.out);
                    }
                }
            }
            Decision::Drop(_) => {}
        }
    }

    /// Unicast to `orig`; with no route, flood like an unknown destination
    /// (a VM must not lose its traffic while routes converge).
    fn unicast_or_flood(
        &mut self,
        now: Instant,
        orig: MacAddr,
        frame: &[u8],
        except: Option<PortId>,
    ) {
        if self.unicast_direct(orig, frame) {
            return;
        }
        if !self.mesh.send_unicast(now, orig, frame, &mut self.out) {
            self.counters.no_route += 1;
            self.flood_ports(except, frame);
            self.mesh.send_broadcast(now, frame, &mut self.out);
        }
    }

    /// The hot path: a client frame that fits the link goes into the
    /// transmit buffer behind its batman unicast header, with no
    /// allocation and no copy beyond the one into the buffer. Frames that
    /// need fragments, and the no-route case, take the mesh's own path.
    fn unicast_direct(&mut self, orig: MacAddr, frame: &[u8]) -> bool {
        let Some(r) = self.mesh.unicast_route(orig) else {
            return false;
        };
        let mtu = self.hardif_mtus.get(r.hardif as usize).copied().flatten();
        if mtu.is_some_and(|mtu| r.header.len() + frame.len() > mtu) {
            return false;
        }
        self.mesh.unicast_sent();
        self.transmit(r.hardif, r.next_hop, [&r.header, frame]);
        true
    }

    fn flood_ports(&mut self, except: Option<PortId>, frame: &[u8]) {
        for i in 0..self.port_ids.len() {
            let p = self.port_ids[i];
            if Some(p) != except {
                self.port_write(p, frame);
            }
        }
    }

    /// The port counts its own refusals (busy, oversize, link down). TCP
    /// segments of one flow are merged into one super-frame towards the
    /// TAP and written at the end of the loop round (`flush`).
    fn port_write(&mut self, port: PortId, frame: &[u8]) {
        self.ports.send_gro(port, frame);
    }

    /// Local clients a ROAM advert moved to another originator: move them
    /// in the FDB too, or claim back the ones still sending here.
    fn roams(&mut self, now: Instant) {
        for (mac, vid, orig) in self.mesh.take_roamed_away() {
            if self.switch.roamed(now, mac, vid, orig) {
                self.mesh.tt_local_add_announce(mac, vid, &mut self.out);
            }
        }
        for (mac, vid) in self.switch.take_withdrawals() {
            self.mesh.tt_local_del(mac, vid);
        }
    }

    /// Timers: OGMs, purges, WireGuard handshakes and keepalives, FDB ageing.
    pub fn on_tick(&mut self, now: Instant, tunnel_timers: bool, fdb_ageing: bool) {
        self.mesh.tick(now, &mut self.out);
        if tunnel_timers {
            self.tunnels.tick();
            self.check_links();
        }
        if fdb_ageing {
            for (mac, vid) in self.switch.expire(now) {
                self.mesh.tt_local_del(mac, vid);
            }
        }
        self.flush(now);
        self.drain_pending();
        // Once per loop iteration: everything this round of events queued
        // leaves in as few system calls as the batch allows.
        self.tunnels.flush();
        self.ports.flush();
    }

    /// WireGuard's view of each link: a peer that stopped authenticating
    /// packets, or whose handshakes keep failing, is dead. Its neighbours
    /// leave the mesh at once so routes move to the next best path now,
    /// not after TQ has decayed over many OGM intervals. OGMs keep going
    /// out on the link, so it returns as soon as the peer answers.
    fn check_links(&mut self) {
        for peer in 0..self.link_up.len() {
            let id = peer as PeerId;
            let alive = self.tunnels.peer_alive(id, self.peer_timeout)
                && self.tunnels.handshake_attempts(id) < DEAD_HANDSHAKES;
            if self.link_up[peer] && !alive {
                tracing::warn!(peer = %self.peer_addrs[peer], "peer unreachable: link leaves the mesh");
                self.counters.links_lost += 1;
                let mtu = self.hardif_mtus[peer];
                add_link(&mut self.mesh, id, self.hardif_macs[peer], mtu);
            } else if !self.link_up[peer] && alive {
                tracing::info!(peer = %self.peer_addrs[peer], "peer reachable");
            }
            self.link_up[peer] = alive;
        }
    }

    pub fn link_up(&self, peer: usize) -> bool {
        self.link_up.get(peer).copied().unwrap_or(false)
    }

    /// Carries out what the mesh asked for: transmissions into tunnels and
    /// deliveries to local ports. Deliveries never produce mesh output, so
    /// one pass empties the queue.
    fn flush(&mut self, now: Instant) {
        let mut out = std::mem::take(&mut self.out);
        for o in out.drain(..) {
            match o {
                MeshOutput::Transmit {
                    hardif,
                    dst,
                    packet,
                } => self.transmit(hardif, dst, [&packet, &[]]),
                MeshOutput::Deliver {
                    frame, source_orig, ..
                } => {
                    match self.switch.from_mesh(now, &frame, source_orig) {
                        Decision::Port(p) => self.port_write(p, &frame),
                        Decision::Flood { .. } | Decision::Unknown { .. } => {
                            self.flood_ports(None, &frame)
                        }
                        // A mesh frame never goes back to the mesh.
                        Decision::Originator(_) | Decision::Drop(_) => {}
                    }
                    // A mesh frame from a MAC we had locally: it moved away.
                    for (mac, vid) in self.switch.take_withdrawals() {
                        self.mesh.tt_local_del(mac, vid);
                    }
                }
            }
        }
        // Keep the allocation for the next round.
        self.out = out;
    }

    /// Frames a batman packet for the hard interface towards `hardif` and
    /// queues it for encryption. The batman packet comes in parts (a header
    /// and a client frame need not be joined first).
    fn transmit(&mut self, hardif: HardifId, dst: MacAddr, packet: [&[u8]; 2]) {
        let Some(src) = self.hardif_macs.get(hardif as usize).copied() else {
            return;
        };
        let ethertype = ethernet::ethertype::BATMAN.to_be_bytes();
        self.pending.push(
            hardif as PeerId,
            &[
                dst.as_bytes(),
                src.as_bytes(),
                &ethertype,
                packet[0],
                packet[1],
            ],
        );
        // Bounded: a worker encrypts after the lock, but not without limit.
        if self.pending.bytes() > MAX_PENDING_BYTES {
            self.drain_pending();
        }
    }
}

/// Frames a node holds for encryption before it encrypts them itself.
const MAX_PENDING_BYTES: usize = 4 << 20;

impl Node {
    /// Opens (or creates) a TAP and switches it.
    pub fn add_port(&mut self, name: &str, mtu: u16, offload: bool) -> Result<PortId, String> {
        if self.ports.id_by_name(name).is_some() {
            return Err(format!("port {name} exists"));
        }
        crate::config::check_ifname(name).map_err(|e| format!("port {name}: {e}"))?;
        let id = self
            .ports
            .open_with(
                name,
                mtu,
                TapOptions {
                    offload,
                    multi_queue: self.workers > 1,
                },
            )
            .map_err(|e| format!("port {name}: {e}"))?;
        self.switch.set_port_name(id, name);
        self.port_ids.push(id);
        Ok(id)
    }

    /// Stops switching a port: its MACs leave the FDB and the translation
    /// table, and a TAP we created goes away.
    pub fn remove_port(&mut self, name: &str) -> Result<PortId, String> {
        let id = self
            .ports
            .id_by_name(name)
            .ok_or_else(|| format!("no port {name}"))?;
        for (mac, vid) in self.switch.port_removed(id) {
            self.mesh.tt_local_del(mac, vid);
        }
        self.ports.remove(id);
        self.port_ids.retain(|&p| p != id);
        Ok(id)
    }

    /// Announces clients of `port` as if they had sent the frames themselves
    /// (gratuitous ARP, unsolicited NA, or a RARP without addresses): they
    /// claim the MACs here and flood to the other ports and the mesh. They
    /// are not written into `port` itself, whose clients they describe.
    pub fn announce(
        &mut self,
        now: Instant,
        port_name: &str,
        mac: Option<MacAddr>,
        ips: &[IpAddr],
    ) -> Result<String, String> {
        let port = self
            .ports
            .id_by_name(port_name)
            .ok_or_else(|| format!("no port {port_name}"))?;
        let clients: Vec<(MacAddr, u16)> = match mac {
            Some(m) if m.is_unicast() && !m.is_zero() => vec![(m, 0)],
            Some(m) => return Err(format!("{m} is not a unicast MAC")),
            None => self.switch.port_clients(now, port),
        };
        if clients.is_empty() {
            return Err(format!("no client seen on {port_name} yet: give --mac"));
        }
        let mut frame = Vec::with_capacity(128);
        let mut sent = 0;
        for (m, vid) in clients {
            let vlan = announce::vlan_of_batman_vid(vid);
            if ips.is_empty() {
                announce::build_rarp(&mut frame, m, vlan);
                self.on_port_frame(now, port, &frame);
                sent += 1;
            }
            for ip in ips {
                match ip {
                    IpAddr::V4(a) => announce::build_gratuitous_arp(&mut frame, m, *a, vlan),
                    IpAddr::V6(a) => announce::build_unsolicited_na(&mut frame, m, *a, vlan),
                }
                self.on_port_frame(now, port, &frame);
                sent += 1;
            }
        }
        Ok(format!("{sent} announcement(s) sent from {port_name}"))
    }
}

/// Handshake initiations without an answer after which a peer is dead
/// (boringtun retries every 5 s, so about 15 s).
const DEAD_HANDSHAKES: u32 = 3;

/// A frame out of a tunnel: a batman packet for one of our hard interfaces
/// goes to the mesh; anything else is counted and dropped.
fn mesh_frame(
    mesh: &mut Mesh,
    hardif_macs: &[MacAddr],
    counters: &mut NodeCounters,
    out: &mut Vec<MeshOutput>,
    now: Instant,
    peer: PeerId,
    frame: &[u8],
) {
    let Ok(eth) = Frame::new_checked(frame) else {
        counters.tunnel_runt += 1;
        return;
    };
    if eth.ethertype() != ethernet::ethertype::BATMAN {
        counters.tunnel_not_batman += 1;
        return;
    }
    let dst = eth.dst_addr();
    let own = hardif_macs.get(peer as usize).copied();
    if dst.is_unicast() && Some(dst) != own && !mesh.is_own_address(dst) {
        counters.tunnel_not_for_us += 1;
        return;
    }
    mesh.receive(
        now,
        peer as HardifId,
        eth.src_addr(),
        dst,
        eth.payload(),
        out,
    );
}

/// (Re)adds a peer's hard interface with no neighbours: a fresh link.
fn add_link(mesh: &mut Mesh, id: HardifId, mac: MacAddr, mtu: Option<usize>) {
    mesh.hardif_add(id, mac);
    if let Some(m) = mtu {
        mesh.hardif_set_mtu(id, m);
    }
}

/// Destination MAC and VLAN in batman encoding (0 untagged, 0x8000|id tagged).
fn dst_and_vid(frame: &[u8]) -> (MacAddr, u16) {
    match Frame::new_checked(frame) {
        Ok(e) => (e.dst_addr(), e.batman_vid()),
        Err(_) => (MacAddr::ZERO, 0),
    }
}
