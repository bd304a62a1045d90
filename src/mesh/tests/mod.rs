//! In-process mesh simulations: several `Mesh` instances wired by links that
//! carry every `Transmit` to the other end, on a clock the test advances.

use std::time::{Duration, Instant};

use super::*;

mod kernel;
mod multicast;
mod restart;
mod roaming;
mod scale;

const STEP: Duration = Duration::from_millis(50);

fn orig_mac(n: usize) -> MacAddr {
    MacAddr([2, 0, 0, 0, n as u8 + 1, 0])
}

/// (frame, source_orig, broadcast) of a `MeshOutput::Deliver`.
type Delivered = (Vec<u8>, Option<MacAddr>, bool);

pub(super) struct Link {
    pub(super) a: (usize, HardifId, MacAddr),
    pub(super) b: (usize, HardifId, MacAddr),
    pub(super) up: bool,
}

pub(super) struct Sim {
    now: Instant,
    nodes: Vec<Mesh>,
    links: Vec<Link>,
    /// Frames handed to each node's clients.
    delivered: Vec<Vec<Delivered>>,
    /// DAT packets the mesh handed up, per node.
    dat_delivered: Vec<usize>,
    transmits: usize,
}

impl Sim {
    fn new(n: usize) -> Sim {
        let nodes = (0..n)
            .map(|i| {
                let mut c = MeshConfig::new(orig_mac(i));
                c.ogm_interval = Duration::from_millis(1000);
                Mesh::new(c)
            })
            .collect();
        Sim {
            now: Instant::now(),
            nodes,
            links: Vec::new(),
            delivered: vec![Vec::new(); n],
            dat_delivered: vec![0; n],
            transmits: 0,
        }
    }

    /// Connects node `x` and `y` with a new hardif on each side (one per peer).
    fn link(&mut self, x: usize, y: usize) -> usize {
        let id = self.links.len() as HardifId + 1;
        let mx = MacAddr([2, 0, 0, 0, x as u8 + 1, id as u8]);
        let my = MacAddr([2, 0, 0, 0, y as u8 + 1, id as u8]);
        self.nodes[x].hardif_add(id, mx);
        self.nodes[y].hardif_add(id, my);
        self.links.push(Link {
            a: (x, id, mx),
            b: (y, id, my),
            up: true,
        });
        self.links.len() - 1
    }

    fn set_link(&mut self, l: usize, up: bool) {
        self.links[l].up = up;
    }

    /// Carries outputs of `node` until the network is quiet.
    fn run_outputs(&mut self, node: usize, out: Vec<MeshOutput>) {
        let mut queue: Vec<(usize, MeshOutput)> = out.into_iter().map(|o| (node, o)).collect();
        let mut budget = 100_000;
        while let Some((from, o)) = queue.pop() {
            budget -= 1;
            assert!(budget > 0, "packet storm");
            match o {
                MeshOutput::Deliver {
                    frame,
                    source_orig,
                    broadcast,
                    ..
                } => self.delivered[from].push((frame, source_orig, broadcast)),
                MeshOutput::Dat { .. } => self.dat_delivered[from] += 1,
                MeshOutput::Transmit {
                    hardif,
                    dst,
                    packet,
                } => {
                    self.transmits += 1;
                    let Some(l) = self.links.iter().find(|l| {
                        (l.a.0 == from && l.a.1 == hardif) || (l.b.0 == from && l.b.1 == hardif)
                    }) else {
                        panic!("transmit on unknown hardif")
                    };
                    if !l.up {
                        continue;
                    }
                    let (src, to) = if l.a.0 == from && l.a.1 == hardif {
                        (l.a, l.b)
                    } else {
                        (l.b, l.a)
                    };
                    if !(dst.is_broadcast() || dst == to.2) {
                        continue; // not for that station
                    }
                    let mut out = Vec::new();
                    self.nodes[to.0].receive(self.now, to.1, src.2, dst, &packet, &mut out);
                    queue.extend(out.into_iter().map(|o| (to.0, o)));
                }
            }
        }
    }

    fn step(&mut self) {
        self.now += STEP;
        for i in 0..self.nodes.len() {
            if self.nodes[i].next_deadline() <= self.now {
                let mut out = Vec::new();
                self.nodes[i].tick(self.now, &mut out);
                self.run_outputs(i, out);
            }
        }
    }

    fn run(&mut self, d: Duration) {
        let steps = d.as_millis() / STEP.as_millis();
        for _ in 0..steps {
            self.step();
        }
    }

    fn route(&self, from: usize, to: usize) -> Option<OriginatorInfo> {
        self.nodes[from]
            .originators()
            .into_iter()
            .find(|o| o.orig == orig_mac(to))
    }

    fn send_unicast(&mut self, from: usize, to: usize, frame: &[u8]) -> bool {
        let mut out = Vec::new();
        let ok = self.nodes[from].send_unicast(self.now, orig_mac(to), frame, &mut out);
        self.run_outputs(from, out);
        ok
    }
}

pub(super) fn frame(tag: u8) -> Vec<u8> {
    let mut f = vec![
        0x02, 0, 0, 0, 0x99, tag, 0x02, 0, 0, 0, 0x98, tag, 0x08, 0x00,
    ];
    f.extend_from_slice(&[tag; 40]);
    f
}

#[test]
fn two_nodes_see_each_other_and_route_unicast() {
    let mut s = Sim::new(2);
    let l = s.link(0, 1);
    s.run(Duration::from_secs(5));
    let early = s.route(0, 1).expect("A knows B within a few intervals");
    assert!(early.tq > 0, "bidirectional after a few OGMs");
    // The receive window (64 OGMs) fills and the asymmetry penalty fades, as on a kernel node.
    s.run(Duration::from_secs(70));
    let r = s.route(0, 1).expect("A knows B");
    assert!(
        r.tq > early.tq && r.tq > 240,
        "tq {} (early {})",
        r.tq,
        early.tq
    );
    assert_eq!(r.next_hop, Some(s.links[l].b.2));
    assert!(s.route(1, 0).unwrap().tq > 240);
    // secondary OGM originators (the hardif MACs) are listed as well, like kernel nodes show them
    assert!(s.nodes[0]
        .originators()
        .iter()
        .any(|o| o.orig == s.links[l].b.2 && o.tq > 0));
    let f = frame(1);
    assert!(s.send_unicast(0, 1, &f));
    assert_eq!(s.delivered[1], vec![(f, None, false)]);
    let before = s.nodes[0].counters().no_route;
    assert!(
        !s.send_unicast(0, 7, &frame(2)),
        "unknown originator has no route"
    );
    assert_eq!(s.nodes[0].counters().no_route, before + 1);
}

#[test]
fn line_topology_routes_multi_hop() {
    let mut s = Sim::new(3);
    let ab = s.link(0, 1);
    let bc = s.link(1, 2);
    s.run(Duration::from_secs(15));
    let a_to_c = s.route(0, 2).expect("A knows C");
    assert_eq!(a_to_c.next_hop, Some(s.links[ab].b.2), "A reaches C via B");
    assert!(
        a_to_c.tq > 0 && a_to_c.tq < s.route(0, 1).unwrap().tq,
        "hop penalty applies"
    );
    let c_to_a = s.route(2, 0).expect("C knows A");
    assert_eq!(
        c_to_a.next_hop,
        Some(s.links[bc].a.2),
        "C's route shows next hop B"
    );
    let f = frame(3);
    let fwd_before = s.nodes[1].counters().unicast_forwarded;
    assert!(s.send_unicast(0, 2, &f));
    assert_eq!(s.delivered[2], vec![(f.clone(), None, false)]);
    assert!(s.delivered[1].is_empty(), "B forwards, does not deliver");
    assert_eq!(s.nodes[1].counters().unicast_forwarded, fwd_before + 1);
    assert!(s.send_unicast(2, 0, &f));
    assert_eq!(s.delivered[0].len(), 1);
}

#[test]
fn triangle_broadcast_delivered_exactly_once() {
    let mut s = Sim::new(3);
    s.link(0, 1);
    s.link(1, 2);
    s.link(0, 2);
    s.run(Duration::from_secs(10));
    for i in 0..3 {
        s.delivered[i].clear();
    }
    let f = frame(9);
    let mut out = Vec::new();
    s.nodes[0].send_broadcast(s.now, &f, &mut out);
    s.run_outputs(0, out);
    assert_eq!(s.delivered[1], vec![(f.clone(), Some(orig_mac(0)), true)]);
    assert_eq!(s.delivered[2], vec![(f.clone(), Some(orig_mac(0)), true)]);
    assert!(s.delivered[0].is_empty());
    let dups: u64 = s.nodes.iter().map(|n| n.counters().dup_bcast).sum();
    assert!(
        dups >= 2,
        "rebroadcasts reached nodes that had it already: {dups}"
    );
    // a second broadcast is not mistaken for a duplicate
    let mut out = Vec::new();
    s.nodes[0].send_broadcast(s.now, &frame(10), &mut out);
    s.run_outputs(0, out);
    assert_eq!(s.delivered[1].len(), 2);
    assert_eq!(s.delivered[2].len(), 2);
}

#[test]
fn tt_propagates_adds_and_deletes_multi_hop() {
    let mut s = Sim::new(3);
    s.link(0, 1);
    s.link(1, 2);
    s.run(Duration::from_secs(12));
    let client = MacAddr([2, 0xaa, 0, 0, 0, 1]);
    s.nodes[0].tt_local_add(client, 0);
    s.nodes[0].tt_local_add(MacAddr([2, 0xaa, 0, 0, 0, 2]), 0x8005);
    s.run(Duration::from_secs(4));
    assert_eq!(s.nodes[2].tt_global_lookup(client, 0), Some(orig_mac(0)));
    assert_eq!(
        s.nodes[2].tt_global_lookup(MacAddr([2, 0xaa, 0, 0, 0, 2]), 0x8005),
        Some(orig_mac(0))
    );
    assert_eq!(
        s.nodes[2].tt_global_lookup(client, 5),
        None,
        "vid is part of the key"
    );
    assert!(s.route(2, 0).unwrap().tt_crc_ok);
    s.nodes[0].tt_local_del(client, 0);
    s.run(Duration::from_secs(4));
    assert_eq!(s.nodes[2].tt_global_lookup(client, 0), None);
    assert_eq!(s.nodes[1].tt_global_entries().len(), 1);
    assert!(s.route(2, 0).unwrap().tt_crc_ok);
}

#[test]
fn tt_request_repairs_missed_changes() {
    let mut s = Sim::new(2);
    let l = s.link(0, 1);
    s.run(Duration::from_secs(10));
    let req_before = s.nodes[1].counters().tt_requests_sent;
    let ans_before = s.nodes[0].counters().tt_requests_answered;
    // B misses every OGM carrying A's diffs...
    s.set_link(l, false);
    for i in 0..5u8 {
        s.nodes[0].tt_local_add(MacAddr([2, 0xbb, 0, 0, 0, i]), 0);
        s.run(Duration::from_millis(1100));
    }
    s.run(Duration::from_secs(3));
    s.set_link(l, true);
    // ...so on the next OGM it sees a TTVN gap, requests and gets the full table.
    s.run(Duration::from_secs(6));
    for i in 0..5u8 {
        assert_eq!(
            s.nodes[1].tt_global_lookup(MacAddr([2, 0xbb, 0, 0, 0, i]), 0),
            Some(orig_mac(0))
        );
    }
    assert!(s.nodes[1].counters().tt_requests_sent > req_before);
    assert!(s.nodes[0].counters().tt_requests_answered > ans_before);
    assert!(s.route(1, 0).unwrap().tt_crc_ok);
    assert_eq!(s.route(1, 0).unwrap().ttvn, s.nodes[0].tt.ttvn);
}

#[test]
fn link_cut_reroutes_and_heals() {
    let mut s = Sim::new(3);
    let ab = s.link(0, 1);
    let bc = s.link(1, 2);
    let ac = s.link(0, 2);
    s.run(Duration::from_secs(15));
    assert_eq!(
        s.route(0, 1).unwrap().next_hop,
        Some(s.links[ab].b.2),
        "direct first"
    );
    s.set_link(ab, false);
    s.run(Duration::from_secs(15));
    let r = s.route(0, 1).unwrap();
    assert_eq!(
        r.next_hop,
        Some(s.links[ac].b.2),
        "A reaches B via C after the cut"
    );
    assert!(r.tq > 0);
    let f = frame(5);
    assert!(s.send_unicast(0, 1, &f));
    assert_eq!(s.delivered[1], vec![(f, None, false)]);
    let _ = bc;
    s.set_link(ab, true);
    s.run(Duration::from_secs(40));
    assert_eq!(
        s.route(0, 1).unwrap().next_hop,
        Some(s.links[ab].b.2),
        "direct again after healing"
    );
}

#[test]
fn big_tt_change_stays_under_aggregation_limit_and_converges() {
    let mut s = Sim::new(2);
    s.link(0, 1);
    s.run(Duration::from_secs(8));
    for i in 0..100u8 {
        s.nodes[0].tt_local_add(MacAddr([2, 0xdd, 0, 0, 1, i]), 0);
    }
    let req_before = s.nodes[1].counters().tt_requests_sent;
    let mut out = Vec::new();
    s.now += Duration::from_millis(1100);
    s.nodes[0].tick(s.now, &mut out);
    for o in &out {
        if let MeshOutput::Transmit { packet, .. } = o {
            assert!(
                packet.len() <= 512,
                "OGM aggregate of {} bytes",
                packet.len()
            );
        }
    }
    s.run_outputs(0, out);
    s.run(Duration::from_secs(6));
    for i in 0..100u8 {
        assert_eq!(
            s.nodes[1].tt_global_lookup(MacAddr([2, 0xdd, 0, 0, 1, i]), 0),
            Some(orig_mac(0))
        );
    }
    assert!(
        s.nodes[1].counters().tt_requests_sent > req_before,
        "learned through a TT_REQUEST"
    );
    assert!(s.route(1, 0).unwrap().tt_crc_ok);
}

#[test]
fn migrated_client_roam_adv_redirects_old_node_at_once() {
    let mut s = Sim::new(3);
    s.link(0, 1);
    s.link(1, 2);
    s.run(Duration::from_secs(12));
    let vm = MacAddr([2, 0x55, 0, 0, 0, 1]);
    s.nodes[0].tt_local_add(vm, 0);
    s.run(Duration::from_secs(4));
    assert_eq!(s.nodes[2].tt_global_lookup(vm, 0), Some(orig_mac(0)));
    // The VM arrives on C: C tells A directly (ROAM_ADV over B), A stops
    // claiming it and points at C before any OGM interval passes.
    let mut out = Vec::new();
    s.nodes[2].tt_local_add_announce(vm, 0, &mut out);
    s.run_outputs(2, out);
    assert_eq!(s.nodes[2].counters().roam_sent, 1);
    assert_eq!(s.nodes[0].counters().roam_received, 1);
    assert_eq!(s.nodes[0].tt_global_lookup(vm, 0), Some(orig_mac(2)));
    assert!(s.nodes[0]
        .tt_local_entries()
        .iter()
        .all(|e| e.mac != vm || e.pending_delete));
    // In-flight traffic B still sends to A (stale view) is rerouted by A to C.
    assert_eq!(
        s.nodes[1].tt_global_lookup(vm, 0),
        Some(orig_mac(0)),
        "B not updated yet"
    );
    let mut f = frame(7);
    f[..6].copy_from_slice(&vm.0);
    assert!(s.send_unicast(1, 0, &f));
    assert_eq!(s.nodes[0].counters().unicast_rerouted, 1);
    assert!(s.delivered[0].is_empty());
    assert_eq!(s.delivered[2], vec![(f, None, false)]);
    // After the next OGMs everyone agrees and the CRCs are consistent again.
    s.run(Duration::from_secs(5));
    assert!(s.nodes[0].tt_local_entries().is_empty());
    assert_eq!(s.nodes[1].tt_global_lookup(vm, 0), Some(orig_mac(2)));
    assert!(s.route(1, 0).unwrap().tt_crc_ok && s.route(1, 2).unwrap().tt_crc_ok);
}

#[test]
fn full_mesh_of_twelve_converges_with_bounded_overhead() {
    let n = 12;
    let mut s = Sim::new(n);
    for x in 0..n {
        for y in (x + 1)..n {
            s.link(x, y);
        }
    }
    s.run(Duration::from_secs(20));
    let before = s.transmits;
    s.run(Duration::from_secs(10));
    for x in 0..n {
        let origs = s.nodes[x].originators();
        for y in (0..n).filter(|y| *y != x) {
            let r = origs
                .iter()
                .find(|o| o.orig == orig_mac(y))
                .expect("knows everyone");
            let direct = s
                .links
                .iter()
                .find(|l| (l.a.0, l.b.0) == (x.min(y), x.max(y)))
                .unwrap();
            let peer_mac = if direct.a.0 == y {
                direct.a.2
            } else {
                direct.b.2
            };
            assert_eq!(r.next_hop, Some(peer_mac), "{x}->{y} goes direct");
        }
    }
    // Per node and interval: own OGMs on 11 links plus rebroadcasts of the
    // 11 neighbours' OGMs on 11 links (kernel behaviour, one gretap per peer).
    let per_node_per_s = (s.transmits - before) as f64 / 10.0 / n as f64;
    eprintln!("full mesh of {n}: {per_node_per_s:.0} transmits/s per node");
    assert!(
        per_node_per_s < 3.0 * (n * n) as f64,
        "{per_node_per_s} packets/s per node"
    );
}

#[test]
fn no_reroute_ping_pong_between_stale_views() {
    let mut s = Sim::new(2);
    s.link(0, 1);
    s.run(Duration::from_secs(10));
    let vm = MacAddr([2, 0x56, 0, 0, 0, 1]);
    // B announces the VM, A has nothing local for it; a frame for the VM
    // that reaches A with A's current TTVN is delivered, not bounced.
    s.nodes[1].tt_local_add(vm, 0);
    s.run(Duration::from_secs(3));
    let mut f = frame(8);
    f[..6].copy_from_slice(&vm.0);
    let mut out = Vec::new();
    assert!(s.nodes[1].send_unicast(s.now, orig_mac(0), &f, &mut out));
    s.run_outputs(1, out);
    assert_eq!(s.delivered[0].len(), 1);
    assert_eq!(s.nodes[0].counters().unicast_rerouted, 0);
}

/// A client that roamed to us still counts in its old originator's CRC
/// until that originator's next TT update, as the kernel keeps it: its OGMs
/// in between carry the old CRC and must not trigger TT requests.
#[test]
fn roamed_client_leaves_old_crc_only_with_the_next_update() {
    let mut s = Sim::new(2);
    s.link(0, 1);
    s.run(Duration::from_secs(12));
    let vm = MacAddr([2, 0x56, 0, 0, 0, 1]);
    s.nodes[0].tt_local_add(vm, 0);
    s.run(Duration::from_secs(4));
    assert_eq!(s.nodes[1].tt_global_lookup(vm, 0), Some(orig_mac(0)));
    let before = s.nodes[1].counters().clone();
    // The VM arrives on node 1; its ROAM advert is still on the way, so
    // node 0 keeps announcing the VM with the same TTVN and CRC.
    let mut roam = Vec::new();
    s.nodes[1].tt_local_add_announce(vm, 0, &mut roam);
    assert_eq!(roam.len(), 1);
    s.run(Duration::from_secs(3));
    let c = s.nodes[1].counters();
    assert_eq!(c.tt_crc_mismatch, before.tt_crc_mismatch);
    assert_eq!(c.tt_requests_sent, before.tt_requests_sent);
    assert!(s.route(1, 0).unwrap().tt_crc_ok);
    // The advert lands; node 0's next diff deletes the VM and the CRCs
    // still agree without a request.
    s.run_outputs(1, roam);
    s.run(Duration::from_secs(3));
    let c = s.nodes[1].counters();
    assert_eq!(c.tt_requests_sent, before.tt_requests_sent);
    assert!(s.route(1, 0).unwrap().tt_crc_ok);
    assert!(s.nodes[0].tt_local_entries().is_empty());
    assert_eq!(s.nodes[0].tt_global_lookup(vm, 0), Some(orig_mac(1)));
}

/// A full table far bigger than one packet (300 clients, 3.6 KB) leaves as
/// fragments of a 1382-byte link and arrives whole: the CRC agrees at once,
/// no request loop (before: truncated to ~100 clients, a request every 3 s).
#[test]
fn big_tt_response_is_fragmented_and_ends_the_requests() {
    let mut s = Sim::new(2);
    let l = s.link(0, 1);
    for (n, id) in [
        (s.links[l].a.0, s.links[l].a.1),
        (s.links[l].b.0, s.links[l].b.1),
    ] {
        s.nodes[n].hardif_set_mtu(id, 1382);
    }
    s.run(Duration::from_secs(8));
    for i in 0..300u16 {
        let [hi, lo] = i.to_be_bytes();
        s.nodes[0].tt_local_add(MacAddr([2, 0xde, 0, 0, hi, lo]), 0);
    }
    s.run(Duration::from_secs(8));
    let c = s.nodes[1].counters().clone();
    assert!(c.tt_requests_sent >= 1, "learned through a TT_REQUEST");
    assert!(c.frag_reassembled >= 1, "the response came in fragments");
    assert!(s.nodes[0].counters().frag_sent >= 3);
    assert!(s.route(1, 0).unwrap().tt_crc_ok);
    for i in 0..300u16 {
        let [hi, lo] = i.to_be_bytes();
        let mac = MacAddr([2, 0xde, 0, 0, hi, lo]);
        assert_eq!(s.nodes[1].tt_global_lookup(mac, 0), Some(orig_mac(0)));
    }
    // Settled: no more requests.
    s.run(Duration::from_secs(10));
    assert_eq!(s.nodes[1].counters().tt_requests_sent, c.tt_requests_sent);
}
