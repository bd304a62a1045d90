//! Port policy through whole bridges: what a hostile VM's frames do (or
//! rather do not do) to the other nodes' tables and ports, and networks
//! that stay apart across the mesh.

use std::net::Ipv4Addr;

use super::*;
use crate::bridge::policy::frames::{eth, gratuitous_arp, ipv4, udp};

fn ip(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 1, host)
}

fn vm_port(net: &mut Net, node: usize, port: PortId, tag: u8, vlan: Option<u16>) {
    net.nodes[node].hooks.set_policy(
        port,
        PortPolicy {
            ipv4: vec![ip(tag)],
            vlan,
            ..PortPolicy::vm(vm(tag))
        },
    );
}

fn udp_frame(src: MacAddr, dst: MacAddr, sip: Ipv4Addr, dip: Ipv4Addr) -> Vec<u8> {
    ipv4(src, dst, sip, dip, 17, &udp(1000, 2000, b"payload"))
}

#[test]
fn a_spoofed_mac_never_moves_a_vm_local_or_remote() {
    let mut net = Net::full_mesh(2);
    vm_port(&mut net, 0, 0, 0xa, None);
    vm_port(&mut net, 0, 1, 0xb, None);
    vm_port(&mut net, 1, 0, 0xc, None);
    net.converge();
    // The honest VMs speak: B on node 0, C on node 1.
    net.send(0, 1, &gratuitous_arp(vm(0xb), ip(0xb)));
    net.send(1, 0, &gratuitous_arp(vm(0xc), ip(0xc)));
    net.run(Duration::from_secs(3));
    assert_eq!(net.fdb(0, vm(0xb)), Some(Location::Port(1)));
    assert_eq!(net.fdb(0, vm(0xc)), Some(Location::Originator(orig(1))));
    let moves = (net.nodes[0].counters().moves, net.nodes[1].counters().moves);
    net.clear();
    // A (port 0 of node 0) speaks as B (local) and as C (remote), with
    // their addresses and with its own.
    for victim in [0xb, 0xc] {
        net.send(0, 0, &gratuitous_arp(vm(victim), ip(victim)));
        net.send(0, 0, &udp_frame(vm(victim), vm(0xb), ip(0xa), ip(0xb)));
        net.send(0, 0, &eth(MacAddr::BROADCAST, vm(victim), 0x0800, &[0; 46]));
    }
    net.run(Duration::from_secs(3));
    assert_eq!(net.fdb(0, vm(0xb)), Some(Location::Port(1)), "B stolen");
    assert_eq!(net.fdb(0, vm(0xc)), Some(Location::Originator(orig(1))));
    assert_eq!(net.fdb(1, vm(0xc)), Some(Location::Port(0)), "C withdrawn");
    assert_eq!(net.nodes[1].mesh.tt_global_lookup(vm(0xc), 0), None);
    assert_eq!(
        (net.nodes[0].counters().moves, net.nodes[1].counters().moves),
        moves,
        "a spoofed frame made a migration event"
    );
    assert!(
        net.got.iter().all(|g| g.is_empty()),
        "a spoofed frame arrived"
    );
    assert_eq!(net.nodes[0].hooks.port_counters(0).drop_spoofed_mac, 6);
}

#[test]
fn networks_stay_apart_across_the_mesh() {
    let mut net = Net::full_mesh(2);
    // VLAN 10 on node 0 port 0 and node 1 port 0; node 1 port 1 untagged.
    vm_port(&mut net, 0, 0, 0xa, Some(10));
    vm_port(&mut net, 1, 0, 0xb, Some(10));
    vm_port(&mut net, 1, 1, 0xc, None);
    net.converge();
    net.clear();
    let g = gratuitous_arp(vm(0xa), ip(0xa));
    net.send(0, 0, &g);
    net.run(Duration::from_secs(3));
    // Untagged at the VLAN 10 port of the other node, nowhere else.
    assert_eq!(net.count(1, 0, &g), 1);
    assert_eq!(net.got[1].iter().filter(|(p, _)| *p == 1).count(), 0);
    // In the mesh it is VLAN 10, as a kernel's bat0.10 announces it.
    assert_eq!(
        net.nodes[1].mesh.tt_global_lookup(vm(0xa), 0x800a),
        Some(orig(0))
    );
    assert_eq!(net.nodes[1].mesh.tt_global_lookup(vm(0xa), 0), None);
    // Unicast from the untagged network to A's MAC finds nothing there;
    // from VLAN 10 it arrives.
    net.clear();
    let across = udp_frame(vm(0xc), vm(0xa), ip(0xc), ip(0xa));
    net.send(1, 1, &across);
    let within = udp_frame(vm(0xb), vm(0xa), ip(0xb), ip(0xa));
    net.send(1, 0, &within);
    assert_eq!(net.count(0, 0, &across), 0, "crossed networks");
    assert_eq!(net.count(0, 0, &within), 1);
    assert!(net.nodes[1].hooks.port_counters(1).drop_vlan == 0);
}

#[test]
fn the_mesh_carries_at_most_the_broadcast_rate() {
    let mut net = Net::full_mesh(2);
    net.nodes[0].hooks.set_policy(
        0,
        PortPolicy {
            broadcast_rate: 10,
            ipv4: vec![ip(0xa)],
            ..PortPolicy::vm(vm(0xa))
        },
    );
    net.converge();
    net.clear();
    let b = udp_frame(vm(0xa), MacAddr::BROADCAST, ip(0xa), Ipv4Addr::BROADCAST);
    for _ in 0..200 {
        net.send(0, 0, &b);
    }
    assert_eq!(net.count(1, 0, &b), 10, "node 1 got more than the budget");
    assert_eq!(net.count(0, 1, &b), 10, "the local port too");
    assert_eq!(net.nodes[0].hooks.port_counters(0).drop_broadcast_rate, 190);
}

#[test]
fn a_mac_moving_five_times_in_three_minutes_is_a_flap() {
    let mut net = Net::new(1);
    // Two uplinks (no policy): a loop or a duplicate MAC between them.
    let f = frame(MacAddr::BROADCAST, vm(0xd), 1);
    for i in 0..6 {
        net.send(0, i % 2, &f);
        net.now += Duration::from_secs(10);
    }
    assert_eq!(net.nodes[0].counters().moves, 5);
    assert_eq!(net.nodes[0].counters().mac_flaps, 1);
}

#[test]
fn a_flapping_mac_frozen_stays_where_it_is_until_the_freeze_ends() {
    let mut net = Net::new(1);
    net.nodes[0].set_mac_flap_freeze(Some(Duration::from_secs(60)));
    let f = frame(MacAddr::BROADCAST, vm(0xd), 1);
    // Five moves between the two uplinks: frozen on port 1 (the fifth
    // move's destination: sends alternate 0, 1, 0, 1, 0, 1).
    for i in 0..6 {
        net.send(0, i % 2, &f);
        net.now += Duration::from_secs(1);
    }
    assert_eq!(net.nodes[0].counters().mac_flaps, 1);
    net.clear();
    // From port 0 it is dropped, from port 1 it still flows.
    net.send(0, 0, &f);
    assert_eq!(net.nodes[0].counters().drop_mac_frozen, 1);
    assert_eq!(net.count(0, 1, &f), 0, "a frozen MAC's frame got through");
    net.send(0, 1, &f);
    assert_eq!(net.count(0, 0, &f), 1, "its frozen port is blocked");
    assert_eq!(net.nodes[0].counters().moves, 5, "no move while frozen");
    // After the freeze, it may move again.
    net.now += Duration::from_secs(61);
    net.send(0, 0, &f);
    assert_eq!(net.nodes[0].counters().moves, 6);
    assert_eq!(net.nodes[0].counters().drop_mac_frozen, 1);
}

#[test]
fn announce_uses_the_ports_own_mac_and_addresses() {
    let mut net = Net::full_mesh(2);
    let v6: std::net::Ipv6Addr = "fd00::a".parse().unwrap();
    net.nodes[0].hooks.set_policy(
        0,
        PortPolicy {
            ipv4: vec![ip(0xa)],
            ipv6: vec![v6],
            vlan: Some(10),
            ..PortPolicy::vm(vm(0xa))
        },
    );
    vm_port(&mut net, 1, 0, 0xb, Some(10));
    net.converge();
    net.clear();
    let mut w = Wire::default();
    let now = net.now;
    let sent = net.nodes[0].announce(now, 0, None, &[], &mut w).unwrap();
    net.carry(0, w);
    assert_eq!(sent, 2, "a gratuitous ARP and an NA");
    // Both reach VLAN 10 on the other node, untagged, from the VM's MAC.
    let mut garp = Vec::new();
    crate::switch::announce::build_gratuitous_arp(&mut garp, vm(0xa), ip(0xa), None);
    assert_eq!(net.count(1, 0, &garp), 1);
    assert_eq!(net.got[1].iter().filter(|(p, _)| *p == 0).count(), 2);
    // The open uplink (port 1, no policy) carries VLAN 10 tagged, as bat0.
    assert!(net.got[1]
        .iter()
        .filter(|(p, _)| *p == 1)
        .all(|(_, f)| f[12..16] == [0x81, 0, 0, 10]));
    assert_eq!(net.nodes[0].hooks.port_counters(0).drops(), 0);
    // Another MAC would be dropped as spoofed: refused up front.
    let mut w = Wire::default();
    assert!(net.nodes[0]
        .announce(now, 0, Some(vm(0xc)), &[], &mut w)
        .is_err());
}
