//! Real tunnels over 127.0.0.1 in one process: handshakes, frames both
//! ways, roaming, stats, timers. (`tests_raw.rs`: a bare WireGuard peer,
//! junk and floods.)

mod batch;
mod frag;
mod order;
mod peers;
mod raw;
mod threads;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket as StdUdp};
use std::time::{Duration, Instant};

use super::*;
use crate::keys::public_from_private;

pub(super) fn private(seed: u8) -> [u8; 32] {
    let mut k = [seed; 32];
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    k
}

pub(super) fn inner(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 19, 0, n))
}

pub(super) fn lo(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub(super) fn spec(seed: u8, endpoint: Option<SocketAddr>) -> PeerSpec {
    PeerSpec {
        public_key: public_from_private(&private(seed)),
        endpoint,
        inner: inner(seed),
        persistent_keepalive: None,
    }
}

/// Node `seed` with the given peers (by seed), on a kernel-chosen port.
pub(super) fn node(seed: u8, peers: &[u8]) -> Tunnels {
    node_mtu(seed, peers, 1500)
}

/// The same over an underlay of `mtu` bytes.
pub(super) fn node_mtu(seed: u8, peers: &[u8], mtu: u16) -> Tunnels {
    Tunnels::new(TunnelConfig {
        private_key: private(seed),
        listen_port: 0,
        local_inner: inner(seed),
        underlay_mtu: mtu,
        peers: peers.iter().map(|&p| spec(p, None)).collect(),
    })
    .unwrap()
}

pub(super) fn port(t: &Tunnels) -> u16 {
    t.local_port().unwrap()
}

/// An Ethernet frame of `len` bytes whose content depends on `tag`.
pub(super) fn frame(len: usize, tag: u8) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0x0b, tag]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0x0a, tag]);
    f[12..14].copy_from_slice(&[0x43, 0x05]);
    for (i, b) in f.iter_mut().enumerate().skip(14) {
        *b = (i as u8).wrapping_mul(31).wrapping_add(tag);
    }
    f
}

pub(super) type Got = Vec<(PeerId, Vec<u8>)>;

/// Receives on every node (and ticks) until `done` says so or 3 s pass.
pub(super) fn pump(
    nodes: &mut [&mut Tunnels],
    got: &mut [Got],
    done: &dyn Fn(&[Got]) -> bool,
) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        for (n, g) in nodes.iter_mut().zip(got.iter_mut()) {
            n.receive(&mut |p, f| g.push((p, f.to_vec())));
            n.tick();
        }
        if done(got) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// A and B with each other's endpoint; three frames queued behind the
/// handshake must arrive complete and in order.
pub(super) fn pair() -> (Tunnels, Tunnels) {
    pair_mtu(1500)
}

/// `pair` over an underlay of `mtu` bytes.
pub(super) fn pair_mtu(mtu: u16) -> (Tunnels, Tunnels) {
    let mut a = node_mtu(1, &[2], mtu);
    let mut b = node_mtu(2, &[1], mtu);
    a.set_endpoint(0, lo(port(&b))).unwrap();
    b.set_endpoint(0, lo(port(&a))).unwrap();
    let queued: Got = (60..63).map(|n| (0, frame(n, 0))).collect();
    for (_, f) in &queued {
        a.send_frame(0, f).unwrap();
    }
    let mut got = vec![Got::new(), Got::new()];
    assert!(pump(&mut [&mut a, &mut b], &mut got, &|g| g[1].len() == 3));
    assert_eq!(got[1], queued);
    (a, b)
}

#[test]
fn handshake_then_frames_cross_both_ways() {
    let (mut a, mut b) = pair();
    assert_eq!(a.counters().tx_queued, 3);
    let mut sent_ab = Vec::new();
    let mut sent_ba = Vec::new();
    for (i, len) in (60..=1400).step_by(67).chain([1400]).enumerate() {
        let fa = frame(len, i as u8);
        let fb = frame(len, 100 + i as u8);
        a.send_frame(0, &fa).unwrap();
        b.send_frame(0, &fb).unwrap();
        sent_ab.push((0, fa));
        sent_ba.push((0, fb));
    }
    let mut got = vec![Got::new(), Got::new()];
    let n = sent_ab.len();
    assert!(pump(&mut [&mut a, &mut b], &mut got, &|g| g[0].len() == n
        && g[1].len() == n));
    assert_eq!(got[1], sent_ab, "A -> B byte-identical, in order");
    assert_eq!(got[0], sent_ba, "B -> A byte-identical, in order");

    let sa = &a.peer_stats()[0];
    let sb = &b.peer_stats()[0];
    for s in [sa, sb] {
        assert!(s.session_up);
        assert_eq!(s.handshakes, 1);
        assert!(s.last_handshake.is_some());
        assert!(s.last_rx.is_some());
        assert_eq!(s.handshake_attempts, 0);
    }
    assert_eq!(
        sa.public_key,
        crate::keys::encode_key(&public_from_private(&private(2)))
    );
    assert_eq!(sa.tx_frames, n as u64 + 3);
    assert_eq!(sb.rx_frames, n as u64 + 3);
    assert_eq!(sb.tx_frames, n as u64);
    // Nothing is lost on loopback and every message authenticates, so what
    // one side counts as sent the other counts as received, to the byte.
    assert_eq!(sa.tx_bytes, sb.rx_bytes);
    assert_eq!(sb.tx_bytes, sa.rx_bytes);
    // 1400-byte frame + 24 inner header = 1424 (over 1420: 16-aligned) + 32.
    assert!(sa.tx_bytes > (n as u64) * 60);
    assert_eq!(a.counters().handshakes_completed, 1);
    assert_eq!(b.counters().handshakes_completed, 1);
    assert_eq!(a.counters().handshake_initiations_sent, 1);
    assert!(a.peer_alive(0, Duration::from_secs(5)));
    // SO_RCVBUFFORCE needs CAP_NET_ADMIN; without it rmem_max caps the size.
    if crate::sys::ns::is_root() {
        assert!(a.socket_rcvbuf().unwrap() >= SOCKET_BUFFER_BYTES as usize);
    }
    let json = serde_json::to_value(a.peer_stats()).unwrap();
    assert_eq!(json[0]["endpoint"], format!("127.0.0.1:{}", port(&b)));
    assert!(json[0]["last_handshake"].is_u64());
    assert!(serde_json::to_value(a.counters()).unwrap()["rx_frames"].is_u64());
}

#[test]
fn endpoint_is_learnt_by_a_peer_without_one() {
    let mut a = node(1, &[2]);
    let mut b = node(2, &[1]);
    a.set_endpoint(0, lo(port(&b))).unwrap();
    assert_eq!(b.endpoint(0), None);
    assert_eq!(
        b.send_frame(0, &frame(60, 1)),
        Err(TunnelError::NoEndpoint(0))
    );
    assert_eq!(b.counters().tx_no_endpoint, 1);
    a.send_frame(0, &frame(61, 1)).unwrap();
    let mut got = vec![Got::new(), Got::new()];
    assert!(pump(&mut [&mut a, &mut b], &mut got, &|g| g[1].len() == 1));
    assert_eq!(b.endpoint(0), Some(lo(port(&a))));
    assert_eq!(b.counters().endpoint_changes, 1);
    b.send_frame(0, &frame(62, 2)).unwrap();
    assert!(pump(&mut [&mut a, &mut b], &mut got, &|g| g[0].len() == 1));
    assert_eq!(got[0][0], (0, frame(62, 2)));
}

#[test]
fn roaming_follows_the_source_of_authenticated_packets() {
    let (mut a, mut b) = pair();
    let old = port(&b);
    b.rebind(0).unwrap();
    let new = port(&b);
    assert_ne!(old, new);
    b.send_frame(0, &frame(100, 7)).unwrap();
    let mut got = vec![Got::new(), Got::new()];
    assert!(pump(&mut [&mut a, &mut b], &mut got, &|g| g[0].len() == 1));
    assert_eq!(a.endpoint(0), Some(lo(new)));
    assert_eq!(a.counters().endpoint_changes, 1);
    // A's answer reaches B's new socket.
    a.send_frame(0, &frame(101, 8)).unwrap();
    assert!(pump(&mut [&mut a, &mut b], &mut got, &|g| g[1].len() == 1));
    assert_eq!(got[1][0], (0, frame(101, 8)));
}

#[test]
fn three_nodes_demultiplex_by_index() {
    let mut a = node(1, &[2, 3]);
    let mut b = node(2, &[1, 3]);
    let mut c = node(3, &[1, 2]);
    let (pa, pb, pc) = (port(&a), port(&b), port(&c));
    a.set_endpoint(0, lo(pb)).unwrap();
    a.set_endpoint(1, lo(pc)).unwrap();
    b.set_endpoint(0, lo(pa)).unwrap();
    b.set_endpoint(1, lo(pc)).unwrap();
    c.set_endpoint(0, lo(pa)).unwrap();
    c.set_endpoint(1, lo(pb)).unwrap();
    // Every node sends to both others at once: handshakes cross.
    for (t, tag) in [(&mut a, 10u8), (&mut b, 20), (&mut c, 30)] {
        t.send_frame(0, &frame(70, tag)).unwrap();
        t.send_frame(1, &frame(71, tag + 1)).unwrap();
    }
    let mut got = vec![Got::new(), Got::new(), Got::new()];
    assert!(pump(&mut [&mut a, &mut b, &mut c], &mut got, &|g| g
        .iter()
        .all(|x| x.len() == 2)));
    for g in got.iter_mut() {
        g.sort();
    }
    // A's peer 0 is B (sent tag 20 to its peer 0 = A), peer 1 is C (tag 30).
    assert_eq!(got[0], vec![(0, frame(70, 20)), (1, frame(70, 30))]);
    assert_eq!(got[1], vec![(0, frame(70, 10)), (1, frame(71, 31))]);
    assert_eq!(got[2], vec![(0, frame(71, 11)), (1, frame(71, 21))]);
    for t in [&a, &b, &c] {
        assert_eq!(t.counters().rx_unknown_index, 0);
        assert!(t.peer_stats().iter().all(|s| s.session_up));
    }
}

/// A peer with persistent_keepalive = 1 sends keepalives on an idle
/// session, driven by tick(); the other side authenticates and counts them.
#[test]
fn persistent_keepalive_is_sent_by_the_timers() {
    let mut a = Tunnels::new(TunnelConfig {
        private_key: private(1),
        listen_port: 0,
        local_inner: inner(1),
        underlay_mtu: 1500,
        peers: vec![PeerSpec {
            persistent_keepalive: Some(1),
            ..spec(2, None)
        }],
    })
    .unwrap();
    let mut b = node(2, &[1]);
    a.set_endpoint(0, lo(port(&b))).unwrap();
    assert_eq!(a.peer_stats()[0].persistent_keepalive, Some(1));
    a.send_frame(0, &frame(60, 0)).unwrap();
    let mut got = vec![Got::new(), Got::new()];
    assert!(pump(&mut [&mut a, &mut b], &mut got, &|g| g[1].len() == 1));
    let before = b.counters().rx_keepalives;
    let t0 = Instant::now();
    let mut got = vec![Got::new(), Got::new()];
    // Nothing ends this pump early: it idles its full 3 s.
    assert!(!pump(&mut [&mut a, &mut b], &mut got, &|_| false));
    // At least two persistent keepalives in that time.
    assert!(t0.elapsed() >= Duration::from_secs(3));
    assert!(
        b.counters().rx_keepalives >= before + 2,
        "{:?}",
        b.counters()
    );
    assert!(
        got.iter().all(|g| g.is_empty()),
        "keepalives carry no frame"
    );
    assert!(b.peer_alive(0, Duration::from_millis(1500)));
}

/// B restarts (new process state, new port, same key): its new handshake
/// replaces the old session at A, A follows it to the new port, and
/// traffic flows both ways again.
#[test]
fn restarted_peer_is_accepted() {
    let (mut a, b) = pair();
    drop(b);
    let mut b = node(2, &[1]);
    b.set_endpoint(0, lo(port(&a))).unwrap();
    b.send_frame(0, &frame(80, 1)).unwrap();
    let mut got = vec![Got::new(), Got::new()];
    assert!(pump(&mut [&mut a, &mut b], &mut got, &|g| g[0].len() == 1));
    assert_eq!(got[0][0], (0, frame(80, 1)));
    assert_eq!(a.endpoint(0), Some(lo(port(&b))));
    assert_eq!(a.peer_stats()[0].handshakes, 2);
    a.send_frame(0, &frame(81, 2)).unwrap();
    assert!(pump(&mut [&mut a, &mut b], &mut got, &|g| g[1].len() == 1));
    assert_eq!(got[1][0], (0, frame(81, 2)));
}

/// Nobody answers: boringtun retries the initiation after REKEY_TIMEOUT
/// (5 s), and the attempt count (the dead-peer signal) grows.
#[test]
fn handshake_is_retried_by_the_timers() {
    let mut a = node(1, &[2]);
    let silent = StdUdp::bind("127.0.0.1:0").unwrap();
    a.set_endpoint(0, silent.local_addr().unwrap()).unwrap();
    a.send_frame(0, &frame(60, 0)).unwrap();
    assert_eq!(a.handshake_attempts(0), 1);
    let start = Instant::now();
    while a.handshake_attempts(0) < 2 && start.elapsed() < Duration::from_secs(8) {
        a.tick();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(a.handshake_attempts(0), 2);
    assert!(start.elapsed() >= Duration::from_secs(4));
    let mut d = [0u8; 256];
    let (n, _) = silent.recv_from(&mut d).unwrap();
    assert_eq!((n, d[0]), (148, 1), "an initiation reached the silent peer");
}

#[test]
fn unreachable_peer_counts_attempts() {
    let mut a = node(1, &[2]);
    let gone = StdUdp::bind("127.0.0.1:0").unwrap();
    let gone_port = gone.local_addr().unwrap().port();
    drop(gone);
    a.set_endpoint(0, lo(gone_port)).unwrap();
    a.send_frame(0, &frame(60, 0)).unwrap();
    a.send_frame(0, &frame(60, 1)).unwrap();
    assert_eq!(a.counters().tx_queued, 2);
    assert_eq!(a.handshake_attempts(0), 1);
    assert!(!a.session_up(0));
    assert!(!a.peer_alive(0, Duration::from_secs(60)));
    assert_eq!(a.last_rx(0), None);
    assert_eq!(
        a.send_frame(5, &frame(60, 0)),
        Err(TunnelError::UnknownPeer(5))
    );
    assert_eq!(
        a.send_frame(0, &[0u8; 13]),
        Err(TunnelError::FrameTooShort(13))
    );
    let big = vec![0u8; MAX_FRAME_LEN + 1];
    assert_eq!(
        a.send_frame(0, &big),
        Err(TunnelError::FrameTooLong(MAX_FRAME_LEN + 1))
    );
}

#[test]
fn config_is_checked() {
    let mixed = TunnelConfig {
        private_key: private(1),
        listen_port: 0,
        local_inner: inner(1),
        underlay_mtu: 1500,
        peers: vec![PeerSpec {
            inner: "fd00::2".parse().unwrap(),
            ..spec(2, None)
        }],
    };
    assert!(Tunnels::new(mixed).is_err());
    let dup = TunnelConfig {
        private_key: private(1),
        listen_port: 0,
        local_inner: inner(1),
        underlay_mtu: 1500,
        peers: vec![spec(2, None), spec(2, None)],
    };
    assert!(Tunnels::new(dup).is_err());
}

/// IPv6 inner addresses and an IPv6 (loopback ::1) underlay.
#[test]
fn ipv6_inner_and_underlay() {
    let v6 = |n: u8| -> IpAddr { format!("fd00::{n}").parse().unwrap() };
    let mk = |me: u8, other: u8| {
        Tunnels::new(TunnelConfig {
            private_key: private(me),
            listen_port: 0,
            local_inner: v6(me),
            underlay_mtu: 1500,
            peers: vec![PeerSpec {
                inner: v6(other),
                ..spec(other, None)
            }],
        })
        .unwrap()
    };
    let mut a = mk(1, 2);
    let mut b = mk(2, 1);
    let host_v6 = std::fs::read_to_string("/proc/net/if_inet6").is_ok_and(|s| s.contains("lo"));
    if !host_v6 {
        return; // no IPv6 loopback on this host: the IPv4 tests cover the rest
    }
    assert!(a.dual_stack());
    a.set_endpoint(0, format!("[::1]:{}", port(&b)).parse().unwrap())
        .unwrap();
    a.send_frame(0, &frame(500, 9)).unwrap();
    let mut got = vec![Got::new(), Got::new()];
    assert!(pump(&mut [&mut a, &mut b], &mut got, &|g| g[1].len() == 1));
    assert_eq!(got[1][0], (0, frame(500, 9)));
    assert_eq!(
        b.endpoint(0),
        Some(format!("[::1]:{}", port(&a)).parse().unwrap())
    );
}
