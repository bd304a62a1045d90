//! An in-process network of [`Mesh`] instances on a simulated clock, big
//! enough for the scale tests (50..100 nodes) and `benches/scale.rs` (up to
//! 500): every `Transmit` is carried to the other end of its link at once,
//! links are point-to-point like one WireGuard peer per hardif, and a link
//! can be cut. It also plays the daemon's dead-peer detection: a link silent
//! for `peer_timeout` is reset on both ends (`Bridge::set_link_alive`).
//!
//! Addressing: node `x` has originator `02:00:00:00:xx:xx` (x+1), its hardif
//! towards node `y` has id `y + 1` and MAC `06:00:xx:xx:yy:yy`, and is owned
//! by `y`'s originator, as the daemon derives owners from peer keys.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::{HardifId, Mesh, MeshConfig, MeshOutput};
use crate::wire::batman::packet_type;
use crate::wire::MacAddr;

/// Originator MAC of node `x`.
pub fn orig_mac(x: usize) -> MacAddr {
    let [_, _, hi, lo] = (x as u32 + 1).to_be_bytes();
    MacAddr([2, 0, 0, 0, hi, lo])
}

/// MAC of node `x`'s hardif towards node `y`.
pub fn hardif_mac(x: usize, y: usize) -> MacAddr {
    let [_, _, xh, xl] = (x as u32 + 1).to_be_bytes();
    let [_, _, yh, yl] = (y as u32 + 1).to_be_bytes();
    MacAddr([6, 0, xh, xl, yh, yl])
}

/// Node `x`'s hardif id towards `y`.
pub fn hardif_id(y: usize) -> HardifId {
    y as HardifId + 1
}

/// A client frame a node delivered: (frame, source originator, broadcast).
pub type Delivered = (Vec<u8>, Option<MacAddr>, bool);

/// What one node sent, by packet class.
#[derive(Debug, Default, Clone, Copy)]
pub struct TxStats {
    pub ogm_packets: u64,
    pub ogm_bytes: u64,
    pub bcast_packets: u64,
    pub bcast_bytes: u64,
    pub other_packets: u64,
    pub other_bytes: u64,
    /// Time spent in this node's `receive`/`tick` calls, in the unit of
    /// [`SimNet::cpu_clock`] (nanoseconds).
    pub cpu_ns: u64,
}

impl TxStats {
    pub fn packets(&self) -> u64 {
        self.ogm_packets + self.bcast_packets + self.other_packets
    }
    pub fn bytes(&self) -> u64 {
        self.ogm_bytes + self.bcast_bytes + self.other_bytes
    }
}

struct LinkState {
    up: bool,
    /// When each end (lower node index first) last received on the link.
    heard: [Instant; 2],
    /// Each end reset the link after `peer_timeout` of silence.
    reset: [bool; 2],
}

pub struct SimNet {
    pub now: Instant,
    pub nodes: Vec<Mesh>,
    /// Links by (lower, higher) node index.
    links: HashMap<(usize, usize), LinkState>,
    pub tx: Vec<TxStats>,
    /// Client frames delivered per node: (frame, source originator, broadcast).
    pub delivered: Vec<Vec<Delivered>>,
    /// Dead-peer detection as the daemon's (`mesh.peer_timeout_ms`); None: off.
    pub peer_timeout: Option<Duration>,
    /// A monotonic CPU clock in ns for [`TxStats::cpu_ns`] (the bench gives
    /// the thread CPU clock); None: not measured.
    pub cpu_clock: Option<fn() -> u64>,
    /// Whether to keep delivered frames (off in long runs).
    pub keep_delivered: bool,
    queue: VecDeque<(usize, MeshOutput)>,
    /// When dead peers were last looked for (every 100 ms).
    last_detect: Instant,
}

impl SimNet {
    /// `n` nodes with `cfg(i)` as config, no links.
    pub fn new(n: usize, cfg: impl Fn(usize) -> MeshConfig) -> SimNet {
        let now = Instant::now();
        SimNet {
            now,
            nodes: (0..n).map(|i| Mesh::new(cfg(i))).collect(),
            links: HashMap::new(),
            tx: vec![TxStats::default(); n],
            delivered: vec![Vec::new(); n],
            peer_timeout: None,
            cpu_clock: None,
            keep_delivered: true,
            queue: VecDeque::new(),
            last_detect: now,
        }
    }

    /// A node that joins later: no links yet.
    pub fn add_node(&mut self, cfg: MeshConfig) -> usize {
        self.nodes.push(Mesh::new(cfg));
        self.tx.push(TxStats::default());
        self.delivered.push(Vec::new());
        self.nodes.len() - 1
    }

    fn key(x: usize, y: usize) -> (usize, usize) {
        (x.min(y), x.max(y))
    }

    fn add_hardif(&mut self, x: usize, y: usize) {
        let id = hardif_id(y);
        self.nodes[x].hardif_add(id, hardif_mac(x, y));
        self.nodes[x].hardif_set_owner(id, orig_mac(y));
    }

    /// Links `x` and `y` (one hardif on each side).
    pub fn link(&mut self, x: usize, y: usize) {
        self.add_hardif(x, y);
        self.add_hardif(y, x);
        let now = self.now;
        self.links.insert(
            Self::key(x, y),
            LinkState {
                up: true,
                heard: [now; 2],
                reset: [false; 2],
            },
        );
    }

    /// Every pair of nodes in `0..n` linked.
    pub fn full_mesh(&mut self, n: usize) {
        for x in 0..n {
            for y in (x + 1)..n {
                self.link(x, y);
            }
        }
    }

    pub fn has_link(&self, x: usize, y: usize) -> bool {
        self.links.contains_key(&Self::key(x, y))
    }

    /// Cuts (`false`) or heals a link; packets on a cut link are lost.
    pub fn set_link(&mut self, x: usize, y: usize, up: bool) {
        let now = self.now;
        if let Some(l) = self.links.get_mut(&Self::key(x, y)) {
            l.up = up;
            if up {
                l.heard = [now; 2];
                l.reset = [false; 2];
            }
        }
    }

    fn cpu(&self) -> u64 {
        self.cpu_clock.map_or(0, |f| f())
    }

    /// Carries queued outputs until the network is quiet.
    fn drain(&mut self) {
        while let Some((from, o)) = self.queue.pop_front() {
            match o {
                MeshOutput::Deliver {
                    frame,
                    source_orig,
                    broadcast,
                    ..
                } => {
                    if self.keep_delivered {
                        self.delivered[from].push((frame, source_orig, broadcast));
                    }
                }
                MeshOutput::Transmit {
                    hardif,
                    dst,
                    packet,
                } => self.carry(from, hardif, dst, &packet),
                // The simulation carries no clients' ARP.
                MeshOutput::Dat { .. } => {}
            }
        }
    }

    fn carry(&mut self, from: usize, hardif: HardifId, dst: MacAddr, packet: &[u8]) {
        let t = &mut self.tx[from];
        let len = packet.len() as u64;
        match packet.first().copied() {
            Some(packet_type::IV_OGM) => {
                (t.ogm_packets, t.ogm_bytes) = (t.ogm_packets + 1, t.ogm_bytes + len)
            }
            Some(packet_type::BCAST) => {
                (t.bcast_packets, t.bcast_bytes) = (t.bcast_packets + 1, t.bcast_bytes + len)
            }
            _ => (t.other_packets, t.other_bytes) = (t.other_packets + 1, t.other_bytes + len),
        }
        let to = hardif as usize - 1;
        let key = Self::key(from, to);
        let now = self.now;
        let Some(l) = self.links.get_mut(&key) else {
            return;
        };
        if !l.up {
            return;
        }
        l.heard[usize::from(to != key.0)] = now;
        if !(dst.is_broadcast() || dst == hardif_mac(to, from)) {
            return;
        }
        let mut out = Vec::new();
        let c0 = self.cpu();
        self.nodes[to].receive(
            now,
            hardif_id(from),
            hardif_mac(from, to),
            dst,
            packet,
            &mut out,
        );
        self.tx[to].cpu_ns += self.cpu().saturating_sub(c0);
        self.queue.extend(out.into_iter().map(|o| (to, o)));
    }

    /// Hands `out` (produced by node `from`) to the network.
    pub fn run_outputs(&mut self, from: usize, out: Vec<MeshOutput>) {
        self.queue.extend(out.into_iter().map(|o| (from, o)));
        self.drain();
    }

    /// Advances the clock by `step`, ticking every node that is due.
    pub fn step(&mut self, step: Duration) {
        self.now += step;
        let now = self.now;
        for i in 0..self.nodes.len() {
            if self.nodes[i].next_deadline() <= now {
                let mut out = Vec::new();
                let c0 = self.cpu();
                self.nodes[i].tick(now, &mut out);
                self.tx[i].cpu_ns += self.cpu().saturating_sub(c0);
                self.run_outputs(i, out);
            }
        }
        self.detect_dead_peers();
    }

    /// The daemon's dead-peer rule: a link end that heard nothing for
    /// `peer_timeout` gets a fresh hardif (neighbours and routes through it
    /// go at once); it stays fresh until the link carries packets again.
    fn detect_dead_peers(&mut self) {
        let Some(timeout) = self.peer_timeout else {
            return;
        };
        let now = self.now;
        if now.saturating_duration_since(self.last_detect) < Duration::from_millis(100) {
            return;
        }
        self.last_detect = now;
        let mut resets = Vec::new();
        for (&(a, b), l) in self.links.iter_mut() {
            for (end, (me, peer)) in [(a, b), (b, a)].into_iter().enumerate() {
                let silent = now.saturating_duration_since(l.heard[end]) >= timeout;
                if silent && !l.reset[end] {
                    l.reset[end] = true;
                    resets.push((me, peer));
                } else if !silent {
                    l.reset[end] = false;
                }
            }
        }
        for (me, peer) in resets {
            self.add_hardif(me, peer);
        }
    }

    /// Runs for `d` in steps of `step`.
    pub fn run(&mut self, d: Duration, step: Duration) {
        let end = self.now + d;
        while self.now + step <= end {
            self.step(step);
        }
    }

    /// Runs until `f` holds (checked every step) or `limit` passed; returns
    /// the simulated time it took.
    pub fn run_until(
        &mut self,
        limit: Duration,
        step: Duration,
        mut f: impl FnMut(&SimNet) -> bool,
    ) -> Option<Duration> {
        let t0 = self.now;
        while self.now.saturating_duration_since(t0) < limit {
            if f(self) {
                return Some(self.now - t0);
            }
            self.step(step);
        }
        f(self).then(|| self.now - t0)
    }

    /// Node `from`'s next hop towards node `to` (as the node index).
    pub fn next_hop(&self, from: usize, to: usize) -> Option<usize> {
        let (_, hardif) = self.nodes[from].origs.route(&orig_mac(to))?;
        Some(hardif as usize - 1)
    }

    /// Broadcasts `frame` from node `from`; returns the datagrams it cost
    /// across the whole network until quiet.
    pub fn broadcast(&mut self, from: usize, frame: &[u8]) -> u64 {
        let before: u64 = self.tx.iter().map(|t| t.bcast_packets).sum();
        let mut out = Vec::new();
        self.nodes[from].send_broadcast(self.now, frame, &mut out);
        self.run_outputs(from, out);
        self.tx.iter().map(|t| t.bcast_packets).sum::<u64>() - before
    }

    /// Unicast `frame` from node `from` to node `to`'s originator.
    pub fn unicast(&mut self, from: usize, to: usize, frame: &[u8]) -> bool {
        let mut out = Vec::new();
        let ok = self.nodes[from].send_unicast(self.now, orig_mac(to), frame, &mut out);
        self.run_outputs(from, out);
        ok
    }

    /// Sum of every node's transmit figures.
    pub fn total(&self) -> TxStats {
        let mut s = TxStats::default();
        for t in &self.tx {
            s.ogm_packets += t.ogm_packets;
            s.ogm_bytes += t.ogm_bytes;
            s.bcast_packets += t.bcast_packets;
            s.bcast_bytes += t.bcast_bytes;
            s.other_packets += t.other_packets;
            s.other_bytes += t.other_bytes;
            s.cpu_ns += t.cpu_ns;
        }
        s
    }
}
