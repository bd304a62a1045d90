//! Bridges wired together in process, without root: each node a `Bridge`
//! with a few ports, links carrying every frame one bridge hands to a
//! peer to the bridge at the other end, on a clock the test advances.
//! What the ports receive is recorded per (node, port).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::*;
use crate::mesh::MeshConfig;
use crate::switch::{Location, SwitchConfig};
use crate::wire::ethernet::ethertype;

mod arp_nd;
mod dat;
mod dual;
mod forwarding;
mod hostile;
mod mcast;
mod migration;
mod policy;

const STEP: Duration = Duration::from_millis(50);
/// Ports per node in every simulation.
const PORTS: PortId = 2;

pub(super) fn orig(n: usize) -> MacAddr {
    MacAddr([2, 0, 0, 0, n as u8 + 1, 0])
}

/// A VM's MAC.
pub(super) fn vm(tag: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0x77, 0, tag])
}

/// One node's egress: what its ports got, what it sent into links.
#[derive(Default)]
struct Wire {
    to_ports: Vec<(PortId, Vec<u8>)>,
    to_peers: Vec<(PeerId, Vec<u8>)>,
}

impl Egress for Wire {
    fn to_port(&mut self, port: PortId, frame: &[u8]) {
        self.to_ports.push((port, frame.to_vec()));
    }
    fn to_peer(&mut self, peer: PeerId, parts: &[&[u8]]) {
        self.to_peers.push((peer, parts.concat()));
    }
}

/// A link between two nodes: node x knows it as peer `px`, node y as `py`.
struct SimLink {
    x: (usize, PeerId),
    y: (usize, PeerId),
    up: bool,
}

pub(super) struct Net {
    pub now: Instant,
    pub nodes: Vec<Bridge>,
    links: Vec<SimLink>,
    /// Frames each node wrote to its ports, by node.
    pub got: Vec<Vec<(PortId, Vec<u8>)>>,
    /// Datagrams carried between nodes (every frame one bridge handed to a
    /// peer).
    pub datagrams: usize,
    /// Frames held back by `hold_node` instead of being delivered.
    held: Vec<(usize, PeerId, Vec<u8>)>,
    hold: Option<usize>,
}

impl Net {
    /// `n` nodes, each with ports 0 and 1; no links yet.
    pub fn new(n: usize) -> Net {
        let nodes = (0..n)
            .map(|i| {
                let mesh = Mesh::new(MeshConfig {
                    ogm_interval: Duration::from_millis(1000),
                    ..MeshConfig::new(orig(i))
                });
                let mut b = Bridge::new(mesh, Switch::new(SwitchConfig::default()));
                for p in 0..PORTS {
                    b.add_port(p, &format!("n{i}p{p}"));
                }
                b
            })
            .collect();
        Net {
            now: Instant::now(),
            nodes,
            links: Vec::new(),
            got: vec![Vec::new(); n],
            datagrams: 0,
            held: Vec::new(),
            hold: None,
        }
    }

    /// Every pair of nodes linked: the full mesh of tunnels.
    pub fn full_mesh(n: usize) -> Net {
        let mut net = Net::new(n);
        for x in 0..n {
            for y in x + 1..n {
                net.link(x, y);
            }
        }
        net
    }

    /// Links x and y: peer ids are the other node's index.
    pub fn link(&mut self, x: usize, y: usize) -> usize {
        let mac = Net::hardif_mac;
        let (px, py) = (y as PeerId, x as PeerId);
        self.nodes[x].add_link(px, mac(x, y), Some(1400), &format!("n{y}"));
        self.nodes[y].add_link(py, mac(y, x), Some(1400), &format!("n{x}"));
        self.nodes[x].set_link_owner(px, orig(y));
        self.nodes[y].set_link_owner(py, orig(x));
        self.nodes[x].set_link_alive(px, true);
        self.nodes[y].set_link_alive(py, true);
        self.links.push(SimLink {
            x: (x, px),
            y: (y, py),
            up: true,
        });
        self.links.len() - 1
    }

    /// Cuts or restores a link, and tells both ends (as WireGuard would).
    pub fn set_link(&mut self, l: usize, up: bool) {
        self.links[l].up = up;
        let (x, y) = (self.links[l].x, self.links[l].y);
        self.nodes[x.0].set_link_alive(x.1, up);
        self.nodes[y.0].set_link_alive(y.1, up);
    }

    /// Frames bound for `node` are held (a node that is slow to act) until
    /// `release`.
    pub fn hold_node(&mut self, node: Option<usize>) {
        self.hold = node;
    }

    pub fn release(&mut self) {
        for (to, peer, f) in std::mem::take(&mut self.held) {
            let mut w = Wire::default();
            self.nodes[to].from_peer(self.now, peer, &f, &mut w);
            self.carry(to, w);
        }
    }

    /// Carries what `from` handed out until the network is quiet.
    fn carry(&mut self, from: usize, w: Wire) {
        let mut queue: VecDeque<(usize, Wire)> = VecDeque::from([(from, w)]);
        let mut budget = 100_000;
        while let Some((node, w)) = queue.pop_front() {
            self.got[node].extend(w.to_ports);
            for (peer, frame) in w.to_peers {
                budget -= 1;
                assert!(budget > 0, "packet storm");
                let Some(l) = self
                    .links
                    .iter()
                    .find(|l| l.x == (node, peer) || l.y == (node, peer))
                else {
                    panic!("node {node} sent to unknown peer {peer}")
                };
                if !l.up {
                    continue;
                }
                let (to, to_peer) = if l.x == (node, peer) { l.y } else { l.x };
                self.datagrams += 1;
                if self.hold == Some(to) {
                    self.held.push((to, to_peer, frame));
                    continue;
                }
                let mut out = Wire::default();
                self.nodes[to].from_peer(self.now, to_peer, &frame, &mut out);
                queue.push_back((to, out));
            }
        }
    }

    /// The MAC node `x` uses on its link to `y`.
    pub fn hardif_mac(x: usize, y: usize) -> MacAddr {
        MacAddr([2, 0, 0, x as u8 + 1, y as u8 + 1, 1])
    }

    /// A batman packet that node `from` sends to node `to` over their link
    /// as it likes (a hostile but authenticated peer), from its own hard
    /// interface MAC unless `src` says otherwise; what `to` does with it is
    /// carried as usual.
    pub fn inject(&mut self, from: usize, to: usize, src: Option<MacAddr>, packet: &[u8]) {
        use crate::wire::batman::packet_type::{BCAST, IV_OGM};
        let dst = if matches!(packet.first(), Some(&IV_OGM | &BCAST)) {
            MacAddr::BROADCAST
        } else {
            Net::hardif_mac(to, from)
        };
        let mut f = Vec::with_capacity(14 + packet.len());
        f.extend_from_slice(dst.as_bytes());
        f.extend_from_slice(src.unwrap_or(Net::hardif_mac(from, to)).as_bytes());
        f.extend_from_slice(&ethertype::BATMAN.to_be_bytes());
        f.extend_from_slice(packet);
        let mut w = Wire::default();
        self.nodes[to].from_peer(self.now, from as PeerId, &f, &mut w);
        self.carry(to, w);
    }

    /// A VM frame into `port` of `node`.
    pub fn send(&mut self, node: usize, port: PortId, frame: &[u8]) {
        let mut w = Wire::default();
        self.nodes[node].from_port(self.now, port, frame, &mut w);
        self.carry(node, w);
    }

    pub fn step(&mut self) {
        self.now += STEP;
        for i in 0..self.nodes.len() {
            if self.nodes[i].next_deadline() <= self.now {
                let mut w = Wire::default();
                self.nodes[i].tick(self.now, false, &mut w);
                self.carry(i, w);
            }
        }
    }

    pub fn run(&mut self, d: Duration) {
        for _ in 0..d.as_millis() / STEP.as_millis() {
            self.step();
        }
    }

    /// Runs until every node routes to every other (bounded).
    pub fn converge(&mut self) {
        for _ in 0..400 {
            self.step();
            let n = self.nodes.len();
            let all = (0..n).all(|a| {
                (0..n).all(|b| a == b || self.nodes[a].mesh.unicast_route(orig(b)).is_some())
            });
            if all {
                // A few more intervals for TT to settle everywhere.
                self.run(Duration::from_secs(3));
                return;
            }
        }
        panic!("no full routing after 20 s of simulated time");
    }

    /// Forgets what ports received so far.
    pub fn clear(&mut self) {
        for g in &mut self.got {
            g.clear();
        }
        self.datagrams = 0;
    }

    /// The frames `node`'s `port` received that equal `frame`.
    pub fn count(&self, node: usize, port: PortId, frame: &[u8]) -> usize {
        self.got[node]
            .iter()
            .filter(|(p, f)| *p == port && f == frame)
            .count()
    }

    /// Where `node`'s FDB has `mac` (untagged).
    pub fn fdb(&self, node: usize, mac: MacAddr) -> Option<Location> {
        self.nodes[node]
            .switch
            .lookup(self.now, mac, 0)
            .map(|e| e.location)
    }
}

/// An Ethernet frame with a payload that names it.
pub(super) fn frame(dst: MacAddr, src: MacAddr, tag: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(dst.as_bytes());
    f.extend_from_slice(src.as_bytes());
    f.extend_from_slice(&ethertype::IPV4.to_be_bytes());
    f.resize(64, tag);
    f
}
