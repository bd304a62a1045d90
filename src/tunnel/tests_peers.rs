//! Peers added and removed while the tunnels run, over loopback: a peer
//! added at runtime completes a handshake and carries frames; a removed
//! peer's datagrams are dropped and counted; a new peer in the freed slot
//! has a new generation, and the old receiver indices never reach it.

use super::tests::{frame, lo, node, port, private, pump, spec, Got};
use super::*;

#[test]
fn a_peer_added_at_runtime_handshakes_and_carries_frames() {
    let mut a = node(1, &[]);
    let mut b = node(2, &[1]);
    assert_eq!(a.peer_count(), 0);
    let id = a.add_peer(&spec(2, Some(lo(port(&b))))).expect("add");
    assert_eq!(id, 0, "the first slot, generation 0");
    b.set_endpoint(0, lo(port(&a))).unwrap();
    let f = frame(200, 7);
    a.send_frame(id, &f).unwrap();
    let mut got = vec![Got::new(), Got::new()];
    assert!(pump(&mut [&mut a, &mut b], &mut got, &|g| g[1].len() == 1));
    assert_eq!(got[1], vec![(0, f)]);
    let back = frame(300, 9);
    b.send_frame(0, &back).unwrap();
    assert!(pump(&mut [&mut a, &mut b], &mut got, &|g| g[0].len() == 1));
    assert_eq!(got[0], vec![(id, back)]);
    assert!(a.add_peer(&spec(2, None)).is_err(), "the same key twice");
}

#[test]
fn a_removed_peers_datagrams_are_dropped_and_its_slot_gets_a_new_generation() {
    let mut a = node(1, &[2]);
    let mut b = node(2, &[1]);
    a.set_endpoint(0, lo(port(&b))).unwrap();
    b.set_endpoint(0, lo(port(&a))).unwrap();
    a.send_frame(0, &frame(100, 1)).unwrap();
    let mut got = vec![Got::new(), Got::new()];
    assert!(pump(&mut [&mut a, &mut b], &mut got, &|g| g[1].len() == 1));
    // B's session sends data with receiver indices of A's peer 0.
    b.send_frame(0, &frame(100, 2)).unwrap();
    assert!(pump(&mut [&mut a, &mut b], &mut got, &|g| g[0].len() == 1));

    assert!(a.remove_peer(0));
    assert!(!a.remove_peer(0), "removed twice");
    assert_eq!(
        a.send_frame(0, &frame(100, 3)),
        Err(TunnelError::UnknownPeer(0))
    );
    let unknown = a.counters().rx_unknown_index;
    b.send_frame(0, &frame(100, 4)).unwrap();
    b.flush();
    let mut got = vec![Got::new(), Got::new()];
    pump(&mut [&mut a, &mut b], &mut got, &|_| false);
    assert!(got[0].is_empty(), "a removed peer's frame was delivered");
    assert!(a.counters().rx_unknown_index > unknown);

    // A third node takes the freed slot: a new generation, and B's old
    // session (indices of generation 0) does not reach it.
    let mut c = node(3, &[1]);
    let id = a.add_peer(&spec(3, Some(lo(port(&c))))).unwrap();
    assert_eq!((slot_of(id), generation_of(id)), (0, 1));
    c.set_endpoint(0, lo(port(&a))).unwrap();
    let f = frame(120, 5);
    a.send_frame(id, &f).unwrap();
    let mut got = vec![Got::new(), Got::new(), Got::new()];
    assert!(pump(&mut [&mut a, &mut b, &mut c], &mut got, &|g| g[2]
        .len()
        == 1));
    assert_eq!(got[2], vec![(0, f)]);
    let unknown = a.counters().rx_unknown_index;
    b.send_frame(0, &frame(100, 6)).unwrap();
    c.send_frame(0, &frame(100, 7)).unwrap();
    assert!(pump(&mut [&mut a, &mut b, &mut c], &mut got, &|g| g[0]
        .len()
        == 1));
    pump(&mut [&mut a, &mut b, &mut c], &mut got, &|_| false);
    assert_eq!(
        got[0],
        vec![(id, frame(100, 7))],
        "only C's frame, as the new peer"
    );
    assert!(
        a.counters().rx_unknown_index > unknown,
        "B's datagram was not refused"
    );
    assert_eq!(a.peer_ids(), vec![id]);
    let _ = private(1);
}

#[test]
fn the_table_refuses_peers_past_its_slots() {
    let a = node(1, &[]);
    for i in 0..MAX_PEERS {
        let mut s = spec(2, None);
        s.public_key[..4].copy_from_slice(&(i as u32).to_le_bytes());
        s.public_key[31] = 0x40;
        a.add_peer(&s).unwrap_or_else(|e| panic!("peer {i}: {e}"));
    }
    let mut s = spec(2, None);
    s.public_key = [0x55; 32];
    assert!(a.add_peer(&s).is_err());
    assert_eq!(a.peer_count(), MAX_PEERS);
}
