//! Issue 3: a mesh that survives. In a triangle, the hv1-hv2 underlay path
//! is cut: traffic between their VMs moves through hv3, without duplicates
//! or loops, and moves back when the path heals.

use std::time::Duration;

use crate::common::*;

/// Pings `count` times; fails on loss beyond one probe and on any duplicate.
fn ping_clean(t: &Topology, from: &str, to_ip: &str, count: u32) {
    let c = count.to_string();
    let out = ns_exec(
        &t.vm(from).ns,
        &["ping", "-n", "-c", &c, "-i", "0.05", "-W", "1", to_ip],
    );
    assert!(!out.contains("DUP!"), "duplicates: {out}");
    let received: u32 = out
        .split(", ")
        .find(|p| p.ends_with("received"))
        .and_then(|p| p.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        received + 1 >= count,
        "lost {} of {count}: {out}",
        count - received
    );
}

/// A broadcast ping reaches every other VM exactly once per request: no
/// duplicate over the two paths, no loop.
fn broadcast_clean(t: &Topology, from: &str) {
    for vm in &t.vms {
        ns_exec(
            &vm.ns,
            &["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_broadcasts=0"],
        );
    }
    let out = ns_exec(
        &t.vm(from).ns,
        &["ping", "-n", "-b", "-i", "0.5", "-w", "2", "198.19.1.255"],
    );
    let mut seen = std::collections::HashSet::new();
    for line in out.lines().filter(|l| l.contains("bytes from")) {
        let src = line.split("from ").nth(1).and_then(|r| r.split(':').next());
        let seq = line
            .split("icmp_seq=")
            .nth(1)
            .and_then(|r| r.split(' ').next());
        assert!(seen.insert((src, seq)), "duplicate reply {line}\n{out}");
    }
    for vm in t.vms.iter().filter(|v| v.name != from) {
        let n = out.matches(&format!("from {}:", vm.ip4)).count();
        assert!(n >= 3, "{} answered only {n} broadcasts:\n{out}", vm.name);
    }
}

#[test]
fn reroute_around_a_cut_path_and_back() {
    let layout: &[&[Attach]] = &[&[Attach::TapNic], &[Attach::TapNic], &[Attach::TapNic]];
    let mut t = Topology::new("mwX", layout, 200);
    t.start_all();
    assert!(t.wait_routes(Duration::from_secs(60)), "{}", t.dump_logs());
    let ip2 = t.vm("vm2a").ip4.clone();
    // Full mesh, healthy: hv1 reaches hv2 directly.
    assert!(
        wait_until(Duration::from_secs(30), || t.next_hop(1, 2)
            == Some(t.hardif_of(2, 1))),
        "no direct route hv1 -> hv2: {:?}",
        t.next_hop(1, 2)
    );
    ping_clean(&t, "vm1a", &ip2, 20);

    t.cut_path(1, 2, true);
    // hv1's best path to hv2 becomes hv3 (its hard interface towards hv1).
    let via3 = t.hardif_of(3, 1);
    assert!(
        wait_until(Duration::from_secs(60), || t.next_hop(1, 2)
            == Some(via3.clone())),
        "hv1 never routed to hv2 via hv3: {:?}\n{}",
        t.next_hop(1, 2),
        t.dump_logs()
    );
    assert!(t.ping_until("vm1a", &ip2, Duration::from_secs(20)));
    ping_clean(&t, "vm1a", &ip2, 20);
    ping_clean(&t, "vm2a", &t.vm("vm1a").ip4.clone(), 20);
    broadcast_clean(&t, "vm1a");
    // WireGuard saw the peer go.
    let peers = t.ctl(1, "peers");
    let p2 = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["public_key"] == t.hvs[1].public_key)
        .unwrap()
        .clone();
    assert_eq!(p2["link_up"], false, "{p2}");

    t.cut_path(1, 2, false);
    let direct = t.hardif_of(2, 1);
    assert!(
        wait_until(Duration::from_secs(90), || t.next_hop(1, 2)
            == Some(direct.clone())),
        "hv1 never went back to the direct path: {:?}",
        t.next_hop(1, 2)
    );
    ping_clean(&t, "vm1a", &ip2, 20);
    broadcast_clean(&t, "vm1a");
}
