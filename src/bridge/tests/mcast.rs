//! IGMP/MLD snooping, listeners in the translation table, the querier, and
//! our multicast as `batadv_mcast_forw_mode` sends it, between bridges in
//! process.

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::bridge::mcast_snoop::{GROUPS_PER_PORT, MEMBERSHIP_TIMEOUT};
use crate::mesh::multicast::flags;
use crate::wire::igmp::tests::{igmp_v2, igmp_v3, mld_v2, v4, v6};
use crate::wire::igmp::{self, group_mac, Kind};

const A: u8 = 1;
const B: u8 = 2;

/// A UDP datagram from `src` to the IPv4 group `g`.
fn udp4(src: MacAddr, g: Ipv4Addr, tag: u8) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(group_mac(IpAddr::V4(g)).as_bytes());
    f.extend_from_slice(src.as_bytes());
    f.extend_from_slice(&ethertype::IPV4.to_be_bytes());
    f.extend_from_slice(&[0x45, 0, 0, 36, 0, 0, 0, 0, 1, 17, 0, 0, 198, 19, 0, 1]);
    f.extend_from_slice(&g.octets());
    f.extend_from_slice(&[0x13, 0x88, 0x13, 0x88, 0, 16, 0, 0]);
    f.extend_from_slice(&[tag; 8]);
    f
}

/// Three nodes, converged, past the first query's answer window (our
/// flags no longer want all IPv4/IPv6).
fn net3() -> Net {
    let mut net = Net::full_mesh(3);
    net.converge();
    net.run(Duration::from_secs(12));
    net
}

fn tt_local_has(b: &Bridge, mac: MacAddr) -> bool {
    b.mesh.tt_local_entries().iter().any(|e| e.mac == mac)
}

#[test]
fn the_querier_asks_every_port_in_igmp_and_mld() {
    let mut net = Net::full_mesh(2);
    net.step();
    for p in 0..PORTS {
        let kinds: Vec<_> = net.got[0]
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, f)| igmp::parse(f, |_, _| {}))
            .collect();
        assert_eq!(
            kinds,
            vec![
                Ok(Some(Kind::Query { v6: false })),
                Ok(Some(Kind::Query { v6: true }))
            ]
        );
    }
    let own = net.nodes[0].mesh.mcast_own_flags();
    assert_ne!(own & flags::WANT_ALL_IPV4, 0, "no listener known yet");
    net.run(Duration::from_secs(12));
    let own = net.nodes[0].mesh.mcast_own_flags();
    assert_eq!(
        own,
        flags::WANT_ALL_UNSNOOPABLES | flags::WANT_NO_RTR4 | flags::WANT_NO_RTR6
    );
}

#[test]
fn a_listener_gets_its_group_as_one_unicast_and_nobody_else_does() {
    let mut net = net3();
    let g = v4("239.1.2.3");
    net.send(1, 0, &igmp_v2(vm(B), g, true));
    net.run(Duration::from_secs(2));
    assert!(tt_local_has(&net.nodes[1], group_mac(IpAddr::V4(g))));
    assert_eq!(
        net.nodes[0]
            .mesh
            .tt_global_lookup(group_mac(IpAddr::V4(g)), 0),
        Some(orig(1))
    );
    net.clear();
    let f = udp4(vm(A), g, 7);
    net.send(0, 0, &f);
    assert_eq!(net.count(1, 0, &f), 1, "the listener's node");
    assert_eq!(net.count(0, 1, &f), 1, "our other port still gets it");
    assert!(net.got[2].is_empty(), "node 2 has no listener");
    assert_eq!(net.datagrams, 1, "one unicast copy, no broadcast");
    assert_eq!(net.nodes[0].counters().mcast_unicast_copies, 1);
    assert_eq!(net.nodes[0].counters().mcast_broadcast, 0);
}

#[test]
fn a_group_without_listeners_stays_at_home() {
    let mut net = net3();
    net.clear();
    let f = udp4(vm(A), v4("239.9.9.9"), 1);
    net.send(0, 0, &f);
    assert_eq!(net.datagrams, 0);
    assert_eq!(net.count(0, 1, &f), 1);
    assert_eq!(net.nodes[0].counters().mcast_no_listener, 1);
}

#[test]
fn unsnoopable_groups_and_reports_are_broadcast() {
    let mut net = net3();
    net.clear();
    let f = udp4(vm(A), v4("224.0.0.251"), 1);
    net.send(0, 0, &f);
    assert_eq!(net.count(1, 0, &f), 1);
    assert_eq!(net.count(2, 0, &f), 1);
    net.send(0, 0, &igmp_v2(vm(A), v4("239.1.2.3"), true));
    assert_eq!(net.nodes[0].counters().mcast_broadcast, 2);
}

#[test]
fn an_originator_without_the_tvlv_makes_us_broadcast() {
    let mut net = Net::full_mesh(3);
    net.nodes[2].mesh.cfg.multicast = false;
    net.converge();
    net.run(Duration::from_secs(12));
    assert_eq!(net.nodes[0].mesh.mcast_flags(orig(2)), None);
    net.clear();
    let f = udp4(vm(A), v4("239.9.9.9"), 1);
    net.send(0, 0, &f);
    assert_eq!(net.count(2, 0, &f), 1);
    assert_eq!(net.nodes[0].counters().mcast_broadcast, 1);
}

#[test]
fn leaves_and_silence_retract_the_group() {
    let mut net = net3();
    let (g, h) = (v4("239.1.2.3"), v6("ff0e::42"));
    let (gm, hm) = (group_mac(IpAddr::V4(g)), group_mac(IpAddr::V6(h)));
    net.send(1, 0, &igmp_v3(vm(B), &[(4, g, 0)]));
    net.send(1, 0, &mld_v2(vm(B), &[(4, h)]));
    net.run(Duration::from_secs(2));
    assert!(tt_local_has(&net.nodes[1], gm) && tt_local_has(&net.nodes[1], hm));
    // Port 0 is a bridge uplink: after a leave it is asked again, and
    // the group stays only if someone there answers (nobody does).
    net.clear();
    net.send(1, 0, &igmp_v2(vm(B), g, false));
    net.run(Duration::from_secs(2));
    assert!(
        tt_local_has(&net.nodes[1], gm),
        "others behind the uplink may listen"
    );
    let asked = net.got[1].iter().filter(|(p, f)| {
        *p == 0 && igmp::parse(f, |_, _| {}) == Ok(Some(Kind::Query { v6: false }))
    });
    assert_eq!(asked.count(), 1, "the port is asked again");
    net.run(Duration::from_secs(10));
    assert!(!tt_local_has(&net.nodes[1], gm), "left");
    assert_eq!(net.nodes[0].mesh.tt_global_lookup(gm, 0), None);
    // The VM never answers the queries: its group times out.
    net.run(MEMBERSHIP_TIMEOUT);
    assert!(!tt_local_has(&net.nodes[1], hm), "expired");
    assert_eq!(
        net.nodes[1].snoop_counters().expired,
        2,
        "the left group ran out too"
    );
    assert_eq!(net.nodes[0].mesh.tt_global_lookup(hm, 0), None);
}

#[test]
fn a_port_holds_a_bounded_number_of_groups() {
    let mut net = Net::full_mesh(2);
    net.step();
    for i in 0..GROUPS_PER_PORT + 10 {
        let g = Ipv4Addr::new(239, 2, (i >> 8) as u8, i as u8);
        net.send(0, 0, &igmp_v2(vm(A), g, true));
    }
    assert_eq!(net.nodes[0].mcast_groups(0).len(), GROUPS_PER_PORT);
    assert_eq!(net.nodes[0].snoop_counters().refused_port_full, 10);
}

#[test]
fn a_broken_report_is_dropped_and_counted() {
    let mut net = net3();
    net.clear();
    let mut f = igmp_v2(vm(A), v4("239.1.2.3"), true);
    let last = f.len() - 1;
    f[last] ^= 0xff;
    net.send(0, 0, &f);
    assert!(net.got.iter().all(|g| g.is_empty()) && net.datagrams == 0);
    assert_eq!(net.nodes[0].snoop_counters().malformed, 1);
    assert!(net.nodes[0].mcast_groups(0).is_empty());
}

#[test]
fn a_query_from_a_port_means_a_router_wants_routable_groups() {
    let mut net = net3();
    let mut q = Vec::new();
    igmp::igmp_general_query(vm(A), &mut q);
    net.send(1, 0, &q);
    net.run(Duration::from_secs(2));
    let f = net.nodes[0].mesh.mcast_flags(orig(1)).unwrap();
    assert_eq!(f & flags::WANT_NO_RTR4, 0, "a router behind node 1");
    assert_ne!(f & flags::WANT_NO_RTR6, 0);
    net.clear();
    let d = udp4(vm(A), v4("239.9.9.9"), 1);
    net.send(0, 0, &d);
    assert_eq!(net.count(1, 0, &d), 1);
    assert!(net.got[2].is_empty());
}

#[test]
fn a_vm_ports_leave_takes_effect_at_once() {
    let mut net = net3();
    let policy = PortPolicy {
        ipv4: vec![v4("198.19.0.2")],
        ..PortPolicy::vm(vm(B))
    };
    net.nodes[1].hooks.set_policy(0, policy);
    let g = v4("239.1.2.3");
    net.send(1, 0, &igmp_v2(vm(B), g, true));
    assert_eq!(net.nodes[1].mcast_groups(0), vec![IpAddr::V4(g)]);
    net.send(1, 0, &igmp_v2(vm(B), g, false));
    assert!(net.nodes[1].mcast_groups(0).is_empty());
    assert!(!tt_local_has(&net.nodes[1], group_mac(IpAddr::V4(g))));
}
