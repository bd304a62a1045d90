//! Tunnel layer costs.
//!
//! - `seal`/`open`: the CPU per frame without sockets, through the very
//!   functions the workers call: `encap_frame` + `seal_packet` (gretap
//!   headers, padding to the inner MTU of a 1500-byte IPv4 underlay,
//!   ChaCha20-Poly1305), as `send.rs` does for a frame that fits one
//!   datagram; `open_datagram` + `gretap::decap_gre` (decryption, the IP and
//!   GRE checks), as `receive.rs` does for a whole inner packet. Between two
//!   boringtun sessions in memory, at 64/512/1400-byte frames and per 64 KiB
//!   of 1400-byte frames.
//! - `loopback`: frames/s from one `Tunnels` to another over 127.0.0.1,
//!   with batching (sendmmsg + GSO, recvmmsg + GRO) and without (one system
//!   call per datagram each way). Both ends run on this thread, so the
//!   figure is the whole path's cost: encrypt + send + receive + decrypt.
//! - `two_threads`: the same A -> B stream with B on its own thread, as a
//!   sender and a receiver would run on two cores: frames/s of one
//!   direction, with at most WINDOW frames in flight.
//! - `peers_in_parallel`: two busy peers sealed by one thread, or by two
//!   threads (workers) at once on their own paths: whether different
//!   peers' crypto spreads over cores; and two threads sending to one
//!   peer (they take turns at its lock).
//!
//! Run: `cargo bench --bench tunnel`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

use meshwire::keys::public_from_private;
use meshwire::tunnel::gretap::{decap_gre, Inner};
use meshwire::tunnel::{
    encap_frame, open_datagram, seal_packet, Link, Opened, PeerSpec, Sealed, TunnelConfig,
    TunnelCore, TunnelIo, Tunnels, RX_DATAGRAM_MAX,
};
use meshwire::wire::mtu;

const SIZES: [usize; 3] = [64, 512, 1400];
const CHUNK: usize = 64 * 1024;

fn private(seed: u8) -> [u8; 32] {
    let mut k = [seed; 32];
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    k
}

fn inner(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 19, 0, n))
}

fn frame(len: usize, tag: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ tag).collect();
    f[12..14].copy_from_slice(&[0x43, 0x05]);
    f
}

/// Two boringtun sessions that completed a handshake in memory.
fn sessions() -> (Tunn, Tunn) {
    let (ka, kb) = (private(1), private(2));
    let mut a = Tunn::new(
        StaticSecret::from(ka),
        PublicKey::from(public_from_private(&kb)),
        None,
        None,
        1,
        None,
    );
    let mut b = Tunn::new(
        StaticSecret::from(kb),
        PublicKey::from(public_from_private(&ka)),
        None,
        None,
        2,
        None,
    );
    let mut buf = vec![0u8; 2048];
    let init = match a.format_handshake_initiation(&mut buf, false) {
        TunnResult::WriteToNetwork(m) => m.to_vec(),
        _ => panic!("no initiation"),
    };
    let resp = match b.decapsulate(None, &init, &mut buf) {
        TunnResult::WriteToNetwork(m) => m.to_vec(),
        _ => panic!("no response"),
    };
    let keepalive = match a.decapsulate(None, &resp, &mut buf) {
        TunnResult::WriteToNetwork(m) => m.to_vec(),
        _ => panic!("no keepalive"),
    };
    // The responder's session becomes usable with the first data message.
    assert!(matches!(
        b.decapsulate(None, &keepalive, &mut buf),
        TunnResult::Done
    ));
    (a, b)
}

fn link_ab() -> (Link, Link) {
    (
        Link {
            local: inner(1),
            remote: inner(2),
        },
        Link {
            local: inner(2),
            remote: inner(1),
        },
    )
}

/// The inner MTU `send.rs` pads to towards a peer over a 1500-byte IPv4
/// underlay (1440).
const INNER_MTU: usize = 1500 - mtu::underlay_overhead(false);

/// `send.rs` for one frame that fits one datagram.
fn seal_one(a: &mut Tunn, link: Link, f: &[u8], plain: &mut [u8], out: &mut [u8]) -> usize {
    let len = encap_frame(plain, link, 7, f).expect("encap");
    assert!(len <= INNER_MTU, "would be sent as inner fragments");
    match seal_packet(a, plain, len, INNER_MTU, out) {
        Ok(Sealed::Data(n)) => n,
        other => panic!("seal: {other:?}"),
    }
}

/// `receive.rs` for one data message holding a whole inner packet:
/// returns the frame's length.
fn open_one(b: &mut Tunn, msg: &[u8], link: Link, out: &mut [u8]) -> usize {
    let from = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    match open_datagram(b, from, msg, link, out) {
        Opened::Data(Ok(Inner::Whole(gre))) => decap_gre(gre).expect("gre").len(),
        other => panic!("open: {other:?}"),
    }
}

fn bench_seal_open(c: &mut Criterion) {
    let (la, lb) = link_ab();
    let mut g = c.benchmark_group("seal");
    for len in SIZES {
        let (mut a, _b) = sessions();
        let f = frame(len, 1);
        let mut plain = vec![0u8; RX_DATAGRAM_MAX];
        let mut out = vec![0u8; RX_DATAGRAM_MAX];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::from_parameter(len), &len, |bn, _| {
            bn.iter(|| black_box(seal_one(&mut a, la, black_box(&f), &mut plain, &mut out)))
        });
    }
    let (mut a, _b) = sessions();
    let f = frame(1400, 1);
    let (mut plain, mut out) = (vec![0u8; RX_DATAGRAM_MAX], vec![0u8; RX_DATAGRAM_MAX]);
    g.throughput(Throughput::Bytes((CHUNK / 1400 * 1400) as u64));
    g.bench_function("64KiB_of_1400", |bn| {
        bn.iter(|| {
            for _ in 0..CHUNK / 1400 {
                black_box(seal_one(&mut a, la, &f, &mut plain, &mut out));
            }
        })
    });
    g.finish();

    // Replay protection refuses a message twice, so every iteration opens a
    // fresh one, sealed in the (untimed) setup.
    let mut g = c.benchmark_group("open");
    for len in SIZES {
        let (mut a, mut b) = sessions();
        let f = frame(len, 2);
        let mut plain = vec![0u8; RX_DATAGRAM_MAX];
        let mut out = vec![0u8; RX_DATAGRAM_MAX];
        let mut opened = vec![0u8; RX_DATAGRAM_MAX];
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::from_parameter(len), &len, |bn, _| {
            bn.iter_batched_ref(
                || {
                    let n = seal_one(&mut a, la, &f, &mut plain, &mut out);
                    out[..n].to_vec()
                },
                |msg| black_box(open_one(&mut b, msg, lb, &mut opened)),
                BatchSize::SmallInput,
            )
        });
    }
    let (mut a, mut b) = sessions();
    let f = frame(1400, 3);
    let (mut plain, mut out) = (vec![0u8; RX_DATAGRAM_MAX], vec![0u8; RX_DATAGRAM_MAX]);
    let mut opened = vec![0u8; RX_DATAGRAM_MAX];
    g.throughput(Throughput::Bytes((CHUNK / 1400 * 1400) as u64));
    g.bench_function("64KiB_of_1400", |bn| {
        bn.iter_batched_ref(
            || {
                (0..CHUNK / 1400)
                    .map(|_| {
                        let n = seal_one(&mut a, la, &f, &mut plain, &mut out);
                        out[..n].to_vec()
                    })
                    .collect::<Vec<_>>()
            },
            |msgs| {
                for m in msgs.iter() {
                    black_box(open_one(&mut b, m, lb, &mut opened));
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn node(seed: u8, peer: u8) -> Tunnels {
    Tunnels::new(TunnelConfig {
        private_key: private(seed),
        listen_port: 0,
        local_inner: inner(seed),
        underlay_mtu: 1500,
        peers: vec![PeerSpec {
            public_key: public_from_private(&private(peer)),
            endpoint: None,
            inner: inner(peer),
            persistent_keepalive: None,
        }],
    })
    .expect("bind")
}

/// A -> B with a session up.
fn loopback_pair(batching: bool) -> (Tunnels, Tunnels) {
    let mut a = node(1, 2);
    let mut b = node(2, 1);
    let lo = |t: &Tunnels| SocketAddr::from(([127, 0, 0, 1], t.local_port().expect("port")));
    a.set_endpoint(0, lo(&b)).expect("peer");
    b.set_endpoint(0, lo(&a)).expect("peer");
    a.set_batching(batching);
    b.set_batching(batching);
    a.send_frame(0, &frame(60, 0)).expect("send");
    let mut got = 0;
    let start = Instant::now();
    while got == 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "no handshake");
        a.receive(&mut |_, _| {});
        b.receive(&mut |_, _| got += 1);
    }
    (a, b)
}

/// Frames per iteration: a burst the receive buffer holds comfortably.
const BURST: usize = 256;

/// Sends BURST frames of `len` and receives them all; returns how many
/// arrived (a lost datagram would show as a short count, not a hang).
fn burst(a: &mut Tunnels, b: &mut Tunnels, f: &[u8]) -> usize {
    for _ in 0..BURST {
        a.send_frame(0, f).expect("send");
    }
    a.flush();
    let mut got = 0;
    let start = Instant::now();
    while got < BURST && start.elapsed() < Duration::from_secs(1) {
        b.receive(&mut |_, fr| {
            got += 1;
            black_box(fr.len());
        });
    }
    // Keepalives or handshake replies B might owe A.
    a.receive(&mut |_, _| {});
    got
}

fn bench_loopback(c: &mut Criterion) {
    let mut g = c.benchmark_group("loopback");
    g.throughput(Throughput::Elements(BURST as u64));
    for len in [64, 1400] {
        for batching in [true, false] {
            let (mut a, mut b) = loopback_pair(batching);
            let f = frame(len, 9);
            let name = if batching { "batched" } else { "unbatched" };
            g.bench_with_input(BenchmarkId::new(name, len), &len, |bn, _| {
                bn.iter(|| assert_eq!(burst(&mut a, &mut b, &f), BURST))
            });
            let k = a.counters();
            let kb = b.counters();
            eprintln!(
                "  {name} {len}: A sent {} datagrams in {} sendmmsg calls ({} GSO messages, {} segments); \
                 B read {} datagrams in {} recvmmsg calls ({} GRO trains, {} segments)",
                k.tx_datagrams,
                k.tx_sendmmsg_calls,
                k.tx_gso_messages,
                k.tx_gso_segments,
                kb.rx_datagrams,
                kb.rx_recvmmsg_calls,
                kb.rx_gro_trains,
                kb.rx_gro_segments
            );
        }
    }
    g.finish();
}

/// Frames A may have sent that B has not received yet: well inside B's
/// receive buffer, so the measurement is not of drops.
const WINDOW: usize = 2048;

fn bench_two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_threads");
    g.throughput(Throughput::Elements(BURST as u64));
    for batching in [true, false] {
        let (mut a, b) = loopback_pair(batching);
        let received = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let receiver = {
            let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut b = b;
                while !stop.load(Ordering::Relaxed) {
                    let mut n = 0;
                    b.receive(&mut |_, f| {
                        black_box(f.len());
                        n += 1;
                    });
                    received.fetch_add(n, Ordering::Release);
                    if n == 0 {
                        std::thread::yield_now();
                    }
                }
                b
            })
        };
        let f = frame(1400, 5);
        let mut sent = 0usize;
        let mut lost = false;
        let name = if batching { "batched" } else { "unbatched" };
        g.bench_function(BenchmarkId::new(name, 1400), |bn| {
            bn.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    while sent - received.load(Ordering::Acquire) > WINDOW && !lost {
                        // A datagram lost on loopback would stall the
                        // window for good: give up after a second.
                        lost = start.elapsed() > Duration::from_secs(1);
                        std::hint::spin_loop();
                    }
                    for _ in 0..BURST {
                        a.send_frame(0, &f).expect("send");
                    }
                    a.flush();
                    sent += BURST;
                }
                start.elapsed()
            })
        });
        stop.store(true, Ordering::Relaxed);
        let b = receiver.join().expect("receiver");
        let (k, kb) = (a.counters(), b.counters());
        eprintln!(
            "  two_threads {name}: sent {sent} frames, B delivered {} ({} lost to drops); \
             {} datagrams per sendmmsg, {} per recvmmsg",
            kb.rx_frames,
            sent as u64 - kb.rx_frames.min(sent as u64),
            k.tx_datagrams / k.tx_sendmmsg_calls.max(1),
            kb.rx_datagrams / kb.rx_recvmmsg_calls.max(1)
        );
        assert!(!lost, "frames lost: the window never reopened");
    }
    g.finish();
}

/// A with peers B (0) and C (1), both sessions up.
fn hub() -> (Tunnels, Tunnels, Tunnels) {
    let key = |p: u8| PeerSpec {
        public_key: public_from_private(&private(p)),
        endpoint: None,
        inner: inner(p),
        persistent_keepalive: None,
    };
    let mut a = Tunnels::new(TunnelConfig {
        private_key: private(1),
        listen_port: 0,
        local_inner: inner(1),
        underlay_mtu: 1500,
        peers: vec![key(2), key(3)],
    })
    .expect("bind");
    let mut b = node(2, 1);
    let mut c = node(3, 1);
    let lo = |t: &Tunnels| SocketAddr::from(([127, 0, 0, 1], t.local_port().expect("port")));
    a.set_endpoint(0, lo(&b)).expect("peer");
    a.set_endpoint(1, lo(&c)).expect("peer");
    b.set_endpoint(0, lo(&a)).expect("peer");
    c.set_endpoint(0, lo(&a)).expect("peer");
    a.send_frame(0, &frame(60, 0)).expect("send");
    a.send_frame(1, &frame(60, 0)).expect("send");
    let (mut gb, mut gc) = (0, 0);
    let start = Instant::now();
    while gb == 0 || gc == 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "no handshake");
        a.receive(&mut |_, _| {});
        b.receive(&mut |_, _| gb += 1);
        c.receive(&mut |_, _| gc += 1);
    }
    (a, b, c)
}

/// Seals and sends BURST frames of 1400 bytes to `peer` on `io`, in
/// calls of WORKER_BATCH frames: a worker calls `send_frames` once per
/// batch it switched under the node lock (a recvmmsg or TAP batch).
fn send_burst(core: &TunnelCore, io: &mut TunnelIo, peer: u32, f: &[u8]) {
    for _ in 0..BURST / WORKER_BATCH {
        let frames = std::iter::repeat_n((peer, f), WORKER_BATCH);
        black_box(core.send_frames(io, frames));
    }
    io.flush();
}

/// Frames per `send_frames` call in `peers_in_parallel`.
const WORKER_BATCH: usize = 32;

/// What the dataplane workers do for two busy peers: one thread sealing
/// for both, or two threads (two workers) sealing for one peer each at
/// the same time, each on its own `TunnelIo`, under per-peer locks. On two
/// idle cores the second should take about half the time per frame; and
/// two threads sealing for the same peer. (The receivers do not read:
/// sendmmsg costs the same either way.)
fn bench_peers_in_parallel(c: &mut Criterion) {
    let mut g = c.benchmark_group("peers_in_parallel");
    g.throughput(Throughput::Elements(2 * BURST as u64));
    let (a, _b, _c) = hub();
    let core = Arc::clone(a.core());
    let mut io1 = a.new_io(false).expect("io");
    let mut io2 = a.new_io(false).expect("io");
    let f = frame(1400, 7);
    g.bench_function("one_thread_two_peers", |bn| {
        bn.iter(|| {
            send_burst(&core, &mut io1, 0, &f);
            send_burst(&core, &mut io1, 1, &f);
        })
    });
    g.bench_function("two_threads_one_peer_each", |bn| {
        bn.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                s.spawn(|| (0..iters).for_each(|_| send_burst(&core, &mut io1, 0, &f)));
                s.spawn(|| (0..iters).for_each(|_| send_burst(&core, &mut io2, 1, &f)));
            });
            start.elapsed()
        })
    });
    // Both workers sending to one peer: they take turns at its lock,
    // which (for wire order) is held until each batch is sent.
    g.bench_function("two_threads_same_peer", |bn| {
        bn.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                s.spawn(|| (0..iters).for_each(|_| send_burst(&core, &mut io1, 0, &f)));
                s.spawn(|| (0..iters).for_each(|_| send_burst(&core, &mut io2, 0, &f)));
            });
            start.elapsed()
        })
    });
    g.finish();
    let (k1, k2) = (io1.counters(), io2.counters());
    eprintln!(
        "  peers_in_parallel: {} + {} datagrams sent, {} + {} would-block",
        k1.tx_datagrams, k2.tx_datagrams, k1.tx_would_block, k2.tx_would_block
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = bench_seal_open, bench_loopback, bench_two_threads, bench_peers_in_parallel
}
criterion_main!(benches);
