//! UDP coalescing (USO) on crafted datagrams: what is coalescable, what
//! continues a super-frame, and that every super-frame given out is one our
//! own receive side (the same cut the kernel does) turns back into exactly
//! the datagrams that went in. Hostile and truncated frames never panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::port::gro_udp::{self, UdpGro, MAX_SEGMENTS};
use crate::port::ports::PortCounters;
use crate::port::rx::PortRx;
use crate::wire::ethernet::ethertype;
use crate::wire::vnet::{self, gso};
use crate::wire::{checksum, ipv4, ipv6, udp};

const SRC4: Ipv4Addr = Ipv4Addr::new(198, 19, 8, 1);
const DST4: Ipv4Addr = Ipv4Addr::new(198, 19, 8, 2);
const SRC6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 8, 0, 0, 0, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 8, 0, 0, 0, 2);
const FAR4: Ipv4Addr = Ipv4Addr::new(198, 19, 9, 1);
const FAR6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 9, 0, 0, 0, 1);

/// One datagram's shape.
#[derive(Clone, Copy, Debug)]
pub(super) struct Dg {
    pub v4: bool,
    pub vlan: bool,
    pub sport: u16,
    pub id: u16,
    pub df: bool,
    /// To the far side of the test router (198.19.9.1, fd00:0:0:9::1).
    pub far: bool,
}

impl Dg {
    pub(super) fn v4() -> Dg {
        Dg {
            v4: true,
            vlan: false,
            sport: 40000,
            id: 0xfff0,
            df: false,
            far: false,
        }
    }
}

/// Payload `n` bytes long, different for each `k`.
pub(super) fn payload(n: usize, k: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(13) ^ (k as u8).wrapping_mul(101) ^ (k >> 8) as u8)
        .collect()
}

/// A valid Ethernet/IP/UDP frame to 5001 with a correct checksum.
pub(super) fn dgram(d: &Dg, data: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    if d.vlan {
        f.extend_from_slice(&ethertype::VLAN.to_be_bytes());
        f.extend_from_slice(&[0x20, 0x2a]);
    }
    let l4_len = udp::HEADER_LEN + data.len();
    if d.v4 {
        f.extend_from_slice(&ethertype::IPV4.to_be_bytes());
        let mut h = [0u8; 20];
        let mut p = ipv4::Packet::new_unchecked(&mut h[..]);
        p.set_version_and_header_len(20);
        p.set_total_len((20 + l4_len) as u16);
        p.set_ident(d.id);
        p.set_unfragmented(d.df);
        p.set_ttl(64);
        p.set_protocol(udp::PROTOCOL);
        p.set_src_addr(SRC4);
        p.set_dst_addr(if d.far { FAR4 } else { DST4 });
        p.fill_checksum();
        f.extend_from_slice(&h);
    } else {
        f.extend_from_slice(&ethertype::IPV6.to_be_bytes());
        let mut h = [0u8; 40];
        let mut p = ipv6::Packet::new_unchecked(&mut h[..]);
        p.set_version_tc_flow(0, 0x5678);
        p.set_payload_len(l4_len as u16);
        p.set_next_header(udp::PROTOCOL);
        p.set_hop_limit(64);
        p.set_src_addr(SRC6);
        p.set_dst_addr(if d.far { FAR6 } else { DST6 });
        f.extend_from_slice(&h);
    }
    f.extend_from_slice(&d.sport.to_be_bytes());
    f.extend_from_slice(&5001u16.to_be_bytes());
    f.extend_from_slice(&(l4_len as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(data);
    refix_udp(&mut f);
    f
}

/// Recomputes the IPv4 header checksum and the UDP checksum (over the UDP
/// length the header says) of a frame built by [`dgram`], when it still
/// parses that far.
pub(super) fn refix_udp(f: &mut [u8]) {
    let l3 = if f.get(12..14) == Some(&[0x81, 0x00]) {
        18
    } else {
        14
    };
    let Some(et) = f.get(l3 - 2..l3) else {
        return;
    };
    let v4 = et == [0x08, 0x00];
    let (l4, ps) = if v4 {
        let Ok(mut p) = ipv4::Packet::new_checked(&mut f[l3..]) else {
            return;
        };
        p.fill_checksum();
        let ps = checksum::pseudo_header_v4(p.src_addr(), p.dst_addr(), udp::PROTOCOL, 0);
        (l3 + p.header_len(), ps)
    } else {
        let Ok(p) = ipv6::Packet::new_checked(&f[l3..]) else {
            return;
        };
        let ps = checksum::pseudo_header_v6(p.src_addr(), p.dst_addr(), udp::PROTOCOL, 0);
        (l3 + ipv6::HEADER_LEN, ps)
    };
    let Some(len) = f.get(l4 + 4..l4 + 6) else {
        return;
    };
    let end = l4 + usize::from(u16::from_be_bytes([len[0], len[1]]));
    if end > f.len() || end < l4 + 8 {
        return;
    }
    f[l4 + 6..l4 + 8].fill(0);
    let c = checksum::combine(&[ps, (end - l4) as u16, checksum::sum(&f[l4..end])]);
    let c = match checksum::finish(c) {
        0 => 0xffff,
        c => c,
    };
    f[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
}

/// Feeds `frames` through one coalescer the way the pool does (a frame
/// that does not continue the pending one writes that first) and returns
/// what would be written.
fn coalesce(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut g = UdpGro::new();
    let mut out = Vec::new();
    for f in frames {
        if g.push(f) {
            continue;
        }
        if !g.is_empty() {
            out.push(g.take().to_vec());
        }
        if !g.push(f) {
            // Not coalescable: written as it is, with a zero header.
            let mut w = vec![0u8; vnet::HEADER_LEN];
            w.extend_from_slice(f);
            out.push(w);
        }
    }
    if !g.is_empty() {
        out.push(g.take().to_vec());
    }
    out
}

/// What our receive side (the kernel's cut, done our way) makes of the
/// writes.
fn cut(writes: &[Vec<u8>], max_frame: usize) -> Vec<Vec<u8>> {
    let mut rx = PortRx::with_reads(1);
    let mut c = PortCounters::default();
    let mut frames = Vec::new();
    for w in writes {
        rx.clear();
        assert!(rx.load(w, true, &mut c, max_frame) >= 1, "refused: {c:?}");
        rx.for_each_frame(|f| frames.push(f.to_vec()));
    }
    frames
}

#[test]
fn classify_takes_ipv4_ipv6_and_tagged_datagrams() {
    for (v4, vlan) in [(true, false), (false, false), (true, true), (false, true)] {
        let d = Dg {
            v4,
            vlan,
            ..Dg::v4()
        };
        let data = payload(100, 1);
        let f = dgram(&d, &data);
        let s = gro_udp::classify(&f).expect("coalescable");
        let hdr = 14 + 4 * usize::from(vlan) + if v4 { 20 } else { 40 } + 8;
        assert_eq!(s.header_len(), hdr);
        assert_eq!(s.payload(&f), &data[..]);
    }
}

#[test]
fn classify_refuses_what_must_go_out_alone() {
    let d = Dg::v4();
    let good = dgram(&d, &payload(100, 2));
    assert!(gro_udp::classify(&good).is_some());
    let l4 = 34;
    // Checksum 0 (legal "none" on IPv4): the kernel would invent one.
    let mut zero = good.clone();
    zero[l4 + 6..l4 + 8].fill(0);
    assert!(gro_udp::classify(&zero).is_none());
    // A corrupted payload: the checksum no longer verifies.
    let mut bad = good.clone();
    bad[80] ^= 0x10;
    assert!(gro_udp::classify(&bad).is_none());
    // A wrong IPv4 header checksum.
    let mut badip = good.clone();
    badip[14 + 8] = 63;
    assert!(gro_udp::classify(&badip).is_none());
    // Fragments: MF, or an offset (checksums fixed up).
    for frag in [[0x20, 0x00], [0x00, 0x10]] {
        let mut f = good.clone();
        f[14 + 6..14 + 8].copy_from_slice(&frag);
        refix_udp(&mut f);
        assert!(gro_udp::classify(&f).is_none());
    }
    // UDP length shorter than the IP payload.
    let mut short = good.clone();
    short[l4 + 4..l4 + 6].copy_from_slice(&100u16.to_be_bytes());
    refix_udp(&mut short);
    assert!(gro_udp::classify(&short).is_none());
    // No payload.
    assert!(gro_udp::classify(&dgram(&d, &[])).is_none());
    // Bytes after the IP packet of a frame that needs no padding.
    let mut trailer = good.clone();
    trailer.extend_from_slice(&[0; 4]);
    assert!(gro_udp::classify(&trailer).is_none());
    // IPv6 with an extension header (hop-by-hop) first.
    let mut ext = dgram(
        &Dg {
            v4: false,
            ..Dg::v4()
        },
        &payload(100, 2),
    );
    ext[14 + 6] = 0;
    assert!(gro_udp::classify(&ext).is_none());
    // Not UDP.
    let mut tcp = good.clone();
    tcp[14 + 9] = 6;
    refix_udp(&mut tcp);
    assert!(gro_udp::classify(&tcp).is_none());
}

/// A 2-byte datagram is padded to 60 bytes on the wire: accepted, and the
/// padding is not payload (nor written out).
#[test]
fn minimum_frame_padding_is_not_payload() {
    let frames: Vec<Vec<u8>> = (0..5)
        .map(|k| {
            let mut f = dgram(
                &Dg {
                    id: k as u16,
                    ..Dg::v4()
                },
                &payload(2, k),
            );
            f.resize(60, 0xee);
            f
        })
        .collect();
    let s = gro_udp::classify(&frames[0]).expect("padded minimum frame");
    assert_eq!(s.payload_len(), 2);
    let writes = coalesce(&frames);
    assert_eq!(writes.len(), 1);
    let back = cut(&writes, 1518);
    assert_eq!(back.len(), 5);
    for (b, f) in back.iter().zip(&frames) {
        assert_eq!(&b[..], &f[..44]);
    }
}

/// Every shape, 64-byte frames to full-MTU ones, with a short last one:
/// super-frames of at most 64 datagrams whose header is what the kernel
/// expects, cut back into the very frames that went in (IDs included).
#[test]
fn round_trip_through_our_receive_side() {
    for (v4, vlan) in [(true, false), (false, false), (true, true), (false, true)] {
        let hdr = 14 + 4 * usize::from(vlan) + if v4 { 28 } else { 48 };
        let full = 1500 + 14 + 4 * usize::from(vlan) - hdr;
        for size in [18, 200, 1000, full] {
            let n = 150;
            let frames: Vec<Vec<u8>> = (0..n)
                .map(|k| {
                    let d = Dg {
                        v4,
                        vlan,
                        id: 0xffc0u16.wrapping_add(k as u16),
                        ..Dg::v4()
                    };
                    let len = if k == n - 1 { size / 2 } else { size };
                    dgram(&d, &payload(len, k))
                })
                .collect();
            let writes = coalesce(&frames);
            let ip_cap = (65_535 - if v4 { 28 } else { 48 }) / size;
            let per = MAX_SEGMENTS.min(ip_cap);
            assert_eq!(writes.len(), n.div_ceil(per), "size {size}");
            let h = vnet::Header::new_checked(&writes[0][..]).unwrap();
            assert_eq!(h.gso_type(), gso::UDP_L4);
            assert_eq!(h.flags(), vnet::F_NEEDS_CSUM);
            assert_eq!(usize::from(h.gso_size()), size);
            assert_eq!(usize::from(h.hdr_len()), hdr);
            assert_eq!(usize::from(h.csum_start()), hdr - 8);
            assert_eq!(h.csum_offset(), 6);
            let frame = &writes[0][vnet::HEADER_LEN..];
            let l4 = hdr - 8;
            let udp_len = u16::from_be_bytes([frame[l4 + 4], frame[l4 + 5]]);
            assert_eq!(usize::from(udp_len), frame.len() - l4);
            assert_eq!(usize::from(udp_len), 8 + per * size);
            // The partial checksum: the pseudo-header sum with that length.
            let ps = if v4 {
                checksum::pseudo_header_v4(SRC4, DST4, 17, u32::from(udp_len))
            } else {
                checksum::pseudo_header_v6(SRC6, DST6, 17, u32::from(udp_len))
            };
            assert_eq!(frame[l4 + 6..l4 + 8], ps.to_be_bytes());
            let mtu_frame = 1500 + 14 + 4 * usize::from(vlan);
            assert_eq!(cut(&writes, mtu_frame), frames, "size {size}");
        }
    }
}

/// What must not merge into a pending super-frame.
#[test]
fn append_refuses_what_the_kernel_would_not_give_back() {
    let base = Dg::v4();
    let mk = |d: Dg, k: usize, len: usize| dgram(&d, &payload(len, k));
    let start = |f: &[u8]| {
        let mut g = UdpGro::new();
        assert!(g.start(f, &gro_udp::classify(f).unwrap()));
        g
    };
    let try_append = |g: &mut UdpGro, f: &[u8]| g.append(f, &gro_udp::classify(f).unwrap());
    let first = mk(base, 0, 500);
    let next = |k: u16| Dg {
        id: base.id.wrapping_add(k),
        ..base
    };
    // Another flow: not the same flow, not appended.
    let mut g = start(&first);
    let other = mk(
        Dg {
            sport: 40001,
            ..next(1)
        },
        1,
        500,
    );
    assert!(!g.same_flow(&other, &gro_udp::classify(&other).unwrap()));
    assert!(!try_append(&mut g, &other));
    // Longer than gso_size; an ID gap without DF; another TTL.
    assert!(!try_append(&mut g, &mk(next(1), 1, 501)));
    assert!(!try_append(&mut g, &mk(next(2), 1, 500)));
    let mut ttl = mk(next(1), 1, 500);
    ttl[14 + 8] = 1;
    refix_udp(&mut ttl);
    assert!(g.same_flow(&ttl, &gro_udp::classify(&ttl).unwrap()));
    assert!(!try_append(&mut g, &ttl));
    assert_eq!(g.segments(), 1);
    // In order works; a short one closes the frame.
    assert!(try_append(&mut g, &mk(next(1), 1, 500)));
    assert!(try_append(&mut g, &mk(next(2), 2, 499)));
    assert!(!try_append(&mut g, &mk(next(3), 3, 500)));
    assert_eq!(g.segments(), 3);
    // With DF the ID does not matter (atomic datagrams).
    let df = |id: u16| Dg {
        df: true,
        id,
        ..base
    };
    let mut g = start(&mk(df(7), 0, 500));
    assert!(try_append(&mut g, &mk(df(7), 1, 500)));
    assert!(try_append(&mut g, &mk(df(0), 2, 500)));
    // At most MAX_SEGMENTS datagrams.
    let mut g = start(&mk(df(0), 0, 10));
    for k in 1..MAX_SEGMENTS {
        assert!(try_append(&mut g, &mk(df(0), k, 10)));
    }
    assert!(!try_append(&mut g, &mk(df(0), 99, 10)));
    // At most 64 KB of IP packet: 44 x 1472 fits, 45 does not.
    let mut g = start(&mk(df(0), 0, 1472));
    for k in 1..44 {
        assert!(try_append(&mut g, &mk(df(0), k, 1472)));
    }
    assert!(!try_append(&mut g, &mk(df(0), 44, 1472)));
    // One datagram: written as it came, zero header.
    let mut g = start(&first);
    let one = g.take().to_vec();
    assert_eq!(&one[..vnet::HEADER_LEN], &[0u8; vnet::HEADER_LEN]);
    assert_eq!(&one[vnet::HEADER_LEN..], &first[..]);
    assert!(g.is_empty());
}

/// Every prefix of valid frames, and a coalescer on a buffer too short:
/// refused, never a panic.
#[test]
fn truncated_frames_and_short_buffers_never_panic() {
    for (v4, vlan) in [(true, false), (false, true)] {
        let d = Dg {
            v4,
            vlan,
            ..Dg::v4()
        };
        let f = dgram(&d, &payload(300, 3));
        for n in 0..f.len() {
            assert!(gro_udp::classify(&f[..n]).is_none(), "prefix {n}");
            let mut g = UdpGro::new();
            assert!(!g.push(&f[..n]));
        }
        let mut g = UdpGro::with_buf(vec![0u8; 100].into_boxed_slice());
        assert!(!g.push(&f));
        assert!(g.is_empty());
        assert_eq!(g.take().len(), vnet::HEADER_LEN);
    }
}

/// 100k pushes of datagrams with random bytes changed (checksums fixed up
/// half the time): never a panic, and every super-frame is cut by our
/// receive side into valid datagrams carrying exactly the merged payloads.
#[test]
fn hostile_datagrams_never_panic_and_output_stays_valid() {
    let mk = |v4: bool, k: usize| {
        let d = Dg {
            v4,
            id: k as u16,
            ..Dg::v4()
        };
        dgram(&d, &payload(if k % 7 == 6 { 300 } else { 600 }, k))
    };
    let pool: Vec<Vec<u8>> = (0..40).map(|k| mk(k % 4 != 0, k)).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut g = UdpGro::new();
    let mut merged: Vec<u8> = Vec::new();
    let mut taken = 0;
    let check = |out: &[u8], want: &[u8]| {
        let frames = cut(&[out.to_vec()], 1600);
        let mut got = Vec::new();
        for f in &frames {
            let s = gro_udp::classify(f).expect("a cut datagram is valid");
            got.extend_from_slice(s.payload(f));
        }
        assert_eq!(got, want);
    };
    for _ in 0..100_000usize {
        let mut f = pool[(rnd() as usize) % pool.len()].clone();
        if rnd() % 2 == 0 {
            let at = (rnd() as usize) % 70;
            f[at] = rnd() as u8;
            if rnd() % 2 == 0 {
                refix_udp(&mut f);
            }
        }
        if rnd() % 16 == 0 {
            f.truncate((rnd() as usize) % f.len());
        }
        let before = g.segments();
        let seg = gro_udp::classify(&f);
        if g.push(&f) {
            if before == 0 {
                merged.clear();
            }
            merged.extend_from_slice(seg.unwrap().payload(&f));
        } else if !g.is_empty() {
            let out = g.take().to_vec();
            check(&out, &merged);
            taken += 1;
            if g.push(&f) {
                merged.clear();
                merged.extend_from_slice(seg.unwrap().payload(&f));
            }
        }
    }
    assert!(taken > 1000, "{taken}");
}
