//! Inner fragmentation and reassembly on real bytes: packets built by the
//! send path's own encap, cut by `Fragmenter`, checked by `gretap::classify`
//! and put back by `Reassembly`, in every order, with duplicates, overlaps,
//! losses, floods and random garbage.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::frame;
use crate::tunnel::counters::TunnelCounters;
use crate::tunnel::fragment::Fragmenter;
use crate::tunnel::gretap::{self, Inner, Link};
use crate::tunnel::reassembly::{Reassembly, Verdict, REASM_MAX_BYTES, REASM_MAX_DATAGRAMS};
use crate::tunnel::reassembly::{REASM_MAX_LEN, REASM_TIMEOUT};
use crate::wire::{ipv4, ipv6};

fn link(v6: bool) -> (Link, Link) {
    let (a, b): (IpAddr, IpAddr) = if v6 {
        ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap())
    } else {
        ("198.19.0.1".parse().unwrap(), "198.19.0.2".parse().unwrap())
    };
    // (sender's view, receiver's view)
    (
        Link {
            local: a,
            remote: b,
        },
        Link {
            local: b,
            remote: a,
        },
    )
}

/// The whole inner packet the send path builds for `f`.
fn packet(v6: bool, f: &[u8], ident: u16) -> Vec<u8> {
    let mut p = vec![0u8; gretap::header_len(v6) + f.len()];
    let hl = gretap::encap_headers(&mut p, link(v6).0, f.len(), ident).unwrap();
    p[hl..].copy_from_slice(f);
    p
}

fn pieces(p: &[u8], mtu: usize, ident6: u32) -> Vec<Vec<u8>> {
    let mut f = Fragmenter::new(p, mtu, ident6).unwrap();
    let mut buf = vec![0u8; 10_000];
    let mut out = Vec::new();
    while let Some(n) = f.next_into(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

struct Rx {
    r: Reassembly,
    c: TunnelCounters,
    link: Link,
    now: Instant,
}

impl Rx {
    fn new(v6: bool) -> Rx {
        Rx {
            r: Reassembly::default(),
            c: TunnelCounters::default(),
            link: link(v6).1,
            now: Instant::now(),
        }
    }

    /// One inner packet as the receive path takes it; Some(frame) when a
    /// frame comes out.
    fn input(&mut self, p: &[u8]) -> Option<Vec<u8>> {
        match gretap::classify(p, self.link) {
            Ok(Inner::Whole(g)) => gretap::decap_gre(g).ok().map(<[u8]>::to_vec),
            Ok(Inner::Fragment(f)) => match self.r.input(f, self.now, &mut self.c) {
                Verdict::Complete => gretap::decap_gre(self.r.completed())
                    .ok()
                    .map(<[u8]>::to_vec),
                _ => None,
            },
            Err(_) => None,
        }
    }
}

/// IPv4 pieces are real IPv4 fragments: valid checksums, DF clear, MF on
/// all but the last, offsets in 8-byte units, equal sizes but the last,
/// each within the MTU, the same identification.
#[test]
fn ipv4_pieces_are_proper_fragments() {
    // A broadcast of a full 1514-byte VM frame: batman BCAST 14 + Eth 14.
    let f = frame(1514 + 28, 7);
    let p = packet(false, &f, 0x1234);
    assert_eq!(p.len(), 1566);
    let ps = pieces(&p, 1440, 0);
    assert_eq!(ps.len(), 2);
    assert_eq!(ps[0].len(), 1436);
    assert_eq!(ps[1].len(), 20 + 1546 - 1416);
    let mut next = 0;
    for (i, piece) in ps.iter().enumerate() {
        let ip = ipv4::Packet::new_checked(&piece[..]).unwrap();
        assert!(ip.verify_checksum() && !ip.dont_frag());
        assert_eq!(ip.more_frags(), i + 1 < ps.len());
        assert_eq!(usize::from(ip.frag_offset()), next);
        assert_eq!(ip.ident(), 0x1234);
        assert_eq!(ip.protocol(), ipv4::PROTO_GRE);
        assert!(piece.len() <= 1440);
        next += ip.payload().len();
    }
    assert_eq!(next, p.len() - 20);
    // At the kernel's wg0 MTU the pieces have the shape a kernel gretap
    // (nopmtudisc) over wg0 was seen to send for this very broadcast:
    // 1420 bytes at offset 0 with MF, then 166 bytes at offset 1400.
    let kernel = pieces(&p, 1420, 0);
    let shape: Vec<_> = kernel
        .iter()
        .map(|k| {
            let ip = ipv4::Packet::new_checked(&k[..]).unwrap();
            (k.len(), ip.frag_offset(), ip.more_frags(), ip.dont_frag())
        })
        .collect();
    assert_eq!(shape, [(1420, 0, true, false), (166, 1400, false, false)]);
    let big = pieces(&packet(false, &frame(9000, 1), 1), 1440, 0);
    assert_eq!(big.len(), 7);
    assert!(big[..6].iter().all(|b| b.len() == 1436));
}

#[test]
fn ipv6_pieces_carry_a_fragment_header() {
    let f = frame(1542, 3);
    let p = packet(true, &f, 0);
    let ps = pieces(&p, 1420, 0xabcd_0001);
    assert_eq!(ps.len(), 2);
    let mut next = 0;
    for (i, piece) in ps.iter().enumerate() {
        assert!(piece.len() <= 1420);
        let ip = ipv6::Packet::new_checked(&piece[..]).unwrap();
        assert_eq!(ip.next_header(), ipv6::PROTO_FRAGMENT);
        let fh = ipv6::FragHeader::new_checked(ip.payload()).unwrap();
        assert_eq!(fh.next_header(), ipv4::PROTO_GRE);
        assert_eq!(fh.ident(), 0xabcd_0001);
        assert_eq!(fh.more_frags(), i == 0);
        assert_eq!(usize::from(fh.frag_offset()), next);
        next += fh.payload().len();
    }
    assert_eq!(next, p.len() - 40);
    assert_eq!(ps[0].len(), 48 + 1368);
}

/// In order, reversed, and shuffled, both families, sizes around every
/// boundary: the frame comes out once, byte-identical, and nothing is held.
#[test]
fn reassembly_in_any_order() {
    let mut seed = 0x9e37_79b9_u64;
    for v6 in [false, true] {
        let mut rx = Rx::new(v6);
        let mut done = 0;
        for (k, len) in [1400, 1500, 1542, 2000, 4000, 9000, 9125]
            .iter()
            .enumerate()
        {
            for order in 0..3 {
                let f = frame(*len, (k * 3 + order) as u8);
                let p = packet(v6, &f, (k * 3 + order) as u16);
                let mut ps = pieces(&p, 1240, (k * 3 + order) as u32);
                match order {
                    1 => ps.reverse(),
                    2 => {
                        for i in (1..ps.len()).rev() {
                            seed ^= seed << 13;
                            seed ^= seed >> 7;
                            seed ^= seed << 17;
                            ps.swap(i, (seed % (i as u64 + 1)) as usize);
                        }
                    }
                    _ => {}
                }
                let out: Vec<_> = ps.iter().filter_map(|p| rx.input(p)).collect();
                assert_eq!(out, vec![f], "v6 {v6} len {len} order {order}");
                done += 1;
            }
        }
        assert_eq!(rx.c.rx_reassembled, done);
        assert_eq!(rx.r.in_progress(), 0);
        assert_eq!(rx.r.held_bytes(), 0);
    }
}

/// Interleaved datagrams reassemble independently.
#[test]
fn interleaved_datagrams() {
    let mut rx = Rx::new(false);
    let fs: Vec<_> = (0..5).map(|i| frame(3000 + i * 8, i as u8)).collect();
    let ps: Vec<_> = fs
        .iter()
        .enumerate()
        .map(|(i, f)| pieces(&packet(false, f, 100 + i as u16), 1440, 0))
        .collect();
    let mut out = Vec::new();
    for j in 0..3 {
        for p in &ps {
            out.extend(rx.input(&p[j]));
        }
    }
    assert_eq!(out, fs);
}

#[test]
fn duplicates_are_ignored_and_counted() {
    let mut rx = Rx::new(false);
    let f = frame(4000, 9);
    let ps = pieces(&packet(false, &f, 5), 1440, 0);
    assert_eq!(rx.input(&ps[0]), None);
    assert_eq!(rx.input(&ps[0]), None);
    assert_eq!(rx.input(&ps[1]), None);
    assert_eq!(rx.input(&ps[0]), None);
    assert_eq!(rx.input(&ps[2]), Some(f.clone()));
    assert_eq!(rx.c.reasm_duplicates, 2);
    // After completion the same pieces start a new datagram, which can
    // never complete without its other pieces: it times out.
    assert_eq!(rx.input(&ps[1]), None);
    assert_eq!(rx.r.in_progress(), 1);
    rx.r.expire(rx.now + REASM_TIMEOUT, &mut rx.c);
    assert_eq!(rx.c.reasm_timeouts, 1);
    assert_eq!((rx.r.in_progress(), rx.r.held_bytes()), (0, 0));
}

/// A piece that partly overlaps data already held drops the datagram
/// (RFC 5722): neither version of the overlapped bytes is delivered.
#[test]
fn overlaps_drop_the_datagram() {
    for v6 in [false, true] {
        let mut rx = Rx::new(v6);
        let f = frame(3000, 1);
        let p = packet(v6, &f, 77);
        let ps = pieces(&p, 1440, 77);
        // The same data cut at another size: its first piece overlaps
        // ps[0] partly (different end).
        let other = pieces(&p, 1000, 77);
        assert_eq!(rx.input(&ps[1]), None);
        assert_eq!(rx.input(&other[1]), None, "v6 {v6}");
        assert_eq!(rx.c.reasm_overlaps, 1);
        assert_eq!(rx.r.in_progress(), 0);
        // What follows belongs to a fresh datagram that lacks ps[1].
        assert_eq!(rx.input(&ps[0]), None);
        assert_eq!(rx.input(&ps[2]), None);
        assert_eq!(rx.c.rx_reassembled, 0);
    }
}

#[test]
fn missing_piece_times_out() {
    let mut rx = Rx::new(true);
    let ps = pieces(&packet(true, &frame(5000, 2), 0), 1420, 9);
    for p in ps.iter().skip(1) {
        assert_eq!(rx.input(p), None);
    }
    assert_eq!(rx.r.in_progress(), 1);
    assert!(rx.r.held_bytes() >= 4000);
    rx.r.expire(rx.now + REASM_TIMEOUT - Duration::from_millis(1), &mut rx.c);
    assert_eq!(rx.r.in_progress(), 1, "not yet");
    // The late piece after the timeout starts over instead of completing.
    rx.now += REASM_TIMEOUT;
    assert_eq!(rx.input(&ps[0]), None);
    assert_eq!(rx.c.reasm_timeouts, 1);
    assert_eq!(rx.r.in_progress(), 1);
}

/// Malformed pieces: a non-final piece not a multiple of 8 long, pieces
/// past the largest datagram, two different ends, data past the end.
#[test]
fn malformed_pieces_are_dropped_and_counted() {
    let mut rx = Rx::new(false);
    let p = packet(false, &frame(3000, 4), 1);
    let ps = pieces(&p, 1440, 0);
    let rewrite = |piece: &[u8], len: usize, more: bool, offset: u16| {
        let mut v = piece[..20 + len].to_vec();
        let mut ip = ipv4::Packet::new_unchecked(&mut v[..]);
        ip.set_total_len((20 + len) as u16);
        ip.set_fragment(more, offset);
        ip.fill_checksum();
        v
    };
    assert_eq!(rx.input(&rewrite(&ps[0], 1001, true, 0)), None);
    assert_eq!(rx.c.reasm_malformed, 1);
    assert_eq!(rx.input(&rewrite(&ps[0], 100, true, 65000)), None);
    assert_eq!(rx.c.reasm_oversize, 1);
    assert_eq!(rx.r.in_progress(), 0);
    // Two last pieces that disagree.
    assert_eq!(rx.input(&ps[2]), None);
    assert_eq!(rx.input(&rewrite(&ps[2], 8, false, 2880)), None);
    assert_eq!(rx.c.reasm_malformed, 2);
    // A non-final piece past a known end.
    assert_eq!(rx.input(&ps[2]), None);
    let end = p.len() - 20;
    assert_eq!(rx.input(&rewrite(&ps[0], 16, true, end as u16)), None);
    assert_eq!(rx.c.reasm_malformed, 3);
    assert_eq!(rx.r.in_progress(), 0);
    // Pieces from another source never reach the table.
    let mut spoofed = ps[0].clone();
    spoofed[15] = 9;
    ipv4::Packet::new_unchecked(&mut spoofed[..]).fill_checksum();
    assert_eq!(
        gretap::classify(&spoofed, rx.link),
        Err(gretap::Drop::WrongSource)
    );
    // Outside the reassembly path a fragment is still refused.
    assert_eq!(gretap::decap(&ps[0], rx.link), Err(gretap::Drop::Fragment));
}

/// First pieces of thousands of datagrams that never complete: the table
/// stays at REASM_MAX_DATAGRAMS and REASM_MAX_BYTES, the oldest evicted.
#[test]
fn memory_stays_bounded() {
    let mut rx = Rx::new(false);
    let p = packet(false, &frame(9000, 5), 0);
    let ps = pieces(&p, 1440, 0);
    let last = ps.last().unwrap().clone();
    for ident in 0..5000u16 {
        let mut v = if ident % 2 == 0 {
            ps[0].clone()
        } else {
            // A last piece: allocates the whole ~9 KB at once.
            last.clone()
        };
        let mut ip = ipv4::Packet::new_unchecked(&mut v[..]);
        ip.set_ident(ident);
        ip.fill_checksum();
        assert_eq!(rx.input(&v), None);
        assert!(rx.r.in_progress() <= REASM_MAX_DATAGRAMS);
        assert!(
            rx.r.held_bytes() <= REASM_MAX_BYTES,
            "{}",
            rx.r.held_bytes()
        );
    }
    assert!(rx.c.reasm_evicted >= 5000 - REASM_MAX_DATAGRAMS as u64);
    // Still working afterwards.
    let f = frame(2000, 6);
    let out: Vec<_> = pieces(&packet(false, &f, 60000), 1440, 0)
        .iter()
        .filter_map(|p| rx.input(p))
        .collect();
    assert_eq!(out, vec![f]);
}

/// 100k hostile pieces (random offsets, lengths, flags, identifications
/// from a small set so they collide, time moving on): no panic, bounds
/// hold, whatever completes is within REASM_MAX_LEN, and every piece is
/// accounted for by exactly one outcome.
#[test]
fn hostile_fragments_never_panic() {
    let mut x: u64 = 0x0123_4567_89ab_cdef;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut r = Reassembly::default();
    let mut c = TunnelCounters::default();
    let data = vec![0x5au8; 2000];
    let mut now = Instant::now();
    let mut complete = 0u64;
    for i in 0..100_000u64 {
        let len = match rnd() % 4 {
            0 => (rnd() % 2000) as usize,
            1 => 8 * (1 + rnd() % 100) as usize,
            2 => 0,
            _ => 1400,
        };
        let offset = match rnd() % 3 {
            0 => (rnd() % 12_000) as usize,
            1 => 8 * (rnd() % 1200) as usize,
            _ => 1400 * (rnd() % 7) as usize,
        };
        let f = gretap::Fragment {
            ident: (rnd() % 40) as u32,
            offset,
            more: rnd() % 3 != 0,
            data: &data[..len],
        };
        if i % 1000 == 0 {
            now += Duration::from_millis(rnd() % 3000);
        }
        if r.input(f, now, &mut c) == Verdict::Complete {
            complete += 1;
            assert!(r.completed().len() <= REASM_MAX_LEN);
        }
        assert!(r.in_progress() <= REASM_MAX_DATAGRAMS);
        assert!(r.held_bytes() <= REASM_MAX_BYTES);
    }
    assert_eq!(c.rx_inner_fragments, 100_000);
    assert_eq!(c.rx_reassembled, complete);
    assert!(
        complete > 0,
        "the fuzz never completes anything: too shallow"
    );
    assert!(c.reasm_overlaps > 0 && c.reasm_malformed > 0 && c.reasm_oversize > 0);
    assert!(c.reasm_duplicates > 0 && c.reasm_evicted + c.reasm_timeouts > 0);
    r.expire(now + REASM_TIMEOUT, &mut c);
    assert_eq!((r.in_progress(), r.held_bytes()), (0, 0));
}

/// A UDP relay between two nodes that records every datagram's size.
struct Relay {
    sock: std::net::UdpSocket,
    a: std::net::SocketAddr,
    b: std::net::SocketAddr,
    largest: usize,
    datagrams: usize,
}

impl Relay {
    fn poll(&mut self) {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = self.sock.recv_from(&mut buf) {
            self.largest = self.largest.max(n);
            self.datagrams += 1;
            let to = if from == self.a { self.b } else { self.a };
            let _ = self.sock.send_to(&buf[..n], to);
        }
    }
}

/// Real Tunnels over 127.0.0.1 with a 1280-byte underlay configured, a
/// relay in the middle measuring: 1600- and 9000-byte frames (and small
/// ones) cross both ways byte-identical and in order, and no datagram is
/// longer than 1280 - 28 bytes. IPv4 and IPv6 inner headers.
#[test]
fn large_frames_over_a_small_underlay_mtu() {
    use super::{lo, port, private, spec, Got};
    use crate::tunnel::{PeerSpec, TunnelConfig, Tunnels};
    for v6 in [false, true] {
        let inner = |n: u8| -> IpAddr {
            if v6 {
                format!("fd00::{n}").parse().unwrap()
            } else {
                format!("198.19.0.{n}").parse().unwrap()
            }
        };
        let mk = |me: u8, other: u8| {
            Tunnels::new(TunnelConfig {
                private_key: private(me),
                listen_port: 0,
                local_inner: inner(me),
                underlay_mtu: 1280,
                peers: vec![PeerSpec {
                    inner: inner(other),
                    ..spec(other, None)
                }],
            })
            .unwrap()
        };
        let (mut a, mut b) = (mk(1, 2), mk(2, 1));
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_nonblocking(true).unwrap();
        let mut relay = Relay {
            a: lo(port(&a)),
            b: lo(port(&b)),
            sock,
            largest: 0,
            datagrams: 0,
        };
        let via = relay.sock.local_addr().unwrap();
        a.set_endpoint(0, via).unwrap();
        b.set_endpoint(0, via).unwrap();
        let sizes = [1600, 9000, 60, 1600, 9000, 1514, 4000, 9000];
        let mut sent = [Got::new(), Got::new()];
        for (i, &len) in sizes.iter().enumerate() {
            let (fa, fb) = (frame(len, i as u8), frame(len, 100 + i as u8));
            a.send_frame(0, &fa).unwrap();
            b.send_frame(0, &fb).unwrap();
            sent[0].push((0, fa));
            sent[1].push((0, fb));
        }
        let mut got = [Got::new(), Got::new()];
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5)
            && (got[0].len() < sizes.len() || got[1].len() < sizes.len())
        {
            a.receive(&mut |p, f| got[0].push((p, f.to_vec())));
            b.receive(&mut |p, f| got[1].push((p, f.to_vec())));
            a.tick();
            b.tick();
            relay.poll();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(got[1], sent[0], "A -> B, v6 inner {v6}: {:?}", b.counters());
        assert_eq!(got[0], sent[1], "B -> A, v6 inner {v6}");
        assert!(relay.largest <= 1280 - 28, "datagram of {}", relay.largest);
        // 1600: 2 pieces; 9000: 8 (v4: 1200 per piece) or 8 (v6: 1168);
        // 1514: 2; 4000: 4 (v4) or 4 (v6); 60: whole.
        let k = a.counters();
        assert_eq!(k.tx_fragmented_frames, 7, "{k:?}");
        assert_eq!(b.counters().rx_reassembled, 7);
        assert_eq!(k.tx_frames, sizes.len() as u64);
        assert_eq!(b.counters().rx_frames, sizes.len() as u64);
        assert_eq!(b.reassembly_in_progress(0), (0, 0));
        assert!(relay.datagrams > 2 * 7 * 2);
    }
}
