//! The forwarding decision as a whole: local ports, remote originators,
//! floods, unknown destinations, moves between ports, and the ingress hook.

use super::*;
use crate::wire::ethernet::ethertype;

const A: u8 = 0xa;
const B: u8 = 0xb;
const C: u8 = 0xc;

#[test]
fn local_port_to_local_port_never_touches_the_mesh() {
    let mut net = Net::full_mesh(2);
    net.converge();
    net.send(0, 0, &frame(MacAddr::BROADCAST, vm(A), 1));
    net.clear();
    let f = frame(vm(A), vm(B), 2);
    net.send(0, 1, &f);
    assert_eq!(net.count(0, 0, &f), 1, "A's port got the frame");
    assert_eq!(net.got[0].len(), 1, "nothing else: {:?}", net.got[0]);
    assert_eq!(net.datagrams, 0, "the mesh carried something");
    assert!(net.got[1].is_empty());
}

#[test]
fn unicast_to_a_remote_originator_costs_one_datagram() {
    let mut net = Net::full_mesh(3);
    net.converge();
    // B says hello from node 1: everyone learns where it is.
    net.send(1, 0, &frame(MacAddr::BROADCAST, vm(B), 1));
    assert_eq!(net.fdb(0, vm(B)), Some(Location::Originator(orig(1))));
    net.clear();
    let f = frame(vm(B), vm(A), 2);
    net.send(0, 0, &f);
    assert_eq!(net.count(1, 0, &f), 1);
    assert_eq!(net.got[1].len(), 1, "only B's port: {:?}", net.got[1]);
    assert!(net.got[2].is_empty() && net.got[0].is_empty());
    assert_eq!(net.datagrams, 1);
}

#[test]
fn a_broadcast_reaches_every_other_port_exactly_once() {
    let mut net = Net::full_mesh(3);
    net.converge();
    net.clear();
    let f = frame(MacAddr::BROADCAST, vm(A), 3);
    net.send(0, 0, &f);
    assert_eq!(net.count(0, 0, &f), 0, "back out of the ingress port");
    assert_eq!(net.count(0, 1, &f), 1);
    for n in 1..3 {
        for p in 0..PORTS {
            assert_eq!(net.count(n, p, &f), 1, "node {n} port {p}");
        }
    }
}

#[test]
fn an_unknown_unicast_is_resolved_through_the_translation_table() {
    let mut net = Net::full_mesh(3);
    net.converge();
    // C speaks first, then B talks to C on the same node: the mesh hears
    // no frame from B, only node 1's translation table announces it.
    net.send(1, 1, &frame(MacAddr::BROADCAST, vm(C), 1));
    net.send(1, 0, &frame(vm(C), vm(B), 2));
    net.run(Duration::from_secs(2));
    assert_eq!(net.fdb(0, vm(B)), None, "node 0 saw a frame from B");
    assert_eq!(net.nodes[0].mesh.tt_global_lookup(vm(B), 0), Some(orig(1)));
    net.clear();
    let f = frame(vm(B), vm(A), 3);
    net.send(0, 0, &f);
    assert_eq!(net.count(1, 0, &f), 1, "B did not get it");
    assert_eq!(net.datagrams, 1, "flooded instead of unicast");
    assert!(net.got[2].is_empty() && net.count(0, 1, &f) == 0);
    assert_eq!(net.nodes[0].counters().tt_resolved, 1);
    // Cached: the next frame is a plain FDB hit.
    assert_eq!(net.fdb(0, vm(B)), Some(Location::Originator(orig(1))));
}

#[test]
fn a_destination_nobody_knows_is_flooded_everywhere_but_back() {
    let mut net = Net::full_mesh(3);
    net.converge();
    net.clear();
    let f = frame(vm(0x55), vm(A), 4);
    net.send(0, 0, &f);
    assert_eq!(net.count(0, 0, &f), 0);
    assert_eq!(net.count(0, 1, &f), 1);
    for n in 1..3 {
        assert_eq!(net.count(n, 0, &f) + net.count(n, 1, &f), 2, "node {n}");
    }
}

#[test]
fn a_mac_moving_between_ports_takes_its_traffic_along() {
    let mut net = Net::full_mesh(2);
    net.converge();
    net.send(0, 0, &frame(MacAddr::BROADCAST, vm(B), 1));
    net.send(0, 1, &frame(vm(A), vm(B), 2));
    assert_eq!(net.fdb(0, vm(B)), Some(Location::Port(1)));
    assert_eq!(net.nodes[0].counters().moves, 1);
    net.clear();
    let f = frame(vm(B), vm(A), 3);
    net.send(1, 0, &f);
    assert_eq!(net.count(0, 1, &f), 1, "not at B's new port");
    assert_eq!(net.count(0, 0, &f), 0, "still at B's old port");
}

#[test]
fn batman_frames_from_a_port_never_enter_the_mesh() {
    let mut net = Net::full_mesh(2);
    net.converge();
    net.clear();
    let mut plain = frame(MacAddr::BROADCAST, vm(A), 1);
    plain[12..14].copy_from_slice(&ethertype::BATMAN.to_be_bytes());
    let mut tagged = frame(MacAddr::BROADCAST, vm(A), 2);
    tagged[12..14].copy_from_slice(&ethertype::VLAN.to_be_bytes());
    tagged.splice(14..14, [0x00, 0x0a, 0x43, 0x05]);
    net.send(0, 0, &plain);
    net.send(0, 0, &tagged);
    assert_eq!(net.datagrams, 0);
    assert!(net.got.iter().all(Vec::is_empty));
    assert_eq!(net.nodes[0].hooks.counters().drop_batman_from_port, 2);
    assert_eq!(net.nodes[0].hooks.port_counters(0).drop_batman_from_port, 2);
    assert_eq!(net.fdb(0, vm(A)), None, "learned from a dropped frame");
}

#[test]
fn a_no_route_flood_never_goes_back_out_the_ingress_port() {
    let mut net = Net::new(1);
    let nowhere = MacAddr([2, 0, 0, 0, 0x77, 0xee]);
    let remote = vm(0x42);
    // The switch learns `remote` at an originator the mesh has no route to.
    let b = &mut net.nodes[0];
    b.switch.from_mesh(
        net.now,
        &frame(MacAddr::BROADCAST, remote, 1),
        Some(nowhere),
    );
    let f = frame(remote, vm(A), 2);
    net.send(0, 0, &f);
    assert_eq!(net.nodes[0].counters().no_route, 1, "the mesh had a route?");
    assert_eq!(net.count(0, 0, &f), 0, "flooded back out the ingress port");
    assert_eq!(net.count(0, 1, &f), 1, "not flooded to the other port");
}

#[test]
fn frames_from_an_unknown_peer_or_not_batman_are_counted_and_dropped() {
    let mut net = Net::full_mesh(2);
    let mut w = Wire::default();
    let now = net.now;
    net.nodes[0].from_peer(now, 9, &frame(MacAddr::BROADCAST, vm(A), 1), &mut w);
    net.nodes[0].from_peer(now, 1, &frame(MacAddr::BROADCAST, vm(A), 1), &mut w);
    net.nodes[0].from_peer(now, 1, &[0u8; 7], &mut w);
    let c = net.nodes[0].counters();
    assert_eq!(
        (c.tunnel_unknown_link, c.tunnel_not_batman, c.tunnel_runt),
        (1, 1, 1)
    );
    assert!(w.to_ports.is_empty() && w.to_peers.is_empty());
}

#[test]
fn a_dead_link_is_routed_around_through_a_third_node() {
    let mut net = Net::new(3);
    let ab = net.link(0, 1);
    net.link(0, 2);
    net.link(1, 2);
    net.converge();
    net.send(1, 0, &frame(MacAddr::BROADCAST, vm(B), 1));
    net.set_link(ab, false);
    assert_eq!(net.nodes[0].counters().links_lost, 1);
    net.run(Duration::from_secs(3));
    net.clear();
    let f = frame(vm(B), vm(A), 2);
    net.send(0, 0, &f);
    assert_eq!(net.count(1, 0, &f), 1, "not routed around the dead link");
    assert_eq!(net.datagrams, 2, "one hop to node 2, one on");
    assert!(net.got[2].is_empty(), "written to node 2's ports");
}
