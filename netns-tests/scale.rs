//! Issue 15: a full mesh of 12 real daemons (one worker each). One VM
//! broadcast reaches every other VM exactly once and costs at most N-1
//! datagrams across the mesh (the daemons' own counters); after a path is
//! cut the two ends route around it and broadcasts still arrive once.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

const N: usize = 12;

fn mesh_counter(t: &Topology, hv: usize, key: &str) -> u64 {
    t.ctl(hv, "stats")["mesh"][key].as_u64().unwrap_or(0)
}

/// Frames each hypervisor's VM port handed to its VM.
fn port_tx(t: &Topology, hv: usize) -> u64 {
    match t.ctl(hv, "ports") {
        Value::Array(l) => l.iter().filter_map(|p| p["tx_frames"].as_u64()).sum(),
        _ => 0,
    }
}

/// (broadcast datagrams sent mesh-wide, frames each VM port delivered).
fn snapshot(t: &Topology) -> (u64, Vec<u64>) {
    let sent = (1..=N)
        .map(|hv| mesh_counter(t, hv, "tx_bcast_packets"))
        .sum();
    (sent, (1..=N).map(|hv| port_tx(t, hv)).collect())
}

/// One broadcast ping from vm1a (nobody answers: Linux ignores broadcast
/// echo requests by default). Returns the datagrams it cost and what each
/// VM port delivered, measured between two quiet snapshots; retried when
/// something else crossed the mesh meanwhile.
fn one_broadcast(t: &Topology) -> (u64, Vec<u64>) {
    for _ in 0..5 {
        let before = snapshot(t);
        std::thread::sleep(Duration::from_secs(1));
        if snapshot(t) != before {
            continue; // not quiet yet
        }
        // no answer: ping fails, the request went out all the same
        ns_try(
            &t.vm("vm1a").ns,
            &["ping", "-n", "-b", "-c", "1", "-W", "1", "198.19.1.255"],
        );
        std::thread::sleep(Duration::from_secs(1));
        let after = snapshot(t);
        std::thread::sleep(Duration::from_secs(1));
        if snapshot(t) != after {
            continue; // other traffic raced it
        }
        let delivered: Vec<u64> = (0..N).map(|i| after.1[i] - before.1[i]).collect();
        if delivered[0] != 0 {
            // the sender's port never gets its own broadcast (the mesh drops
            // it as ours): a frame for vm1a (an ARP probe) raced it
            continue;
        }
        return (after.0 - before.0, delivered);
    }
    panic!("the mesh never went quiet around one broadcast");
}

fn assert_once_everywhere(delivered: &[u64], when: &str) {
    for (i, d) in delivered.iter().enumerate().skip(1) {
        assert_eq!(*d, 1, "{when}: hv{} delivered {d} copies", i + 1);
    }
}

#[test]
fn full_mesh_of_twelve_broadcasts_once_and_reroutes() {
    let layout: Vec<&[Attach]> = vec![&[Attach::TapNic]; N];
    let opts = Opts {
        workers: vec![1; N],
        ..Opts::default()
    };
    let mut t = Topology::with_opts("mwSC", &layout, 1000, opts);
    t.start_all();
    // Quiet VMs: no IPv6 router/neighbour solicitations in the counts.
    for vm in &t.vms {
        ns_exec(
            &vm.ns,
            &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
        );
    }
    assert!(t.wait_routes(Duration::from_secs(120)), "{}", t.dump_logs());
    assert!(
        wait_until(Duration::from_secs(60), || (2..=N)
            .all(|b| t.next_hop(1, b) == Some(t.hardif_of(b, 1)))),
        "hv1 does not reach everyone directly"
    );
    // The scope views settle within a few OGM intervals.
    std::thread::sleep(Duration::from_secs(4));
    let (cost, delivered) = one_broadcast(&t);
    eprintln!("healthy full mesh of {N}: one broadcast cost {cost} datagrams");
    assert_once_everywhere(&delivered, "healthy");
    assert!(
        cost <= (N - 1) as u64,
        "one broadcast cost {cost} datagrams"
    );
    assert!(mesh_counter(&t, 2, "ogm_relay_scoped") > 0);

    // Cut hv1-hv2: both route through a third node, unicast works, and a
    // broadcast still reaches every VM once (vm2a through relays).
    t.cut_path(1, 2, true);
    let direct = t.hardif_of(2, 1);
    assert!(
        wait_until(Duration::from_secs(60), || t
            .next_hop(1, 2)
            .is_some_and(|h| h != direct)),
        "hv1 never routed around the cut: {:?}\n{}",
        t.next_hop(1, 2),
        t.dump_logs()
    );
    let ip2 = t.vm("vm2a").ip4.clone();
    assert!(t.ping_until("vm1a", &ip2, Duration::from_secs(30)));
    std::thread::sleep(Duration::from_secs(3));
    let (cost, delivered) = one_broadcast(&t);
    eprintln!("hv1-hv2 cut: one broadcast cost {cost} datagrams");
    assert_once_everywhere(&delivered, "after the cut");
    assert!(
        cost <= 2 * (N - 1) as u64,
        "after the cut one broadcast cost {cost}: relays towards hv2 only"
    );
}
