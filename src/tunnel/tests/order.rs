//! Issue 13, "Order under load": per-peer wire order across workers, with
//! the preemption that broke it forced by the test hooks (`test_hook.rs`)
//! instead of hoped for.
//!
//! Worker A seals a batch for peer P and stops between sealing and
//! sending (as a preempted thread would). Worker B then sends more than
//! the receiver's replay window (1024 counters) to P. Had B sent all of
//! that first, every message of A's batch would be too old for P and
//! dropped. With the fix, A holds P's lock until its batch is sent, so B
//! finds P busy (hook point PeerBusy), and only there does the test let
//! A go: B's messages follow A's on the wire, and P gets every frame.
//! Without the fix B never finds P busy, sends everything, and only then
//! lets A go, and A's frames are lost: the same interleaving, every run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use std::cell::Cell;
use std::rc::Rc;

use super::{frame, lo, node, pair, port};
use crate::tunnel::test_hook::{self, Point};
use crate::tunnel::*;

/// A's batch: fewer than one send batch (TX_BATCH), so A stops once, at
/// its batch's only flush.
const A_FRAMES: u32 = 32;
/// More than boringtun's replay window (1024) behind A's last counter.
const B_FRAMES: u32 = 1500;

/// A frame carrying (worker, sequence) after its Ethernet header.
fn tagged(worker: u8, seq: u32) -> Vec<u8> {
    let mut f = frame(200, worker);
    f[14] = worker;
    f[15..19].copy_from_slice(&seq.to_be_bytes());
    f
}

fn tag_of(f: &[u8]) -> (u8, u32) {
    (f[14], u32::from_be_bytes([f[15], f[16], f[17], f[18]]))
}

/// What a race left at B: the frames in arrival order, whether worker B
/// found the peer busy.
struct Outcome {
    got: Vec<(u8, u32)>,
    found_busy: bool,
}

/// Runs `a_work` on worker A's path, parked at its first BeforeSend,
/// then worker B's B_FRAMES to peer 0 of `core`, with B's PeerBusy
/// letting A go; `b` receives throughout.
fn race(
    core: &TunnelCore,
    io_a: &mut TunnelIo,
    io_b: &mut TunnelIo,
    b: &mut Tunnels,
    a_work: impl FnOnce(&TunnelCore, &mut TunnelIo) + Send,
) -> Outcome {
    // A -> B: "A is stopped with its batch sealed". B -> A: "go on".
    let (parked_tx, parked_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let senders_done = AtomicBool::new(false);
    std::thread::scope(|s| {
        // B's receiver reads while the senders send (the socket buffer
        // need not hold everything). Loopback delivers a datagram into
        // the receiver's queue within sendmmsg, so once the senders are
        // done, an empty read means everything that was sent was read:
        // no deadline decides anything.
        let receiver = s.spawn(|| {
            let mut got = Vec::new();
            loop {
                let done = senders_done.load(Ordering::Acquire);
                let n = b.receive(&mut |_, f| got.push(tag_of(f)));
                if n == 0 {
                    if done {
                        return got;
                    }
                    std::thread::yield_now();
                }
            }
        });
        let worker_a = s.spawn(move || {
            let mut parked = Some(parked_tx);
            test_hook::set(move |p| {
                if p == Point::BeforeSend {
                    // Only the first flush stops, and only until B says.
                    if let Some(tx) = parked.take() {
                        tx.send(()).unwrap();
                        go_rx.recv().unwrap();
                    }
                }
            });
            a_work(core, &mut *io_a);
            // A no-op where A's path sends before it lets go of the peer;
            // where it does not (the code before the fix), A's batch
            // leaves (and A stops) here.
            io_a.flush();
        });
        let worker_b = s.spawn(move || {
            parked_rx.recv().unwrap();
            let go = go_tx.clone();
            let found_busy = Rc::new(Cell::new(false));
            let busy = Rc::clone(&found_busy);
            test_hook::set(move |p| {
                if p == Point::PeerBusy && !busy.get() {
                    busy.set(true);
                    go.send(()).unwrap();
                }
            });
            let frames: Vec<_> = (0..B_FRAMES).map(|i| tagged(2, i)).collect();
            let refused = core.send_frames(io_b, frames.iter().map(|f| (0, &f[..])));
            assert_eq!(refused, 0);
            io_b.flush();
            if !found_busy.get() {
                // Never found the peer busy: A's batch was not holding its
                // lock. Let A go now, to show what that costs (no hang).
                go_tx.send(()).unwrap();
            }
            found_busy.get()
        });
        worker_a.join().unwrap();
        let found_busy = worker_b.join().unwrap();
        senders_done.store(true, Ordering::Release);
        Outcome {
            got: receiver.join().unwrap(),
            found_busy,
        }
    })
}

/// Every frame of both workers arrived, each worker's in order, all of
/// A's before B's first, and nothing was taken for a replay.
fn check(o: &Outcome, b: &Tunnels) {
    let of = |w: u8| -> Vec<u32> { o.got.iter().filter(|t| t.0 == w).map(|t| t.1).collect() };
    let (from_a, from_b) = (of(1), of(2));
    assert_eq!(
        from_a.len(),
        A_FRAMES as usize,
        "A's frames at B: {} of {A_FRAMES} (replayed: {}); B found the peer busy: {}",
        from_a.len(),
        b.counters().rx_replayed,
        o.found_busy
    );
    assert_eq!(from_b.len(), B_FRAMES as usize, "B's frames at B");
    assert!(
        from_a.windows(2).all(|w| w[0] < w[1]),
        "A's frames reordered"
    );
    assert!(
        from_b.windows(2).all(|w| w[0] < w[1]),
        "B's frames reordered"
    );
    // B waited for A: A's whole batch is on the wire before B's first.
    let first_b = o.got.iter().position(|t| t.0 == 2);
    let last_a = o.got.iter().rposition(|t| t.0 == 1);
    assert!(last_a < first_b, "B's frames went out before A's");
    assert!(o.found_busy);
    assert_eq!(b.counters().rx_replayed, 0);
}

/// The send path (`send_frames`): A's batch of data frames.
#[test]
fn a_batch_sealed_before_a_preemption_is_not_lost_to_the_replay_window() {
    let (a, mut b) = pair();
    let core = Arc::clone(a.core());
    let mut io_a = a.new_io(false).unwrap();
    let mut io_b = a.new_io(false).unwrap();
    let o = race(&core, &mut io_a, &mut io_b, &mut b, |core, io| {
        let frames: Vec<_> = (0..A_FRAMES).map(|i| tagged(1, i)).collect();
        assert_eq!(core.send_frames(io, frames.iter().map(|f| (0, &f[..]))), 0);
    });
    check(&o, &b);
}

/// The receive path: frames boringtun queued behind the handshake, sealed
/// when A's worker reads the response (`send_queued`), with the
/// keepalive that confirms the session.
#[test]
fn frames_released_by_a_handshake_are_not_lost_to_the_replay_window() {
    let a = node(1, &[2]);
    let mut b = node(2, &[1]);
    a.set_endpoint(0, lo(port(&b))).unwrap();
    b.set_endpoint(0, lo(port(&a))).unwrap();
    let core = Arc::clone(a.core());
    let mut io_a = a.new_io(false).unwrap();
    let mut io_b = a.new_io(false).unwrap();
    // No session yet: boringtun queues A's frames and sends an initiation;
    // B answers it. Loopback: each is in the other's queue on return.
    let frames: Vec<_> = (0..A_FRAMES).map(|i| tagged(1, i)).collect();
    assert_eq!(
        core.send_frames(&mut io_a, frames.iter().map(|f| (0, &f[..]))),
        0
    );
    assert_eq!(io_a.counters().tx_queued, u64::from(A_FRAMES));
    let mut early = 0;
    b.receive(&mut |_, _| early += 1);
    assert_eq!((early, b.counters().handshakes_completed), (0, 1));
    let o = race(&core, &mut io_a, &mut io_b, &mut b, |core, io| {
        // The response: the session starts, the queue is sealed.
        assert_eq!(io.recv().unwrap(), 1);
        core.process_received(io, &mut |_, _| {});
        assert_eq!(io.counters().handshakes_completed, 1);
    });
    check(&o, &b);
}
