//! Big full meshes (issue 15) on the simulated network of `mesh::sim`:
//! packet counts and simulated time only, no wall clock.

use std::time::Duration;

use crate::mesh::sim::{orig_mac, SimNet};
use crate::mesh::{MacAddr, MeshConfig, RelayMode};

const STEP: Duration = Duration::from_millis(10);

fn vm(i: usize) -> MacAddr {
    MacAddr([2, 0xee, 0, 0, 0, i as u8 + 1])
}

fn arp_from(src: MacAddr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(&[0u8; 28]);
    f
}

/// A full mesh of `n` with one VM per node, converged and settled.
fn full_mesh(n: usize, relay: impl Fn(usize) -> RelayMode) -> SimNet {
    let mut s = SimNet::new(n, |i| MeshConfig {
        relay: relay(i),
        ..MeshConfig::new(orig_mac(i))
    });
    s.peer_timeout = Some(Duration::from_secs(5));
    s.full_mesh(n);
    for i in 0..n {
        s.nodes[i].tt_local_add(vm(i), 0);
    }
    let t = s.run_until(Duration::from_secs(30), Duration::from_millis(100), |s| {
        (0..n).all(|x| (0..n).all(|y| x == y || s.next_hop(x, y) == Some(y)))
    });
    assert!(t.is_some(), "full mesh of {n} converges to direct routes");
    s.run(Duration::from_secs(3), STEP);
    s
}

/// Control packets each node sends per second, over `secs` seconds.
fn packets_per_node_s(s: &mut SimNet, secs: u64) -> f64 {
    let before = s.total().packets();
    s.run(Duration::from_secs(secs), STEP);
    (s.total().packets() - before) as f64 / s.nodes.len() as f64 / secs as f64
}

/// Every node holds every other node's VM with a matching TT CRC.
fn tt_consistent(s: &SimNet) -> bool {
    let n = s.nodes.len();
    (0..n).all(|x| {
        let origs = s.nodes[x].originators();
        (0..n).filter(|y| *y != x).all(|y| {
            s.nodes[x].tt_global_lookup(vm(y), 0) == Some(orig_mac(y))
                && origs.iter().any(|o| o.orig == orig_mac(y) && o.tt_crc_ok)
        })
    })
}

/// Broadcast from `from`: (datagrams, how many nodes got it once, any twice).
fn broadcast(s: &mut SimNet, from: usize) -> (u64, usize, bool) {
    for d in s.delivered.iter_mut() {
        d.clear();
    }
    let cost = s.broadcast(from, &arp_from(vm(from)));
    let once = s.delivered.iter().filter(|d| d.len() == 1).count();
    let twice = s.delivered.iter().any(|d| d.len() > 1);
    (cost, once, twice)
}

fn scoped_full_mesh_holds_the_bounds(n: usize) {
    let mut s = full_mesh(n, |_| RelayMode::Scoped);
    assert!(tt_consistent(&s), "TT consistent at {n}");
    // Healthy: one broadcast is N-1 datagrams, control traffic linear in N
    // (own OGM + the echo per link; the kernel's rules send N² relays).
    assert_eq!(broadcast(&mut s, 7), ((n - 1) as u64, n - 1, false));
    let pps = packets_per_node_s(&mut s, 3);
    assert!(
        pps <= 2.5 * (n - 1) as f64,
        "{pps} packets/s per node at {n}"
    );
    assert!(s.nodes[0].counters().ogm_relay_scoped > 0);
    // Cut 0-1: both route around it through a third node, unicast works,
    // broadcasts from 0 reach 1 exactly once through relays.
    s.set_link(0, 1, false);
    let t = s.run_until(Duration::from_secs(15), Duration::from_millis(100), |s| {
        s.next_hop(0, 1).is_some_and(|h| h != 1) && s.next_hop(1, 0).is_some_and(|h| h != 0)
    });
    eprintln!("N={n}: rerouted in {t:?} simulated");
    assert!(t.is_some(), "0 and 1 route around the cut at {n}");
    // the next own OGMs carry the new views (1 s interval)
    s.run(Duration::from_secs(2), STEP);
    assert!(s.unicast(0, 1, &arp_from(vm(0))));
    assert_eq!(s.delivered[1].last().map(|d| d.2), Some(false));
    let (cost, once, twice) = broadcast(&mut s, 0);
    assert_eq!((once, twice), (n - 1, false), "everyone once after the cut");
    assert!(
        cost < 2 * n as u64,
        "{cost} datagrams: relays towards 1 only"
    );
    // Heal: direct again (about 17 s of simulated time, as with the
    // kernel's rules: run at 50 only), and back to N-1 datagrams.
    s.set_link(0, 1, true);
    if n > 50 {
        s.run(Duration::from_secs(3), STEP);
        return assert!(tt_consistent(&s), "TT consistent after the cut at {n}");
    }
    let t = s.run_until(Duration::from_secs(30), Duration::from_millis(100), |s| {
        s.next_hop(0, 1) == Some(1) && s.next_hop(1, 0) == Some(0)
    });
    eprintln!("N={n}: direct again in {t:?} simulated");
    assert!(t.is_some(), "direct again after healing at {n}");
    s.run(Duration::from_secs(3), STEP);
    assert_eq!(broadcast(&mut s, 0), ((n - 1) as u64, n - 1, false));
    // A VM moves from 2 to 3: everyone follows without a TT request storm.
    s.nodes[2].tt_local_del(vm(2), 0);
    let mut out = Vec::new();
    s.nodes[3].tt_local_add_announce(vm(2), 0, &mut out);
    s.run_outputs(3, out);
    let t = s.run_until(Duration::from_secs(5), STEP, |s| {
        (0..n).all(|x| x == 3 || s.nodes[x].tt_global_lookup(vm(2), 0) == Some(orig_mac(3)))
    });
    assert!(t.is_some(), "VM move seen everywhere at {n}");
}

#[test]
fn scoped_full_mesh_of_50() {
    scoped_full_mesh_holds_the_bounds(50);
}

#[test]
fn scoped_full_mesh_of_100() {
    scoped_full_mesh_holds_the_bounds(100);
}

/// A node that sends no scope container (a kernel node, here meshwire with
/// the kernel's rules) keeps getting every relay and rebroadcast the
/// kernel's rules give it, while the scoped nodes spare each other.
#[test]
fn neighbour_without_scope_gets_kernel_rules() {
    let n = 12;
    let k = n - 1;
    let mut s = full_mesh(n, |i| {
        if i == k {
            RelayMode::Kernel
        } else {
            RelayMode::Scoped
        }
    });
    let relayed_to_k = s.nodes[k].counters().ogm_route_kept_direct;
    let relayed_to_0 = s.nodes[0].counters().ogm_route_kept_direct;
    s.run(Duration::from_secs(3), STEP);
    let to_k = s.nodes[k].counters().ogm_route_kept_direct - relayed_to_k;
    let to_0 = s.nodes[0].counters().ogm_route_kept_direct - relayed_to_0;
    assert!(
        to_k >= 3 * (n as u64 - 2),
        "kernel-rules node got {to_k} relays"
    );
    // node 0 still gets the kernel-rules node's own relays, nobody else's
    assert!(to_0 < to_k / 4, "scoped node got {to_0} relays");
    // A broadcast from 0: N-1 from 0, each scoped node re-sends it to k
    // only, and k re-sends it to all but 0, as a kernel does.
    let (cost, once, twice) = broadcast(&mut s, 0);
    assert_eq!((once, twice), (n - 1, false));
    assert_eq!(cost, (n - 1) as u64 + 2 * (n - 2) as u64);
}
