//! Segmentation, checksum completion and coalescing against a reference:
//! every segment must be a valid frame on its own (IPv4 header checksum,
//! L4 checksum over the pseudo-header, lengths, sequence numbers, flags),
//! and the segments' payloads must reassemble to the original payload.
//! Coalescing must give back a super-frame that segments to the same frames.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::port::gro::{self, Gro};
use crate::port::ports::{max_frame_len, PortCounters};
use crate::port::rx::PortRx;
use crate::port::segment::{self, Prepared, RxError};
use crate::wire::ethernet::ethertype;
use crate::wire::vnet::{self, gso};
use crate::wire::{checksum, ipv4, ipv6, tcp, udp};

const SRC4: Ipv4Addr = Ipv4Addr::new(198, 19, 7, 1);
const DST4: Ipv4Addr = Ipv4Addr::new(198, 19, 7, 2);
const SRC6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 7, 0, 0, 0, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 7, 0, 0, 0, 2);
const SEQ0: u32 = 0xffff_f000; // wraps inside the super-frame
const ID0: u16 = 0xfff0;

#[derive(Clone, Copy, Debug)]
pub(super) struct Spec {
    pub v4: bool,
    pub udp: bool,
    pub vlan: bool,
    pub payload: usize,
    pub gso_size: u16,
    pub tcp_flags: u8,
}

impl Spec {
    pub(super) fn tcp4(payload: usize, gso_size: u16) -> Spec {
        Spec {
            v4: true,
            udp: false,
            vlan: false,
            payload,
            gso_size,
            tcp_flags: tcp::flags::ACK,
        }
    }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed ^ (i >> 8) as u8)
        })
        .collect()
}

/// What the kernel's TAP read returns for a GSO packet: virtio header, then
/// Ethernet (+tag), IP, TCP with timestamps (or UDP), payload; the L4
/// checksum field holds the pseudo-header sum (CHECKSUM_PARTIAL).
pub(super) fn super_frame(s: &Spec) -> (Vec<u8>, Vec<u8>) {
    let payload = pattern(s.payload, 7);
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    let l3_type = if s.v4 {
        ethertype::IPV4
    } else {
        ethertype::IPV6
    };
    if s.vlan {
        f.extend_from_slice(&ethertype::VLAN.to_be_bytes());
        f.extend_from_slice(&[0x20, 0x2a]);
    }
    f.extend_from_slice(&l3_type.to_be_bytes());
    let proto = if s.udp { udp::PROTOCOL } else { tcp::PROTOCOL };
    let l4_hdr = if s.udp { 8 } else { 32 };
    let l4_len = l4_hdr + s.payload;
    if s.v4 {
        let mut h = [0u8; 20];
        let mut p = ipv4::Packet::new_unchecked(&mut h[..]);
        p.set_version_and_header_len(20);
        p.set_total_len((20 + l4_len) as u16);
        p.set_ident(ID0);
        p.set_unfragmented(true);
        p.set_ttl(64);
        p.set_protocol(proto);
        p.set_src_addr(SRC4);
        p.set_dst_addr(DST4);
        p.fill_checksum();
        f.extend_from_slice(&h);
    } else {
        let mut h = [0u8; 40];
        let mut p = ipv6::Packet::new_unchecked(&mut h[..]);
        p.set_version_tc_flow(0, 0x12345);
        p.set_payload_len(l4_len as u16);
        p.set_next_header(proto);
        p.set_hop_limit(64);
        p.set_src_addr(SRC6);
        p.set_dst_addr(DST6);
        f.extend_from_slice(&h);
    }
    let l4 = f.len();
    if s.udp {
        f.extend_from_slice(&[0x9c, 0x40, 0x13, 0x89]);
        f.extend_from_slice(&(l4_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
    } else {
        f.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
        f.extend_from_slice(&SEQ0.to_be_bytes());
        f.extend_from_slice(&0x0a0b_0c0du32.to_be_bytes());
        f.extend_from_slice(&[8 << 4, s.tcp_flags, 0x01, 0xf5, 0, 0, 0, 0]);
        f.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    }
    let ps = if s.v4 {
        checksum::pseudo_header_v4(SRC4, DST4, proto, l4_len as u32)
    } else {
        checksum::pseudo_header_v6(SRC6, DST6, proto, l4_len as u32)
    };
    let at = l4 + if s.udp { 6 } else { 16 };
    f[at..at + 2].copy_from_slice(&ps.to_be_bytes());
    f.extend_from_slice(&payload);

    let mut h = [0u8; vnet::HEADER_LEN];
    let mut v = vnet::Header::new_unchecked(&mut h[..]);
    v.set_flags(vnet::F_NEEDS_CSUM);
    v.set_gso_type(match (s.udp, s.v4) {
        (true, _) => gso::UDP_L4,
        (false, true) => gso::TCPV4,
        (false, false) => gso::TCPV6,
    });
    v.set_hdr_len((l4 + l4_hdr) as u16);
    v.set_gso_size(s.gso_size);
    v.set_csum_start(l4 as u16);
    v.set_csum_offset((at - l4) as u16);
    let mut read = h.to_vec();
    read.extend_from_slice(&f);
    (read, payload)
}

/// Checks one output frame completely; returns (seq or index, payload).
fn check_segment(s: &Spec, f: &[u8], i: usize, n: usize) -> Vec<u8> {
    let l3 = if s.vlan { 18 } else { 14 };
    let l3_type = if s.v4 {
        ethertype::IPV4
    } else {
        ethertype::IPV6
    };
    assert_eq!(f[l3 - 2..l3], l3_type.to_be_bytes());
    if s.vlan {
        assert_eq!(f[12..16], [0x81, 0, 0x20, 0x2a]);
    }
    let ip = &f[l3..];
    let proto = if s.udp { udp::PROTOCOL } else { tcp::PROTOCOL };
    let (l4, ps) = if s.v4 {
        let p = ipv4::Packet::new_checked(ip).expect("ipv4");
        assert_eq!(usize::from(p.total_len()), ip.len());
        assert!(p.verify_checksum(), "ipv4 header checksum of segment {i}");
        assert_eq!(p.ident(), ID0.wrapping_add(i as u16));
        assert!(p.dont_frag());
        let l4len = ip.len() - 20;
        (
            &ip[20..],
            checksum::pseudo_header_v4(SRC4, DST4, proto, l4len as u32),
        )
    } else {
        let p = ipv6::Packet::new_checked(ip).expect("ipv6");
        assert_eq!(usize::from(p.payload_len()) + 40, ip.len());
        assert_eq!(p.flow_label(), 0x12345);
        let l4len = ip.len() - 40;
        (
            &ip[40..],
            checksum::pseudo_header_v6(SRC6, DST6, proto, l4len as u32),
        )
    };
    assert_eq!(
        checksum::combine(&[ps, checksum::sum(l4)]),
        0xffff,
        "L4 checksum of segment {i}"
    );
    if s.udp {
        let u = udp::Packet::new_checked(l4).unwrap();
        assert_eq!(usize::from(u.length()), l4.len());
        assert_ne!(u.checksum(), 0);
        return l4[8..].to_vec();
    }
    let t = tcp::Packet::new_checked(l4).unwrap();
    assert_eq!(
        t.seq_number(),
        SEQ0.wrapping_add((i * usize::from(s.gso_size)) as u32)
    );
    assert_eq!(t.ack_number(), 0x0a0b_0c0d);
    assert_eq!(t.options(), [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    let mut want = s.tcp_flags;
    if i + 1 != n {
        want &= !(tcp::flags::FIN | tcp::flags::PSH);
    }
    if i != 0 {
        want &= !tcp::flags::CWR;
    }
    assert_eq!(t.flags(), want, "flags of segment {i}/{n}");
    t.payload().to_vec()
}

/// Segments through a PortRx (in place) and through write_segment (copy);
/// both must agree and pass `check_segment`. Returns the frames.
fn segment_and_check(s: &Spec, mtu: u16) -> Vec<Vec<u8>> {
    let (read, payload) = super_frame(s);
    let max = max_frame_len(mtu);
    let mut c = PortCounters::default();
    let mut rx = PortRx::with_reads(1);
    let want = payload.len().div_ceil(usize::from(s.gso_size));
    assert_eq!(rx.load(&read, true, &mut c, max), want, "{s:?} {c:?}");
    let mut frames = Vec::new();
    rx.for_each_frame(|f| frames.push(f.to_vec()));
    assert_eq!(frames.len(), want);
    assert_eq!((c.rx_gso, c.rx_frames), (1, want as u64));
    assert_eq!(
        c.rx_bytes,
        frames.iter().map(|f| f.len() as u64).sum::<u64>()
    );

    let mut copy = read.clone();
    let (h, f) = copy.split_at_mut(vnet::HEADER_LEN);
    let Ok(Prepared::Gso(g)) = segment::prepare(h, f, max) else {
        panic!("not gso")
    };
    let mut out = vec![0u8; max];
    let mut joined = Vec::new();
    for (i, fr) in frames.iter().enumerate() {
        assert!(fr.len() <= max);
        let n = segment::write_segment(&g, f, i, &mut out).unwrap();
        assert_eq!(&out[..n], &fr[..], "copy and in-place differ at {i}");
        joined.extend(check_segment(s, fr, i, frames.len()));
    }
    assert_eq!(joined, payload, "reassembled payload");
    frames
}

#[test]
fn tcp4_super_frame_into_1500_and_1378_mtu() {
    for (mtu, mss) in [(1500u16, 1448u16), (1378, 1326)] {
        let frames = segment_and_check(&Spec::tcp4(65_000, mss), mtu);
        assert_eq!(frames.len(), 65_000usize.div_ceil(usize::from(mss)));
        assert_eq!(frames[0].len(), 14 + 20 + 32 + usize::from(mss));
    }
}

#[test]
fn every_shape_segments_correctly() {
    let flags = [
        tcp::flags::ACK,
        tcp::flags::ACK | tcp::flags::PSH | tcp::flags::FIN,
        tcp::flags::ACK | tcp::flags::CWR | tcp::flags::PSH,
    ];
    for v4 in [true, false] {
        for udp in [false, true] {
            for vlan in [false, true] {
                for (payload, gso_size) in [
                    (1, 1),
                    (100, 1),
                    (3000, 1000),
                    (65_000, 1400),
                    (1448, 1448),
                    (1449, 1448),
                    (5000, 536),
                ] {
                    for &tcp_flags in &flags {
                        let s = Spec {
                            v4,
                            udp,
                            vlan,
                            payload,
                            gso_size,
                            tcp_flags,
                        };
                        if payload + 200 > 65_000 && !v4 && udp {
                            continue;
                        }
                        // Room for IPv6 + tag + 1448-byte segments.
                        segment_and_check(&s, 1600);
                    }
                }
            }
        }
    }
}

/// A plain frame with a partial checksum comes out with the full one.
#[test]
fn needs_csum_on_single_frame_is_completed() {
    for udp in [false, true] {
        let s = Spec {
            v4: true,
            udp,
            vlan: true,
            payload: 700,
            gso_size: 1448,
            tcp_flags: tcp::flags::ACK | tcp::flags::PSH,
        };
        let (mut read, payload) = super_frame(&s);
        read[1] = gso::NONE;
        let mut rx = PortRx::with_reads(1);
        let mut c = PortCounters::default();
        assert_eq!(rx.load(&read, true, &mut c, 1518), 1);
        assert_eq!(c.rx_csum_completed, 1);
        let f = rx.next_frame().unwrap().to_vec();
        assert_eq!(f.len(), read.len() - vnet::HEADER_LEN);
        assert_eq!(check_segment(&s, &f, 0, 1), payload);
    }
}

/// One broken field at a time: each is refused and counted under its name.
#[test]
fn malformed_vnet_headers_are_dropped_and_counted() {
    let (good, _) = super_frame(&Spec::tcp4(4000, 1448));
    type Mut = fn(&mut Vec<u8>);
    let cases: [(Mut, RxError); 12] = [
        (|r| r[4..6].copy_from_slice(&[0, 0]), RxError::BadGso),
        (
            |r| r[2..4].copy_from_slice(&0xffffu16.to_le_bytes()),
            RxError::BadGso,
        ),
        (|r| r[1] |= gso::ECN, RxError::Ecn),
        (|r| r[1] = gso::UDP, RxError::Unsupported),
        (|r| r[1] = 9, RxError::Unsupported),
        (|r| r[0] = 0x80, RxError::BadVnet),
        (|r| r[0] = 0, RxError::BadVnet),
        (|r| r[8] = 6, RxError::BadCsum),
        (|r| r[6] = 30, RxError::BadCsum),
        (|r| r.truncate(r.len() - 1), RxError::BadHeaders),
        (|r| r[12 + 14 + 6] = 0x20, RxError::BadHeaders), // MF: a fragment
        (|r| r[1] = gso::TCPV6, RxError::BadHeaders),
    ];
    for (i, (m, want)) in cases.iter().enumerate() {
        let mut r = good.clone();
        m(&mut r);
        let (h, f) = r.split_at_mut(vnet::HEADER_LEN);
        assert_eq!(segment::prepare(h, f, 1518), Err(*want), "case {i}");
    }
    // Segments longer than the port's MTU allows.
    let mut r = good.clone();
    let (h, f) = r.split_at_mut(vnet::HEADER_LEN);
    assert_eq!(segment::prepare(h, f, 1400), Err(RxError::Oversize));
    // And through a batch: counted, nothing yielded.
    let mut rx = PortRx::with_reads(1);
    let mut c = PortCounters::default();
    let mut r = good.clone();
    r[4] = 0;
    r[5] = 0;
    assert_eq!(rx.load(&r, true, &mut c, 1518), 0);
    assert_eq!(c.rx_drop_bad_gso, 1);
    assert_eq!(rx.load(&good[..20], true, &mut c, 1518), 0);
    assert_eq!(c.rx_drop_short, 1);
    assert!(rx.next_frame().is_none());
}

/// 100k hostile reads: valid super-frames with random bytes flipped (in the
/// virtio header and the packet headers mostly) and random garbage. Never a
/// panic; every frame that comes out fits the port and lies in the buffer.
#[test]
fn hostile_reads_never_panic() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let bases: Vec<Vec<u8>> = [
        Spec::tcp4(4000, 1448),
        Spec {
            v4: false,
            vlan: true,
            ..Spec::tcp4(3000, 1000)
        },
        Spec {
            udp: true,
            ..Spec::tcp4(2000, 512)
        },
        Spec {
            udp: true,
            v4: false,
            ..Spec::tcp4(900, 100)
        },
    ]
    .iter()
    .map(|s| super_frame(s).0)
    .collect();
    let mut c = PortCounters::default();
    let mut rx = PortRx::with_reads(1);
    let mut out_frames = 0u64;
    for i in 0..100_000u64 {
        let mut r = bases[(i % 4) as usize].clone();
        let flips = 1 + rnd() % 4;
        for _ in 0..flips {
            let span = if rnd() % 4 == 0 {
                r.len()
            } else {
                100.min(r.len())
            };
            let at = (rnd() as usize) % span;
            r[at] = rnd() as u8;
        }
        if rnd() % 8 == 0 {
            let keep = (rnd() as usize) % r.len();
            r.truncate(keep);
        }
        rx.clear();
        rx.load(&r, true, &mut c, 1518);
        while let Some(f) = rx.next_frame() {
            assert!(f.len() <= 1518 && f.len() >= 14);
            out_frames += 1;
        }
    }
    let drops = c.rx_drop_bad_vnet
        + c.rx_drop_unsupported_gso
        + c.rx_drop_bad_gso
        + c.rx_drop_bad_headers
        + c.rx_drop_bad_csum
        + c.rx_drop_oversize
        + c.rx_drop_short;
    assert!(drops > 10_000, "{c:?}");
    assert_eq!(out_frames, c.rx_frames);
}

/// Coalescing the segments of a super-frame gives one frame whose virtio
/// header describes it; segmenting that again gives the same segments.
#[test]
fn gro_round_trip() {
    for v4 in [true, false] {
        for vlan in [false, true] {
            let mss = if v4 { 1448 } else { 1428 };
            let s = Spec {
                v4,
                vlan,
                ..Spec::tcp4(40_000, mss)
            };
            let frames = segment_and_check(&s, 1500);
            let mut g = Gro::new();
            let first = gro::classify(&frames[0]).expect("coalescable");
            assert!(g.start(&frames[0], &first));
            for f in &frames[1..] {
                let seg = gro::classify(f).expect("coalescable");
                assert!(g.append(f, &seg));
            }
            assert_eq!(g.segments(), frames.len());
            let merged = g.take().to_vec();
            assert!(g.is_empty());
            let h = vnet::Header::new_checked(&merged[..]).unwrap();
            assert_eq!(h.gso_type(), if v4 { gso::TCPV4 } else { gso::TCPV6 });
            assert_eq!(h.gso_size(), mss);
            assert!(h.needs_csum());
            let mut rx = PortRx::with_reads(1);
            let mut c = PortCounters::default();
            assert_eq!(rx.load(&merged, true, &mut c, 1518), frames.len());
            let mut again = Vec::new();
            rx.for_each_frame(|f| again.push(f.to_vec()));
            assert_eq!(again, frames);
        }
    }
}

/// What must not merge: a gap, another flow, a corrupted segment, SYN, a
/// segment after a short one or after PSH.
#[test]
fn gro_refuses_what_the_kernel_would() {
    let frames = segment_and_check(&Spec::tcp4(10_000, 1000), 1500);
    let start = |g: &mut Gro| {
        assert!(g.start(&frames[0], &gro::classify(&frames[0]).unwrap()));
    };
    let mut g = Gro::new();
    start(&mut g);
    // gap: segment 2 after 0
    assert!(!g.append(&frames[2], &gro::classify(&frames[2]).unwrap()));
    // another flow: different source port (checksum fixed up)
    let mut other = frames[1].clone();
    other[34] ^= 1;
    other[34 + 16] ^= 1;
    let seg = gro::classify(&other).expect("still valid");
    assert!(!g.append(&other, &seg));
    // corrupted payload: not even classified
    let mut bad = frames[1].clone();
    bad[100] ^= 0x40;
    assert!(gro::classify(&bad).is_none());
    // SYN or no payload: not coalescable
    let mut syn = frames[1].clone();
    syn[34 + 13] |= tcp::flags::SYN;
    assert!(gro::classify(&syn).is_none());
    // in order works, then a short segment closes it
    assert!(g.append(&frames[1], &gro::classify(&frames[1]).unwrap()));
    let last = frames.len() - 1;
    let mut g2 = Gro::new();
    assert!(g2.start(&frames[last], &gro::classify(&frames[last]).unwrap()));
    assert!(!g2.append(&frames[0], &gro::classify(&frames[0]).unwrap()));
    // one segment: written as it came, zero header
    let one = g2.take().to_vec();
    assert_eq!(&one[..vnet::HEADER_LEN], &[0u8; vnet::HEADER_LEN]);
    assert_eq!(&one[vnet::HEADER_LEN..], &frames[last][..]);
}

/// 100k pushes of segments with random bytes changed (checksums fixed up
/// half the time, so changed headers get past verification): never a panic,
/// and every frame the coalescer gives out is one the kernel would accept,
/// i.e. one our own receive side validates and cuts into frames whose
/// payload is the concatenation of what was merged.
#[test]
fn gro_hostile_segments_never_panic_and_output_stays_valid() {
    let frames = segment_and_check(&Spec::tcp4(20_000, 1000), 1500);
    let frames6 = segment_and_check(
        &Spec {
            v4: false,
            ..Spec::tcp4(9_000, 1000)
        },
        1500,
    );
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut g = Gro::new();
    let mut merged_payload: Vec<u8> = Vec::new();
    let mut taken = 0;
    let mut rx = PortRx::with_reads(1);
    let mut c = PortCounters::default();
    let mut check = |out: &[u8], want: &[u8]| {
        rx.clear();
        let n = rx.load(out, true, &mut c, 1600);
        assert!(n >= 1, "coalesced frame refused: {c:?}");
        let mut got = Vec::new();
        while let Some(f) = rx.next_frame() {
            let off = gro::classify(f).map(|_| ()).is_some();
            assert!(off, "a cut segment is not a valid TCP segment");
            let l4 = if f[12] == 0x86 { 54 } else { 34 };
            let hl = usize::from(f[l4 + 12] >> 4) * 4;
            got.extend_from_slice(&f[l4 + hl..]);
        }
        assert_eq!(got, want);
    };
    for i in 0..100_000usize {
        let src = if i % 3 == 0 { &frames6 } else { &frames };
        let mut f = src[(rnd() as usize) % src.len()].clone();
        if rnd() % 2 == 0 {
            let at = (rnd() as usize) % 80;
            f[at] = rnd() as u8;
            if rnd() % 2 == 0 {
                refix_checksums(&mut f);
            }
        }
        let before = g.segments();
        let plen = gro::classify(&f).map(|s| f.len() - s.header_len());
        if g.push(&f) {
            if before == 0 {
                merged_payload.clear();
            }
            merged_payload.extend_from_slice(&f[f.len() - plen.unwrap()..]);
        } else if !g.is_empty() {
            let out = g.take().to_vec();
            check(&out, &merged_payload);
            taken += 1;
        }
    }
    assert!(taken > 1000, "{taken}");
}

/// Recomputes the IPv4 header checksum and the TCP checksum of a frame
/// whose bytes were changed, when it still parses.
pub(super) fn refix_checksums(f: &mut [u8]) {
    if f[12..14] == [0x08, 0x00] {
        let Ok(mut p) = ipv4::Packet::new_checked(&mut f[14..]) else {
            return;
        };
        p.fill_checksum();
        let (src, dst, hl, tl) = (
            p.src_addr(),
            p.dst_addr(),
            p.header_len(),
            usize::from(p.total_len()),
        );
        if 14 + tl != f.len() || 14 + hl + 20 > f.len() {
            return;
        }
        let l4 = 14 + hl;
        f[l4 + 16..l4 + 18].fill(0);
        let ps = checksum::pseudo_header_v4(src, dst, tcp::PROTOCOL, (f.len() - l4) as u32);
        let c = checksum::finish(checksum::combine(&[ps, checksum::sum(&f[l4..])]));
        f[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
    } else if f.len() >= 54 + 20 {
        let p = ipv6::Packet::new_unchecked(&f[14..]);
        let (src, dst) = (p.src_addr(), p.dst_addr());
        f[54 + 16..54 + 18].fill(0);
        let ps = checksum::pseudo_header_v6(src, dst, tcp::PROTOCOL, (f.len() - 54) as u32);
        let c = checksum::finish(checksum::combine(&[ps, checksum::sum(&f[54..])]));
        f[54 + 16..54 + 18].copy_from_slice(&c.to_be_bytes());
    }
}
