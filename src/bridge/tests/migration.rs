//! Live migration through the bridge: announced and silent moves, the old
//! node sending frames in flight on, and the bound on a redirect loop.

use super::*;
use crate::switch::announce;

const A: u8 = 0xa;
const B: u8 = 0xb;
const D: u8 = 0xd;

/// Four nodes: A lives on node 0, B on node 1 (the old node), B moves to
/// node 2 (the new node), D lives on node 3. Everyone learned B from a
/// broadcast, as after any ARP.
pub(super) fn before_the_move() -> Net {
    let mut net = Net::full_mesh(4);
    net.converge();
    net.send(0, 0, &frame(MacAddr::BROADCAST, vm(A), 1));
    net.send(3, 0, &frame(MacAddr::BROADCAST, vm(D), 1));
    net.send(1, 0, &frame(MacAddr::BROADCAST, vm(B), 1));
    for n in [0, 2, 3] {
        assert_eq!(net.fdb(n, vm(B)), Some(Location::Originator(orig(1))));
    }
    net.run(Duration::from_secs(2));
    net.clear();
    net
}

fn reaches_b_at(net: &mut Net, from: usize, port: PortId, tag: u8, at: usize) -> bool {
    let f = frame(vm(B), vm([A, 0, 0, D][from]), tag);
    net.send(from, port, &f);
    net.count(at, 0, &f) == 1
}

#[test]
fn an_announced_move_rehomes_the_mac_everywhere_at_once() {
    let mut net = before_the_move();
    let mut rarp = Vec::new();
    announce::build_rarp(&mut rarp, vm(B), None);
    net.send(2, 0, &rarp);
    for n in [0, 1, 3] {
        assert_eq!(
            net.fdb(n, vm(B)),
            Some(Location::Originator(orig(2))),
            "node {n}"
        );
    }
    assert!(reaches_b_at(&mut net, 0, 0, 2, 2));
    assert!(reaches_b_at(&mut net, 3, 0, 3, 2));
}

#[test]
fn a_silent_move_rehomes_at_every_node_from_one_ordinary_frame() {
    let mut net = before_the_move();
    // B spoke on node 1 a moment ago (qemu's downtime is tens of ms).
    net.send(1, 0, &frame(vm(A), vm(B), 5));
    net.now += Duration::from_millis(30);
    // B's first frame on node 2: an ordinary unicast to A, no announcement.
    net.send(2, 0, &frame(vm(A), vm(B), 6));
    // One OGM round: the new node's out-of-cycle OGM carries the claim.
    net.run(Duration::from_millis(100));
    for n in [0, 1, 3] {
        assert_eq!(
            net.fdb(n, vm(B)),
            Some(Location::Originator(orig(2))),
            "node {n}"
        );
    }
    // The old node let go of B and did not claim it back.
    assert!(!net.nodes[1]
        .mesh
        .tt_local_entries()
        .iter()
        .any(|e| e.mac == vm(B)));
    assert!(net.nodes[2]
        .mesh
        .tt_local_entries()
        .iter()
        .any(|e| e.mac == vm(B)));
    assert!(reaches_b_at(&mut net, 0, 0, 7, 2));
    assert!(reaches_b_at(&mut net, 3, 0, 8, 2));
    // And it stays so over later OGM rounds (no claim ping-pong).
    net.run(Duration::from_secs(5));
    assert_eq!(net.fdb(1, vm(B)), Some(Location::Originator(orig(2))));
    assert!(reaches_b_at(&mut net, 0, 0, 9, 2));
    assert!(net.nodes[0].counters().tt_claims_applied >= 1);
}

#[test]
fn the_old_node_sends_frames_in_flight_on_to_the_new_one() {
    let mut net = before_the_move();
    // Node 3 is slow: it has not heard of the move when D sends to B.
    net.hold_node(Some(3));
    net.send(2, 0, &frame(vm(A), vm(B), 6));
    net.run(Duration::from_millis(100));
    assert_eq!(net.fdb(3, vm(B)), Some(Location::Originator(orig(1))));
    net.hold_node(None);
    net.clear();
    let f = frame(vm(B), vm(D), 7);
    net.send(3, 0, &f);
    assert_eq!(net.count(2, 0, &f), 1, "lost at the old node");
    assert_eq!(net.count(1, 0, &f), 0, "written to B's old port");
    // Node 3 still has node 1's old TTVN: batman's own reroute sends it on.
    assert_eq!(net.nodes[1].mesh.counters().unicast_rerouted, 1);
    assert_eq!(net.datagrams, 2, "one hop to the old node, one on");
    net.release();
    assert_eq!(net.fdb(3, vm(B)), Some(Location::Originator(orig(2))));
}

#[test]
fn the_old_node_sends_on_what_a_stale_mac_table_sends_it() {
    let mut net = before_the_move();
    net.send(2, 0, &frame(vm(A), vm(B), 6));
    net.run(Duration::from_secs(2));
    // Node 3's TT is current, but a late broadcast (an old copy of B's)
    // put B back at node 1 in its MAC table.
    let now = net.now;
    net.nodes[3]
        .switch
        .from_mesh(now, &frame(MacAddr::BROADCAST, vm(B), 1), Some(orig(1)));
    assert_eq!(net.fdb(3, vm(B)), Some(Location::Originator(orig(1))));
    net.clear();
    let f = frame(vm(B), vm(D), 7);
    net.send(3, 0, &f);
    assert_eq!(net.count(2, 0, &f), 1, "lost at the old node");
    assert_eq!(net.count(1, 0, &f), 0, "written to B's old port");
    assert_eq!(net.nodes[1].counters().redirected, 1);
    assert_eq!(net.datagrams, 2, "one hop to the old node, one on");
}

#[test]
fn two_nodes_that_each_think_the_other_has_a_mac_bounce_it_only_ttl_times() {
    let mut net = Net::full_mesh(3);
    net.converge();
    let x = vm(0x99);
    let now = net.now;
    // X lived on both 1 and 2 (a duplicate MAC), and each heard a ROAM
    // advert from the other.
    net.send(1, 0, &frame(MacAddr::BROADCAST, x, 1));
    net.send(2, 0, &frame(MacAddr::BROADCAST, x, 1));
    net.nodes[1].switch.roamed(now, x, 0, orig(2));
    net.nodes[2].switch.roamed(now, x, 0, orig(1));
    net.nodes[0].switch.learn_from_tt(now, x, 0, orig(1));
    net.run(Duration::from_millis(100));
    net.clear();
    let f = frame(x, vm(A), 2);
    net.send(0, 0, &f);
    assert!(
        net.datagrams <= 1 + crate::mesh::TTL as usize,
        "{}",
        net.datagrams
    );
    let spent: u64 = (1..3)
        .map(|n| net.nodes[n].mesh.counters().ttl_exceeded)
        .sum();
    assert_eq!(spent, 1, "the bounce did not end on the TTL");
    assert!(
        net.nodes[1].counters().redirected > 10,
        "no bounce to bound"
    );
}
