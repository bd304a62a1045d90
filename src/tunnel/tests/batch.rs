//! Batched I/O over real sockets: thousands of frames through sendmmsg /
//! GSO / recvmmsg / GRO must arrive byte-identical and in order per peer;
//! a kernel that refuses GSO must cost nothing but the fallback; batching
//! off must really mean one datagram per system call.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{frame, lo, node, pair, pair_mtu, port, Got};
use crate::tunnel::*;

/// Frame sizes with runs of equal sizes (GSO material: bulk TCP looks like
/// this) and odd sizes in between (OGMs, ACKs, ARP).
fn size_of_frame(i: usize) -> usize {
    match i % 40 {
        0..=23 => 1400,
        24 => 60,
        25..=31 => 590,
        32 => 1399,
        33 => 14,
        _ => 60 + (i * 37) % 1340,
    }
}

/// Receives on every node until each has `want[n]` frames or 5 s pass.
fn drain(nodes: &mut [&mut Tunnels], got: &mut [Got], want: &[usize]) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        for (n, g) in nodes.iter_mut().zip(got.iter_mut()) {
            n.receive(&mut |p, f| g.push((p, f.to_vec())));
        }
        if got.iter().zip(want).all(|(g, &w)| g.len() >= w) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A talks to B and C, B and C answer; `rounds` x `per_round` frames per
/// direction, the receivers drained between rounds (a flood with no flow
/// control would only measure the receive buffer).
fn mesh_of_three(batching: bool, rounds: usize, per_round: usize) -> [Tunnels; 3] {
    let mut a = node(1, &[2, 3]);
    let mut b = node(2, &[1]);
    let mut c = node(3, &[1]);
    for t in [&mut a, &mut b, &mut c] {
        t.set_batching(batching);
    }
    a.set_endpoint(0, lo(port(&b))).unwrap();
    a.set_endpoint(1, lo(port(&c))).unwrap();
    b.set_endpoint(0, lo(port(&a))).unwrap();
    c.set_endpoint(0, lo(port(&a))).unwrap();
    let (mut to_b, mut to_c, mut b_to_a, mut c_to_a) =
        (Got::new(), Got::new(), Got::new(), Got::new());
    let mut got = vec![Got::new(), Got::new(), Got::new()];
    for r in 0..rounds {
        for k in 0..per_round {
            let i = r * per_round + k;
            let f = frame(size_of_frame(i), i as u8);
            // Two peers interleaved on A: runs still form per endpoint.
            let peer = ((i / 8) % 2) as PeerId;
            a.send_frame(peer, &f).unwrap();
            if peer == 0 {
                to_b.push((0, f))
            } else {
                to_c.push((0, f))
            }
            let g = frame(size_of_frame(i + 7), !(i as u8));
            if i % 2 == 0 {
                b.send_frame(0, &g).unwrap();
                b_to_a.push((0, g));
            } else {
                c.send_frame(0, &g).unwrap();
                c_to_a.push((1, g));
            }
        }
        for t in [&mut a, &mut b, &mut c] {
            t.flush();
        }
        let want = [b_to_a.len() + c_to_a.len(), to_b.len(), to_c.len()];
        drain(&mut [&mut a, &mut b, &mut c], &mut got, &want);
        assert_eq!(got[0].len(), want[0], "round {r}: A got everything");
    }
    assert_eq!(got[1], to_b, "A -> B byte-identical, in order");
    assert_eq!(got[2], to_c, "A -> C byte-identical, in order");
    let (from_b, from_c): (Got, Got) = got[0].iter().cloned().partition(|(p, _)| *p == 0);
    assert_eq!(from_b, b_to_a, "B -> A byte-identical, in order");
    assert_eq!(from_c, c_to_a, "C -> A byte-identical, in order");
    for t in [&a, &b, &c] {
        let k = t.counters();
        assert_eq!(k.tx_would_block + k.tx_socket_errors, 0, "{k:?}");
        assert_eq!(k.rx_oversize + k.rx_junk + k.rx_replayed, 0, "{k:?}");
    }
    [a, b, c]
}

#[test]
fn thousands_of_mixed_frames_batched() {
    let [a, b, _c] = mesh_of_three(true, 25, 160);
    let k = a.counters();
    assert_eq!(k.tx_frames, 4000);
    // A's 160 frames per round went in batches of up to TX_BATCH.
    assert!(k.tx_full_batch_flushes >= 25 * 2, "{k:?}");
    assert!(k.tx_most_messages_per_call as usize <= TX_BATCH);
    assert!(
        k.tx_datagrams >= 4 * k.tx_sendmmsg_calls,
        "batched: {} datagrams in {} calls",
        k.tx_datagrams,
        k.tx_sendmmsg_calls
    );
    if a.gso_active() {
        // 24-frame runs of 1400 bytes to one endpoint (8 at a time per peer
        // here) must have gone as GSO messages, and loopback hands a GSO
        // message to a GRO socket whole.
        assert!(k.tx_gso_messages > 0 && k.tx_gso_segments >= 2 * k.tx_gso_messages);
        assert!(k.tx_messages < k.tx_datagrams);
        if b.gro_active() {
            let kb = b.counters();
            assert!(kb.rx_gro_trains > 0, "{kb:?}");
            assert!(kb.rx_gro_segments >= 2 * kb.rx_gro_trains);
        }
    } else {
        eprintln!("kernel without UDP GSO: plain sendmmsg only");
    }
    let kb = b.counters();
    assert!(kb.rx_datagrams > kb.rx_recvmmsg_calls, "{kb:?}");
    assert_eq!(k.tx_gso_fallbacks, 0);
}

#[test]
fn batching_off_is_one_datagram_per_call() {
    let [a, b, _c] = mesh_of_three(false, 4, 100);
    assert!(!a.gso_active() && !b.gro_active());
    for t in [&a, &b] {
        let k = t.counters();
        assert_eq!(k.tx_sendmmsg_calls, k.tx_datagrams, "{k:?}");
        assert_eq!(k.tx_gso_messages, 0);
        assert_eq!(k.rx_recvmmsg_calls, k.rx_datagrams, "{k:?}");
        assert_eq!(k.rx_gro_trains, 0);
        assert_eq!(k.tx_most_messages_per_call, 1);
    }
}

/// Nothing is sent before flush (or a full batch), everything after.
#[test]
fn send_frame_queues_until_flush() {
    let (mut a, mut b) = pair();
    let sent_before = a.counters().tx_datagrams;
    let frames: Got = (0..10).map(|i| (0, frame(100 + i, i as u8))).collect();
    for (_, f) in &frames {
        a.send_frame(0, f).unwrap();
    }
    assert_eq!(a.queued(), 10);
    assert_eq!(a.counters().tx_datagrams, sent_before);
    a.flush();
    assert_eq!(a.queued(), 0);
    assert_eq!(a.counters().tx_datagrams, sent_before + 10);
    let mut got = vec![Got::new()];
    drain(&mut [&mut b], &mut got, &[10]);
    assert_eq!(got[0], frames);
    // A full batch flushes by itself: TX_BATCH + 1 frames leave one queued.
    for i in 0..=TX_BATCH {
        a.send_frame(0, &frame(200, i as u8)).unwrap();
    }
    assert_eq!(a.queued(), 1);
    assert_eq!(a.counters().tx_full_batch_flushes, 1);
}

/// Runs `f` on a thread inside a fresh network namespace (gone when the
/// thread ends). None when we may not create one (not root).
fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    std::thread::spawn(move || {
        if crate::sys::ns::unshare_net().is_err() {
            return None;
        }
        Some(f())
    })
    .join()
    .unwrap()
}

fn ip(args: &[&str]) {
    let st = std::process::Command::new("ip")
        .args(args)
        .status()
        .unwrap();
    assert!(st.success(), "ip {args:?}");
}

/// Sends `frames` A -> B twice (two flushes) and checks both bursts arrive
/// complete and in order.
fn two_bursts(a: &mut Tunnels, b: &mut Tunnels, frames: &Got) {
    for _ in 0..2 {
        for (_, f) in frames {
            a.send_frame(0, f).unwrap();
        }
        a.flush();
        let mut got = vec![Got::new()];
        drain(&mut [b], &mut got, &[frames.len()]);
        assert_eq!(got[0].len(), frames.len(), "{:?}", a.counters());
        assert_eq!(&got[0], frames, "all frames, in order");
    }
}

/// IP fragments this thread's network namespace created (/proc/net would
/// be the process's namespace, not the thread's).
pub(super) fn frag_creates() -> u64 {
    let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap();
    let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
    let (names, vals) = (ip.next().unwrap(), ip.next().unwrap());
    names
        .split_whitespace()
        .zip(vals.split_whitespace())
        .find(|(n, _)| *n == "FragCreates")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap()
}

/// A path narrower than the configured underlay MTU: in a netns whose
/// loopback has MTU 1280, nodes told the underlay is 1500 send 1400-byte
/// frames as 1452-byte datagrams. The kernel refuses the GSO runs with
/// EMSGSIZE, then each datagram alone (the socket sets DF): all dropped and
/// counted, none fragmented by the underlay, GSO still on for small frames.
#[test]
fn over_the_path_mtu_is_dropped_not_fragmented() {
    let r = in_netns(|| {
        ip(&["link", "set", "lo", "up", "mtu", "1280"]);
        let frags_before = frag_creates();
        let (mut a, mut b) = pair();
        if !a.gso_active() {
            return None;
        }
        for i in 0..150 {
            a.send_frame(0, &frame(1400, i as u8)).unwrap();
        }
        a.flush();
        let mut got = Got::new();
        std::thread::sleep(Duration::from_millis(50));
        b.receive(&mut |p, f| got.push((p, f.to_vec())));
        assert!(got.is_empty(), "nothing over the path MTU arrives");
        let small: Got = (0..40).map(|i| (0, frame(500, i as u8))).collect();
        two_bursts(&mut a, &mut b, &small);
        Some((
            a.counters().clone(),
            a.gso_active(),
            frag_creates() - frags_before,
        ))
    });
    let Some(Some((k, gso_after, frags))) = r else {
        eprintln!("no netns (not root) or no UDP GSO: not testable here");
        return;
    };
    // 150 datagrams = flushes of 64, 64 and 22; a run stops under 64 KiB
    // (44 x 1452 bytes): runs of 44, 20, 44, 20, 22, each refused.
    assert_eq!(k.tx_gso_too_big, 5, "{k:?}");
    assert_eq!(k.tx_too_big, 150, "{k:?}");
    assert_eq!(frags, 0, "the underlay fragmented");
    assert_eq!(k.tx_gso_fallbacks, 0);
    assert!(gso_after);
    assert_eq!(k.tx_gso_segments, 80 + 3, "{k:?}");
    assert_eq!(k.tx_socket_errors + k.tx_would_block, 0);
}

/// The same path with the MTU configured right: 1400- and 9000-byte frames
/// leave as inner IP fragments in datagrams of at most 1280 bytes, equal
/// sizes but the last (GSO runs), and arrive whole and in order.
#[test]
fn inner_fragments_fit_a_narrow_path() {
    let r = in_netns(|| {
        ip(&["link", "set", "lo", "up", "mtu", "1280"]);
        let frags_before = frag_creates();
        let (mut a, mut b) = pair_mtu(1280);
        let frames: Got = (0..150)
            .map(|i| (0, frame(if i % 10 == 0 { 9000 } else { 1400 }, i as u8)))
            .collect();
        two_bursts(&mut a, &mut b, &frames);
        Some((
            a.counters().clone(),
            b.counters().clone(),
            frag_creates() - frags_before,
        ))
    });
    let Some(Some((ka, kb, frags))) = r else {
        eprintln!("no netns (not root): not testable here");
        return;
    };
    assert_eq!(frags, 0, "the underlay fragmented");
    assert_eq!(
        ka.tx_too_big + ka.tx_socket_errors + ka.tx_would_block,
        0,
        "{ka:?}"
    );
    // Inner MTU 1280 - 60 = 1220: 1200 data bytes a piece; a 1400-byte
    // frame is 1424 inner bytes (2 pieces), a 9000-byte one 9024 (8).
    assert_eq!(ka.tx_fragmented_frames, 300);
    assert_eq!(ka.tx_inner_fragments, 2 * (135 * 2 + 15 * 8));
    assert_eq!(ka.tx_frames, 3 + 300);
    assert_eq!(kb.rx_reassembled, 300, "{kb:?}");
    assert_eq!(kb.rx_inner_fragments, ka.tx_inner_fragments);
    // Every datagram fits the path: at most 1280 - 28 bytes of UDP payload.
    assert!(kb.rx_bytes <= kb.rx_datagrams * 1252, "{kb:?}");
    if ka.tx_gso_messages > 0 {
        assert!(ka.tx_gso_segments >= 2 * ka.tx_gso_messages);
    }
}

fn netns_fd() -> std::fs::File {
    std::fs::File::open("/proc/thread-self/ns/net").unwrap()
}

fn setns(f: &std::fs::File) {
    crate::sys::ns::setns_net(f).unwrap();
}

/// Node A (198.18.0.1) and node B (198.18.0.2) in two fresh namespaces
/// joined by a veth pair.
fn veth_pair() -> Option<(Tunnels, Tunnels)> {
    in_netns(|| {
        let ns_b = netns_fd();
        ip(&["link", "set", "lo", "up"]);
        let b = node(2, &[1]);
        crate::sys::ns::unshare_net().unwrap();
        let ns_b_path = format!("/proc/{}/fd/{}", std::process::id(), {
            use std::os::fd::AsRawFd;
            ns_b.as_raw_fd()
        });
        ip(&["link", "set", "lo", "up"]);
        ip(&[
            "link", "add", "mwgsoa", "type", "veth", "peer", "name", "mwgsob", "netns", &ns_b_path,
        ]);
        ip(&["addr", "add", "198.18.0.1/24", "dev", "mwgsoa"]);
        ip(&["link", "set", "mwgsoa", "up"]);
        let a = node(1, &[2]);
        setns(&ns_b);
        ip(&["addr", "add", "198.18.0.2/24", "dev", "mwgsob"]);
        ip(&["link", "set", "mwgsob", "up"]);
        let a_addr = SocketAddr::from(([198, 18, 0, 1], port(&a)));
        let b_addr = SocketAddr::from(([198, 18, 0, 2], port(&b)));
        a.set_endpoint(0, b_addr).unwrap();
        b.set_endpoint(0, a_addr).unwrap();
        // The namespaces live on in the sockets; the veth pair goes with
        // them when the nodes are dropped.
        (a, b)
    })
}

/// GSO across a real device (veth between two namespaces): the kernel
/// segments at the device and the receiver gets plain datagrams, or, on
/// kernels that refuse it there, the fallback runs. Either way every frame
/// arrives, in order.
#[test]
fn gso_through_a_veth_between_namespaces() {
    let Some((mut a, mut b)) = veth_pair() else {
        eprintln!("no netns (not root): not testable here");
        return;
    };
    handshake(&mut a, &mut b);
    let frames: Got = (0..150).map(|i| (0, frame(1200, i as u8))).collect();
    two_bursts(&mut a, &mut b, &frames);
    let k = a.counters();
    assert_eq!(k.tx_socket_errors + k.tx_would_block, 0, "{k:?}");
    if a.gso_active() {
        assert!(k.tx_gso_messages > 0 && k.tx_gso_segments >= 300, "{k:?}");
    } else {
        assert!(k.tx_gso_fallbacks <= 1 && k.tx_gso_messages == 0);
    }
}

/// One frame A -> B, so that a session exists.
fn handshake(a: &mut Tunnels, b: &mut Tunnels) {
    let hello: Got = vec![(0, frame(60, 0))];
    a.send_frame(0, &hello[0].1).unwrap();
    let mut got = [Got::new(), Got::new()];
    let start = Instant::now();
    while got[1].is_empty() && start.elapsed() < Duration::from_secs(5) {
        a.receive(&mut |p, f| got[0].push((p, f.to_vec())));
        b.receive(&mut |p, f| got[1].push((p, f.to_vec())));
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(got[1], hello, "handshake");
}

/// A socket with UDP checksums off (SO_NO_CHECK) cannot do GSO: the kernel
/// says EINVAL (EIO where the route goes through xfrm, or on kernels
/// before 6.x, where missing checksum offload did). The socket must
/// remember it (GSO off for good) and resend the same datagrams plainly,
/// none lost, none reordered.
#[test]
fn gso_refused_by_the_kernel_falls_back() {
    let (mut a, mut b) = pair();
    if !a.gso_active() {
        eprintln!("kernel without UDP GSO: not testable here");
        return;
    }
    let fd = a.io.net.socket.fd();
    crate::sys::sockopt::set_int(fd, libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).unwrap();
    let frames: Got = (0..150).map(|i| (0, frame(1200, i as u8))).collect();
    two_bursts(&mut a, &mut b, &frames);
    let k = a.counters();
    assert_eq!(k.tx_gso_fallbacks, 1, "{k:?}");
    assert!(!a.gso_active());
    // Only the three frames queued behind the handshake went as GSO.
    assert_eq!(k.tx_gso_segments, 3, "{k:?}");
    assert_eq!(k.tx_socket_errors + k.tx_would_block, 0);
    assert_eq!(k.tx_frames, 303);
}

/// The dataplane may hand a Tunnels to a worker thread: the batches hold
/// no pointers (sendmmsg/recvmmsg headers live on the stack per call).
#[test]
fn tunnels_is_send() {
    fn is_send<T: Send>() {}
    is_send::<Tunnels>();
}

/// One `receive` stops reading after MAX_DATAGRAMS_PER_CALL datagrams
/// (plus at most one recvmmsg batch), however long the GRO trains are; the
/// rest waits in the socket for the next call, nothing lost.
#[test]
fn one_receive_is_bounded() {
    let (mut a, mut b) = pair();
    let n = 3000;
    let frames: Got = (0..n).map(|i| (0, frame(100, i as u8))).collect();
    for (_, f) in &frames {
        a.send_frame(0, f).unwrap();
    }
    a.flush();
    std::thread::sleep(Duration::from_millis(50));
    let mut got = Got::new();
    let first = b.receive(&mut |p, f| got.push((p, f.to_vec())));
    assert!(first >= MAX_DATAGRAMS_PER_CALL.min(n), "{first}");
    assert!(first <= MAX_DATAGRAMS_PER_CALL + RX_BATCH * 128, "{first}");
    assert!(first < n, "3000 datagrams cannot fit one call");
    let mut rest = vec![got];
    drain(&mut [&mut b], &mut rest, &[n]);
    assert_eq!(rest[0], frames);
}
