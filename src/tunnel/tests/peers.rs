//! Peers added and removed while the tunnels run, over loopback: a peer
//! added at runtime completes a handshake and carries frames; a removed
//! peer's datagrams are dropped and counted; a new peer in the freed slot
//! has a new generation, and the old receiver indices never reach it.

use super::{frame, lo, node, port, private, pump, spec, Got};
use crate::tunnel::*;

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
    assert_eq!(
        a.add_peer(&spec(2, None)),
        Err(AddPeerError::DuplicateKey(id)),
        "the same key twice"
    );
    let mut v6 = spec(4, None);
    v6.inner = "fd00::4".parse().unwrap();
    assert_eq!(a.add_peer(&v6), Err(AddPeerError::InnerFamily));
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
    let queued = frame(100, 3);
    assert_eq!(a.send_frames([(0, &queued[..])].into_iter()), 1, "refused");
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
    assert_eq!(a.add_peer(&s), Err(AddPeerError::Full));
    assert_eq!(a.peer_count(), MAX_PEERS);
}

/// (worker, peer, frame) as one of A's workers delivered it.
type Steered = Vec<(usize, PeerId, Vec<u8>)>;

/// Runs A's workers (each on its own socket of the group) and the peers
/// until `want` frames were delivered or 3 s passed.
fn run_workers(
    a: &Tunnels,
    ios: &mut [TunnelIo],
    peers: &mut [&mut Tunnels],
    got: &mut Steered,
    want: usize,
) {
    let start = std::time::Instant::now();
    while got.len() < want && start.elapsed() < std::time::Duration::from_secs(3) {
        for (k, io) in ios.iter_mut().enumerate() {
            if io.recv().unwrap_or(0) > 0 {
                a.core()
                    .process_received(io, &mut |p, f| got.push((k, p, f.to_vec())));
            }
            a.core().tick(io);
        }
        for p in peers.iter_mut() {
            p.receive(&mut |_, _| {});
            p.tick();
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The reuseport steering with peers that come and go: A has three
/// sockets in its group and the steering program; B, C and D are added at
/// runtime (slots 0, 1, 2), C is removed and E takes slot 1 in the next
/// generation. Every data message reaches the worker `id mod 3` predicts
/// (E's on worker 2, not C's worker 1), and C's data after its removal is
/// counted and dropped on C's old worker.
#[test]
fn added_peers_are_steered_to_worker_id_mod_workers() {
    let cfg = TunnelConfig {
        private_key: private(1),
        listen_port: 0,
        local_inner: super::tests::inner(1),
        underlay_mtu: 1500,
        peers: Vec::new(),
    };
    let a = Tunnels::with_reuse_port(cfg, true).unwrap();
    let mut ios: Vec<TunnelIo> = (0..3).map(|k| a.new_io(k > 0).unwrap()).collect();
    a.steer_peers(3).unwrap();
    let [mut b, mut c, mut d, mut e] = [2, 3, 4, 5].map(|s| node(s, &[1]));
    let mut ids = Vec::new();
    for (seed, p) in [(2, &b), (3, &c), (4, &d)] {
        ids.push(a.add_peer(&spec(seed, Some(lo(port(p))))).unwrap());
    }
    assert_eq!(ids, [0, 1, 2]);
    let mut got = Steered::new();
    for (i, p) in [&mut b, &mut c, &mut d].into_iter().enumerate() {
        p.set_endpoint(0, lo(port(&a))).unwrap();
        p.send_frame(0, &frame(150, i as u8)).unwrap();
    }
    run_workers(&a, &mut ios, &mut [&mut b, &mut c, &mut d], &mut got, 3);
    got.sort_by_key(|g| g.1);
    let on: Vec<(usize, PeerId)> = got.iter().map(|g| (g.0, g.1)).collect();
    assert_eq!(on, [(0, 0), (1, 1), (2, 2)], "peer i's data on worker i");
    assert!((0..3).all(|i| got[i].2 == frame(150, i as u8)));

    assert!(a.remove_peer(1));
    let id = a.add_peer(&spec(5, Some(lo(port(&e))))).unwrap();
    assert_eq!(id, make_id(1, 1));
    // The gap is filled: the next peer takes the first slot never used.
    assert_eq!(a.add_peer(&spec(6, None)), Ok(3));
    assert_eq!(a.peer_ids(), [0, id, 2, 3]);
    e.set_endpoint(0, lo(port(&a))).unwrap();
    e.send_frame(0, &frame(160, 5)).unwrap();
    let dropped = ios[1].counters().rx_unknown_index;
    c.send_frame(0, &frame(160, 3)).unwrap();
    c.flush();
    let mut got = Steered::new();
    run_workers(&a, &mut ios, &mut [&mut c, &mut e], &mut got, 1);
    let on: Vec<(usize, PeerId)> = got.iter().map(|g| (g.0, g.1)).collect();
    assert_eq!(on, [(2, id)], "E's data on worker {id} mod 3, not slot 1's");
    assert_eq!(got[0].2, frame(160, 5));
    // C's message was read by C's old worker and refused there.
    let mut later = Steered::new();
    run_workers(&a, &mut ios, &mut [&mut c], &mut later, 1);
    assert!(later.is_empty(), "{later:?}");
    assert!(ios[1].counters().rx_unknown_index > dropped);
}
