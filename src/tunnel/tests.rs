//! Real tunnels over 127.0.0.1 in one process: handshakes, frames both
//! ways, roaming, stats, hostile datagrams. A bare boringtun `Tunn` on a std
//! socket stands in for a kernel node where the test needs to put exact
//! inner bytes (the kernel capture) on the wire.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket as StdUdp};
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};

use super::*;
use crate::keys::public_from_private;

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

fn lo(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn spec(seed: u8, endpoint: Option<SocketAddr>) -> PeerSpec {
    PeerSpec {
        public_key: public_from_private(&private(seed)),
        endpoint,
        inner: inner(seed),
        persistent_keepalive: None,
    }
}

/// Node `seed` with the given peers (by seed), on a kernel-chosen port.
fn node(seed: u8, peers: &[u8]) -> Tunnels {
    Tunnels::new(TunnelConfig {
        private_key: private(seed),
        listen_port: 0,
        local_inner: inner(seed),
        peers: peers.iter().map(|&p| spec(p, None)).collect(),
    })
    .unwrap()
}

fn port(t: &Tunnels) -> u16 {
    t.local_port().unwrap()
}

/// An Ethernet frame of `len` bytes whose content depends on `tag`.
fn frame(len: usize, tag: u8) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0x0b, tag]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0x0a, tag]);
    f[12..14].copy_from_slice(&[0x43, 0x05]);
    for (i, b) in f.iter_mut().enumerate().skip(14) {
        *b = (i as u8).wrapping_mul(31).wrapping_add(tag);
    }
    f
}

type Got = Vec<(PeerId, Vec<u8>)>;

/// Receives on every node (and ticks) until `done` says so or 3 s pass.
fn pump(nodes: &mut [&mut Tunnels], got: &mut [Got], done: &dyn Fn(&[Got]) -> bool) -> bool {
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

/// A and B with each other's endpoint, handshake done by a first frame.
fn pair() -> (Tunnels, Tunnels) {
    let mut a = node(1, &[2]);
    let mut b = node(2, &[1]);
    a.set_endpoint(0, lo(port(&b))).unwrap();
    b.set_endpoint(0, lo(port(&a))).unwrap();
    a.send_frame(0, &frame(60, 0)).unwrap();
    let mut got = vec![Got::new(), Got::new()];
    assert!(pump(&mut [&mut a, &mut b], &mut got, &|g| g[1].len() == 1));
    assert_eq!(got[1][0], (0, frame(60, 0)));
    (a, b)
}

#[test]
fn handshake_then_frames_cross_both_ways() {
    let (mut a, mut b) = pair();
    assert_eq!(a.counters().tx_queued, 1);
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
    assert_eq!(sa.tx_frames, n as u64 + 1);
    assert_eq!(sb.rx_frames, n as u64 + 1);
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
    assert!(a.socket_rcvbuf().unwrap() >= 1 << 20);
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

/// A bare boringtun peer on a std socket: the test decides every inner byte.
struct RawPeer {
    tunn: Tunn,
    sock: StdUdp,
    to: SocketAddr,
    buf: Vec<u8>,
}

impl RawPeer {
    fn new(seed: u8, their_public: [u8; 32], to: SocketAddr) -> RawPeer {
        let sock = StdUdp::bind("127.0.0.1:0").unwrap();
        sock.set_nonblocking(true).unwrap();
        let tunn = Tunn::new(
            StaticSecret::from(private(seed)),
            PublicKey::from(their_public),
            None,
            None,
            0x42,
            None,
        );
        RawPeer {
            tunn,
            sock,
            to,
            buf: vec![0u8; 65536],
        }
    }

    fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    fn send(&mut self, plaintext: &[u8]) {
        if let TunnResult::WriteToNetwork(m) = self.tunn.encapsulate(plaintext, &mut self.buf) {
            self.sock.send_to(m, self.to).unwrap();
        }
    }

    /// Handles what arrived; returns decrypted inner packets.
    fn poll(&mut self) -> Vec<Vec<u8>> {
        let mut inner = Vec::new();
        let mut dgram = [0u8; 2048];
        while let Ok((n, _)) = self.sock.recv_from(&mut dgram) {
            match self.tunn.decapsulate(None, &dgram[..n], &mut self.buf) {
                TunnResult::WriteToNetwork(m) => {
                    self.sock.send_to(m, self.to).unwrap();
                    while let TunnResult::WriteToNetwork(m) =
                        self.tunn.decapsulate(None, &[], &mut self.buf)
                    {
                        self.sock.send_to(m, self.to).unwrap();
                    }
                }
                TunnResult::WriteToTunnelV4(p, _) | TunnResult::WriteToTunnelV6(p, _) => {
                    inner.push(p.to_vec())
                }
                _ => {}
            }
        }
        inner
    }
}

/// Runs B and the raw peer until `done` or 3 s.
fn pump_raw(
    b: &mut Tunnels,
    raw: &mut RawPeer,
    got: &mut Got,
    raw_got: &mut Vec<Vec<u8>>,
    done: &dyn Fn(&Got, &[Vec<u8>]) -> bool,
) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        b.receive(&mut |p, f| got.push((p, f.to_vec())));
        b.tick();
        raw_got.extend(raw.poll());
        if done(got, raw_got) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// The raw peer plays kernel node A (198.19.0.1) and sends the captured
/// kernel packets verbatim; our node B (198.19.0.2) must deliver exactly
/// their Ethernet frames, and B's own packets must carry the kernel framing.
#[test]
fn kernel_captured_packets_from_a_raw_wireguard_peer() {
    let mut b = node(2, &[1]);
    let mut raw = RawPeer::new(1, public_from_private(&private(2)), lo(port(&b)));
    for cap in captures::ALL {
        raw.send(cap);
    }
    let mut got = Got::new();
    let mut raw_got = Vec::new();
    let n = captures::ALL.len();
    assert!(pump_raw(
        &mut b,
        &mut raw,
        &mut got,
        &mut raw_got,
        &|g, _| g.len() == n
    ));
    for (g, cap) in got.iter().zip(captures::ALL) {
        assert_eq!(g, &(0, cap[24..].to_vec()));
    }
    assert_eq!(b.endpoint(0), Some(lo(raw.port())));

    // B -> A: what comes out of the decryption is the kernel's framing.
    let f = captures::OGM[24..].to_vec();
    b.send_frame(0, &f).unwrap();
    b.send_frame(0, &f).unwrap();
    assert!(pump_raw(
        &mut b,
        &mut raw,
        &mut got,
        &mut raw_got,
        &|_, r| r.len() == 2
    ));
    for (i, p) in raw_got.iter().enumerate() {
        // Same bytes as kernel B -> A would send, except the IP ident.
        let mut expect = captures::OGM.to_vec();
        expect[12..16].copy_from_slice(&[198, 19, 0, 2]);
        expect[16..20].copy_from_slice(&[198, 19, 0, 1]);
        expect[4..6].copy_from_slice(&p[4..6]);
        let mut ip = crate::wire::ipv4::Packet::new_unchecked(&mut expect[..]);
        ip.fill_checksum();
        assert_eq!(p, &expect, "packet {i}");
    }
    // The kernel counts the ident up per packet; so do we.
    let id0 = u16::from_be_bytes([raw_got[0][4], raw_got[0][5]]);
    let id1 = u16::from_be_bytes([raw_got[1][4], raw_got[1][5]]);
    assert_eq!(id1, id0.wrapping_add(1));
}

/// Inner packets that a kernel gretap would not accept from this peer are
/// dropped and counted by reason; the session keeps working.
#[test]
fn foreign_inner_packets_are_dropped_and_counted() {
    let mut b = node(2, &[1]);
    let mut raw = RawPeer::new(1, public_from_private(&private(2)), lo(port(&b)));
    let refill =
        |v: &mut Vec<u8>| crate::wire::ipv4::Packet::new_unchecked(&mut v[..]).fill_checksum();
    let mut spoofed = captures::OGM.to_vec();
    spoofed[15] = 99; // 198.19.0.99: not this peer's inner address
    refill(&mut spoofed);
    let mut icmp = captures::BATMAN_ICMP.to_vec();
    icmp[9] = 1; // ICMP (e.g. protocol unreachable), not GRE
    refill(&mut icmp);
    let mut to_other = captures::BCAST.to_vec();
    to_other[19] = 7;
    refill(&mut to_other);
    let mut not_teb = captures::UNICAST_ICMP.to_vec();
    not_teb[22..24].copy_from_slice(&[0x08, 0x00]);
    raw.send(&spoofed);
    raw.send(&icmp);
    raw.send(&to_other);
    raw.send(&not_teb);
    raw.send(&captures::UNICAST_4ADDR); // the one good packet, last
    let mut got = Got::new();
    let mut raw_got = Vec::new();
    assert!(pump_raw(
        &mut b,
        &mut raw,
        &mut got,
        &mut raw_got,
        &|g, _| g.len() == 1
    ));
    assert_eq!(got, vec![(0, captures::UNICAST_4ADDR[24..].to_vec())]);
    let c = b.counters();
    assert_eq!(c.inner_wrong_source, 1);
    assert_eq!(c.inner_not_gre, 1);
    assert_eq!(c.inner_wrong_destination, 1);
    assert_eq!(c.inner_not_teb, 1);
    assert_eq!(c.rx_frames, 1);
}

#[test]
fn junk_datagrams_are_counted_not_fatal() {
    let (mut a, mut b) = pair();
    let junk = StdUdp::bind("127.0.0.1:0").unwrap();
    let to = lo(port(&a));
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    // pair() left the handshake response in A's count.
    let mut sent = a.counters().rx_datagrams;
    for i in 0..400usize {
        let len = (next() % 200) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Give a share of them WireGuard's shapes so deeper checks run.
        match i % 4 {
            1 if len >= 32 => d[..4].copy_from_slice(&[4, 0, 0, 0]),
            2 => d = [&[1u8, 0, 0, 0][..], &[0x5a; 144]].concat(),
            3 => d = [&[2u8, 0, 0, 0][..], &[0xa5; 88]].concat(),
            _ => {}
        }
        junk.send_to(&d, to).unwrap();
        sent += 1;
        if i % 50 == 0 {
            a.receive(&mut |_, _| panic!("junk delivered"));
        }
    }
    // Data under a valid index for peer 0 but garbage ciphertext.
    let mut fake = vec![4u8, 0, 0, 0];
    fake.extend_from_slice(&((a.index.index_of(0) << 8) | 1).to_le_bytes());
    fake.extend_from_slice(&[0u8; 8 + 16 + 32]);
    junk.send_to(&fake, to).unwrap();
    sent += 1;
    let start = Instant::now();
    while a.counters().rx_datagrams < sent && start.elapsed() < Duration::from_secs(3) {
        a.receive(&mut |_, _| panic!("junk delivered"));
        std::thread::sleep(Duration::from_millis(1));
    }
    let c = a.counters().clone();
    assert_eq!(c.rx_datagrams, sent);
    assert!(c.rx_junk > 0);
    assert!(c.rx_invalid_mac > 0);
    assert!(c.rx_unknown_index > 0);
    assert!(c.rx_no_session + c.rx_decrypt_failed >= 1);
    assert_eq!(c.rx_frames, 0);
    // Still works.
    a.send_frame(0, &frame(300, 3)).unwrap();
    let mut got = vec![Got::new(), Got::new()];
    assert!(pump(&mut [&mut a, &mut b], &mut got, &|g| g[1].len() == 1));
    assert_eq!(
        a.endpoint(0),
        Some(lo(port(&b))),
        "junk never moves an endpoint"
    );
}

/// Past the rate limit, initiations (here from keys we do not know) get
/// cookie replies instead of costing us a Diffie-Hellman each.
#[test]
fn cookie_replies_under_handshake_load() {
    let mut a = node(1, &[2]);
    let a_pub = public_from_private(&private(1));
    let attacker = StdUdp::bind("127.0.0.1:0").unwrap();
    attacker.set_nonblocking(true).unwrap();
    let mut evil = Tunn::new(
        StaticSecret::from(private(66)),
        PublicKey::from(a_pub),
        None,
        None,
        7,
        None,
    );
    let mut buf = vec![0u8; 256];
    let floods = HANDSHAKE_RATE_LIMIT + 50;
    for i in 0..floods {
        if let TunnResult::WriteToNetwork(m) = evil.format_handshake_initiation(&mut buf, true) {
            attacker.send_to(m, lo(port(&a))).unwrap();
        }
        if i % 16 == 0 {
            a.receive(&mut |_, _| {});
        }
    }
    let start = Instant::now();
    while a.counters().rx_datagrams < floods && start.elapsed() < Duration::from_secs(3) {
        a.receive(&mut |_, _| {});
        std::thread::sleep(Duration::from_millis(1));
    }
    let c = a.counters();
    assert_eq!(c.rx_datagrams, floods);
    assert!(c.cookie_replies_sent > 0, "{c:?}");
    assert!(c.rx_unknown_peer > 0);
    assert_eq!(c.cookie_replies_sent + c.rx_unknown_peer, floods);
    let mut cookies = 0;
    let mut d = [0u8; 256];
    while let Ok((n, _)) = attacker.recv_from(&mut d) {
        assert_eq!((n, d[0]), (64, 3), "a cookie reply");
        cookies += 1;
    }
    assert_eq!(cookies, c.cookie_replies_sent);
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
            peers: vec![PeerSpec {
                inner: v6(other),
                ..spec(other, None)
            }],
        })
        .unwrap()
    };
    let mut a = mk(1, 2);
    let mut b = mk(2, 1);
    if !a.dual_stack() {
        return; // no IPv6 on this host: the IPv4 tests cover the rest
    }
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
