//! Claims carried by out-of-cycle OGMs, and the ROAM_ADV anti-flap limit.

use super::*;

fn slow_mesh(n: usize) -> Sim {
    let mut sim = Sim::new(n);
    for node in &mut sim.nodes {
        node.cfg.ogm_interval = Duration::from_secs(10);
    }
    for x in 0..n {
        for y in x + 1..n {
            sim.link(x, y);
        }
    }
    // Bidirectional links need a few intervals.
    sim.run(Duration::from_secs(60));
    for x in 0..n {
        for y in 0..n {
            if x != y {
                assert!(sim.route(x, y).is_some(), "{x} has no route to {y}");
            }
        }
    }
    sim
}

fn claim(sim: &mut Sim, node: usize, client: MacAddr) {
    let mut out = Vec::new();
    sim.nodes[node].tt_local_add_announce(client, 0, &mut out);
    sim.run_outputs(node, out);
}

#[test]
fn a_claim_reaches_every_node_within_milliseconds_despite_a_10s_interval() {
    let mut sim = slow_mesh(3);
    let client = MacAddr([2, 0xcc, 0, 0, 0, 1]);
    claim(&mut sim, 0, client);
    // Far less than the 10 s interval: only an out-of-cycle OGM gets there.
    sim.run(Duration::from_millis(200));
    for n in [1, 2] {
        assert_eq!(
            sim.nodes[n].tt_global_lookup(client, 0),
            Some(orig_mac(0)),
            "node {n} did not learn the claim"
        );
    }
    assert_eq!(sim.nodes[0].counters().ogm_out_of_cycle, 1);

    // It moves to node 1: ROAM advert to node 0, and node 2 learns it too.
    claim(&mut sim, 1, client);
    sim.run(Duration::from_millis(200));
    assert_eq!(sim.nodes[1].counters().roam_sent, 1);
    assert_eq!(sim.nodes[2].tt_global_lookup(client, 0), Some(orig_mac(1)));
    assert_eq!(sim.nodes[0].tt_global_lookup(client, 0), Some(orig_mac(1)));
}

#[test]
fn a_flapping_client_gets_at_most_five_roam_adverts_per_20s() {
    let mut sim = slow_mesh(2);
    let client = MacAddr([2, 0xcc, 0, 0, 0, 2]);
    claim(&mut sim, 0, client);
    sim.run(Duration::from_millis(200));
    for i in 0..20 {
        claim(&mut sim, (i + 1) % 2, client);
        sim.run(Duration::from_millis(300));
    }
    for n in 0..2 {
        let c = sim.nodes[n].counters();
        assert!(
            c.roam_sent <= crate::mesh::roaming::ROAMING_MAX_COUNT as u64,
            "node {n} sent {} adverts in 6 s",
            c.roam_sent
        );
        assert!(c.roam_suppressed > 0, "node {n} never held one back");
    }
}
