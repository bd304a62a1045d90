//! Tests against a bare boringtun `Tunn` on a std socket, which stands in
//! for a kernel node where the test must put exact inner bytes (the kernel
//! capture) on the wire, and against junk and handshake floods.

use std::net::{SocketAddr, UdpSocket as StdUdp};
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};

use super::{frame, lo, node, pair, port, private, pump, Got};
use crate::keys::public_from_private;
use crate::tunnel::*;

/// A bare boringtun peer on a std socket: the test decides every inner byte.
struct RawPeer {
    tunn: Tunn,
    sock: StdUdp,
    to: SocketAddr,
    buf: Vec<u8>,
    /// Sizes of the data messages (type 4) received: the UDP payload.
    data_lens: Vec<usize>,
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
            data_lens: Vec::new(),
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
            if dgram[0] == 4 && n > 32 {
                self.data_lens.push(n);
            }
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

    // Message sizes as on the kernel underlay (captures/README.md): a 90-byte
    // OGM pads to 96 -> 128-byte message (UDP length 136); the largest
    // unfragmented packet, 1420 bytes, is not padded past the MTU -> 1452.
    b.send_frame(0, &captures::UNICAST_1420[24..]).unwrap();
    assert!(pump_raw(
        &mut b,
        &mut raw,
        &mut got,
        &mut raw_got,
        &|_, r| r.len() == 3
    ));
    assert_eq!(raw_got[2].len(), 1420);
    assert_eq!(raw.data_lens, vec![128, 128, 1452]);
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
    fake.extend_from_slice(&((a.core.index.index_of(0) << 8) | 1).to_le_bytes());
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
