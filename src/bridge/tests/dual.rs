//! Dual delivery during a watched migration (`bridge/dual.rs`): B moves
//! from node 1 (the source) to node 2 (the destination) while A on node 0
//! sends to it.

use super::migration::before_the_move;
use super::*;
use crate::switch::announce;

const A: u8 = 0xa;
const B: u8 = 0xb;

fn to_b(tag: u8) -> Vec<u8> {
    frame(vm(B), vm(A), tag)
}

/// The destination claims B as its watcher does at RESUME.
fn claim_at_destination(net: &mut Net) {
    let mut rarp = Vec::new();
    announce::build_rarp(&mut rarp, vm(B), None);
    net.send(2, 0, &rarp);
}

#[test]
fn frames_the_stopped_guest_missed_reach_it_at_its_new_place() {
    for watched in [false, true] {
        let mut net = before_the_move();
        if watched {
            net.nodes[1].dual_depart(net.now, 0, &[vm(B)]);
            net.now += Duration::from_millis(200);
            net.nodes[1].dual_stopped(net.now, 0);
        }
        // The guest is stopped at node 1: these reach its old port only.
        for tag in 1..=5 {
            net.send(0, 0, &to_b(tag));
            assert_eq!(net.count(1, 0, &to_b(tag)), 1);
            net.now += Duration::from_millis(10);
        }
        claim_at_destination(&mut net);
        assert_eq!(net.fdb(1, vm(B)), Some(Location::Originator(orig(2))));
        let at_new: usize = (1..=5).map(|t| net.count(2, 0, &to_b(t))).sum();
        let c = *net.nodes[1].dual_counters();
        if watched {
            assert_eq!(at_new, 5, "every frame the stopped guest missed");
            assert_eq!((c.copies_kept, c.copies_sent, c.ended_seen), (5, 5, 1));
            // Order kept: the copies arrive as they were sent.
            let tags: Vec<u8> = (net.got[2].iter())
                .filter(|(p, f)| *p == 0 && f[..12] == to_b(0)[..12])
                .map(|(_, f)| f[63])
                .collect();
            assert_eq!(tags, vec![1, 2, 3, 4, 5]);
        } else {
            assert_eq!(at_new, 0, "the control: lost without the watcher");
            assert_eq!(c.copies_kept, 0);
        }
        // Over: later frames go to the new place once, nothing is kept.
        net.send(0, 0, &to_b(9));
        assert_eq!(net.count(2, 0, &to_b(9)), 1);
        assert_eq!(net.nodes[1].dual_counters().copies_kept, c.copies_kept);
        assert_eq!(net.nodes[1].dual_state(0), None);
    }
}

#[test]
fn while_the_guest_runs_only_the_last_moments_are_kept() {
    let mut net = before_the_move();
    net.nodes[1].dual_depart(net.now, 0, &[vm(B)]);
    // Precopy: seconds of traffic the running guest reads.
    for tag in 1..=20 {
        net.send(0, 0, &to_b(tag));
        net.now += Duration::from_millis(20);
    }
    // Within the window before the watcher heard STOP: kept.
    net.nodes[1].dual_stopped(net.now, 0);
    net.send(0, 0, &to_b(21));
    claim_at_destination(&mut net);
    let resent: Vec<u8> = (1..=21)
        .filter(|&t| net.count(2, 0, &to_b(t)) == 1)
        .collect();
    // 20 ms apart, a 50 ms window: the last two or three before STOP.
    assert!(
        resent.len() <= 4 && resent.contains(&20) && resent.contains(&21),
        "{resent:?}"
    );
    assert!(net.nodes[1].dual_counters().copies_dropped >= 17);
}

#[test]
fn a_failed_migration_and_the_bound_end_it_without_sending() {
    let mut net = before_the_move();
    net.nodes[1].dual_depart(net.now, 0, &[vm(B)]);
    net.nodes[1].dual_stopped(net.now, 0);
    net.send(0, 0, &to_b(1));
    assert_eq!(net.nodes[1].dual_state(0), Some("departing (stopped)"));
    net.nodes[1].dual_stay(0);
    assert_eq!(net.nodes[1].dual_state(0), None);
    let c = *net.nodes[1].dual_counters();
    assert_eq!((c.ended_stayed, c.copies_dropped), (1, 1));

    net.nodes[1].dual_depart(net.now, 0, &[vm(B)]);
    net.nodes[1].dual_stopped(net.now, 0);
    net.send(0, 0, &to_b(2));
    net.run(Duration::from_secs(11));
    assert_eq!(net.nodes[1].dual_state(0), None);
    assert_eq!(net.nodes[1].dual_counters().ended_bound, 1);
    // The guest arrives later: nothing old is sent after the bound.
    claim_at_destination(&mut net);
    assert_eq!(net.count(2, 0, &to_b(2)), 0);
}

#[test]
fn the_destination_delivers_frames_for_an_expected_guest() {
    for expected in [false, true] {
        let mut net = before_the_move();
        if expected {
            net.nodes[2].dual_expect(net.now, 0, &[vm(B)]);
            assert_eq!(net.nodes[2].dual_state(0), Some("expecting"));
        }
        // Node 0 already sends B's frames to node 2, whose FDB still has
        // B at node 1 (as while the claims cross).
        let now = net.now;
        net.nodes[0].switch.learn_from_tt(now, vm(B), 0, orig(2));
        net.send(0, 0, &to_b(1));
        assert_eq!(net.count(2, 0, &to_b(1)), usize::from(expected));
        assert_eq!(
            net.nodes[2].dual_counters().expected_delivered,
            u64::from(expected)
        );
        // Seen here: the expectation ends.
        claim_at_destination(&mut net);
        net.step();
        assert_eq!(net.nodes[2].dual_state(0), None);
    }
}
