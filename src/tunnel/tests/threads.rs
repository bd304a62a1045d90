//! The shared core from several threads at once, each with its own
//! `TunnelIo`, as the dataplane workers use it: one peer fed by two
//! threads, two peers at the same time. Every frame must arrive once,
//! each thread's frames in the order it sent them, and the receivers'
//! replay windows must take the interleaving.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{frame, lo, node, port, pump, Got};
use crate::tunnel::*;

/// Frames per sending thread.
const N: u32 = 1500;

/// A frame carrying (thread, sequence) after its Ethernet header.
fn tagged(thread: u8, seq: u32) -> Vec<u8> {
    let mut f = frame(200, thread);
    f[14] = thread;
    f[15..19].copy_from_slice(&seq.to_be_bytes());
    f
}

fn tag_of(f: &[u8]) -> (u8, u32) {
    (f[14], u32::from_be_bytes([f[15], f[16], f[17], f[18]]))
}

/// Receives on `t` until `want` frames came or 10 s passed.
fn collect(t: &mut Tunnels, want: usize) -> Vec<(u8, u32)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < want && Instant::now() < deadline {
        t.receive(&mut |_, f| got.push(tag_of(f)));
        std::thread::sleep(Duration::from_micros(200));
    }
    got
}

/// Each thread's frames arrived exactly once and in order.
fn check(got: &[(u8, u32)], threads: &[u8]) {
    let mut by: BTreeMap<u8, Vec<u32>> = BTreeMap::new();
    for &(t, s) in got {
        by.entry(t).or_default().push(s);
    }
    for t in threads {
        let seqs = by.remove(t).unwrap_or_default();
        assert_eq!(seqs.len(), N as usize, "thread {t}: {} frames", seqs.len());
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "thread {t} reordered");
    }
    assert!(by.is_empty(), "frames of unknown threads: {:?}", by.keys());
}

#[test]
fn two_threads_to_one_peer_and_two_peers_at_once() {
    // a: peers b (0) and c (1).
    let mut a = node(1, &[2, 3]);
    let mut b = node(2, &[1]);
    let mut c = node(3, &[1]);
    a.set_endpoint(0, lo(port(&b))).unwrap();
    a.set_endpoint(1, lo(port(&c))).unwrap();
    b.set_endpoint(0, lo(port(&a))).unwrap();
    c.set_endpoint(0, lo(port(&a))).unwrap();
    // Sessions first: one frame each way.
    a.send_frame(0, &frame(60, 1)).unwrap();
    a.send_frame(1, &frame(60, 2)).unwrap();
    let mut got = vec![Got::new(), Got::new(), Got::new()];
    assert!(pump(&mut [&mut a, &mut b, &mut c], &mut got, &|g| {
        g[1].len() == 1 && g[2].len() == 1
    }));

    let core = Arc::clone(a.core());
    let mut io1 = a.new_io(false).unwrap();
    let mut io2 = a.new_io(false).unwrap();
    let (got_b, got_c) = std::thread::scope(|s| {
        // Thread 1: everything to b. Thread 2: alternately to b and c.
        s.spawn(|| {
            for seq in 0..N {
                let f = tagged(1, seq);
                assert_eq!(core.send_frames(&mut io1, [(0, &f[..])].into_iter()), 0);
                if seq % 16 == 15 {
                    io1.flush();
                }
            }
            io1.flush();
        });
        s.spawn(|| {
            for seq in 0..N {
                let (fb, fc) = (tagged(2, seq), tagged(3, seq));
                let frames = [(0, &fb[..]), (1, &fc[..])];
                assert_eq!(core.send_frames(&mut io2, frames.into_iter()), 0);
                if seq % 8 == 7 {
                    io2.flush();
                }
            }
            io2.flush();
        });
        let rb = s.spawn(|| collect(&mut b, 2 * N as usize));
        let rc = s.spawn(|| collect(&mut c, N as usize));
        (rb.join().unwrap(), rc.join().unwrap())
    });
    check(&got_b, &[1, 2]);
    check(&got_c, &[3]);
    // The interleaving of two threads' counters is no replay.
    assert_eq!(b.counters().rx_replayed, 0);
    assert_eq!(io1.counters().tx_datagrams, u64::from(N));
    assert_eq!(io2.counters().tx_datagrams, 2 * u64::from(N));
}
