//! Interop-shaped tests: captured kernel bytes in, kernel-parsable bytes
//! out, nodes configured like a kernel with a single gretap.

use std::time::{Duration, Instant};

use super::{frame, Link, Sim};
use crate::mesh::*;
use crate::wire::batman::tests::OGM as KERNEL_OGM;

#[test]
fn kernel_ogm_creates_originator() {
    let t0 = Instant::now();
    let mut m = Mesh::new(MeshConfig::new(MacAddr([2, 0, 0, 0, 0x0b, 0])));
    m.hardif_add(1, MacAddr([2, 0, 0, 0, 0x0b, 1]));
    let kernel_hardif = MacAddr([2, 0, 0, 0, 0x0a, 1]);
    let mut out = Vec::new();
    m.receive(
        t0,
        1,
        kernel_hardif,
        MacAddr::BROADCAST,
        &KERNEL_OGM,
        &mut out,
    );
    assert!(out.is_empty(), "rebroadcasts wait for aggregation");
    assert!(m.next_deadline() <= t0 + Duration::from_millis(10));
    // Our own OGM is due as well: the echo rides in the same packet.
    m.tick(t0 + Duration::from_millis(10), &mut out);
    let o = m.originators();
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].orig, kernel_hardif);
    assert_eq!(m.counters().malformed, 0);
    // We echo it back on the same link the way the kernel expects: TTL 49,
    // DIRECTLINK, prev_sender = the kernel's hardif.
    let [MeshOutput::Transmit {
        hardif: 1, packet, ..
    }] = out.as_slice()
    else {
        panic!("one aggregate expected: {out:?}")
    };
    assert!(packet.len() <= 512);
    let ogms: Vec<_> = crate::wire::batman::OgmIter::new(packet)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(ogms.len(), 3, "primary, secondary, echo");
    let p = &ogms[2];
    assert_eq!(
        (p.ttl(), p.orig(), p.prev_sender()),
        (49, kernel_hardif, kernel_hardif)
    );
    assert_ne!(p.flags() & crate::wire::batman::ogm::flags::DIRECTLINK, 0);
    assert_eq!(p.tvlv(), &KERNEL_OGM[24..], "TVLVs forwarded untouched");
    // Truncated or corrupted captures are counted, not trusted.
    m.receive(
        t0,
        1,
        kernel_hardif,
        MacAddr::BROADCAST,
        &KERNEL_OGM[..40],
        &mut out,
    );
    assert_eq!(m.counters().malformed, 1);
}

#[test]
fn own_ogm_layout_is_what_a_kernel_parses() {
    let t0 = Instant::now();
    let mut m = Mesh::new(MeshConfig::new(MacAddr([2, 0, 0, 0, 0x0c, 0])));
    m.hardif_add(4, MacAddr([2, 0, 0, 0, 0x0c, 4]));
    m.tt_local_add(MacAddr([2, 0xcc, 0, 0, 0, 1]), 0);
    let mut out = Vec::new();
    m.tick(t0, &mut out);
    let MeshOutput::Transmit {
        hardif,
        dst,
        packet,
    } = &out[0]
    else {
        panic!()
    };
    assert_eq!((*hardif, *dst), (4, MacAddr::BROADCAST));
    let ogms: Vec<_> = crate::wire::batman::OgmIter::new(packet)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(ogms.len(), 2, "primary + secondary aggregated");
    let (p, s) = (&ogms[0], &ogms[1]);
    assert_eq!(
        (p.ttl(), p.tq(), p.orig(), p.flags()),
        (50, 255, MacAddr([2, 0, 0, 0, 0x0c, 0]), 0)
    );
    assert_eq!(
        (s.ttl(), s.tq(), s.orig(), s.tvlv_len()),
        (2, 255, MacAddr([2, 0, 0, 0, 0x0c, 4]), 0)
    );
    let tv: Vec<_> = crate::wire::batman::TvlvIter::new(p.tvlv())
        .map(|t| t.unwrap())
        .collect();
    assert_eq!(tv.len(), 4, "TT, DAT, MCAST and our scope container");
    assert_eq!(
        (tv[1].tvlv_type, tv[1].version, tv[1].value.len()),
        (crate::wire::batman::tvlv::tvlv_type::DAT, 1, 0),
        "the DAT capability, as a kernel with distributed_arp_table on sends it"
    );
    assert_eq!(
        (tv[2].tvlv_type, tv[2].version, tv[2].value),
        (
            crate::wire::batman::tvlv::tvlv_type::MCAST,
            2,
            &[7, 0, 0, 0][..]
        ),
        "MCAST v2: want all unsnoopable, IPv4 and IPv6 multicast"
    );
    assert_eq!(
        (tv[3].tvlv_type, tv[3].version),
        (crate::wire::batman::tvlv::tvlv_type::MESHWIRE_SCOPE, 1),
        "the scope container comes after TT, which kernels read first"
    );
    let tt = crate::wire::batman::TtData::new_checked(tv[0].value).unwrap();
    assert_eq!(
        (tt.flags(), tt.ttvn(), tt.num_vlan(), tt.num_changes()),
        (1, 1, 1, 1)
    );
    let crc = translation_table::tt_entry_crc(MacAddr([2, 0xcc, 0, 0, 0, 1]), 0, 0);
    assert_eq!(tt.vlans().next().unwrap().crc, crc);
    assert_eq!(
        tt.changes().next().unwrap().addr,
        MacAddr([2, 0xcc, 0, 0, 0, 1])
    );
}

#[test]
fn hostile_packets_into_receive_never_panic() {
    let t0 = Instant::now();
    let mut m = Mesh::new(MeshConfig::new(MacAddr([2, 0, 0, 0, 0x0d, 0])));
    m.hardif_add(1, MacAddr([2, 0, 0, 0, 0x0d, 1]));
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let types = [0x00u8, 0x01, 0x40, 0x41, 0x42, 0x43, 0x44, 0x05, 0xff];
    let mut out = Vec::new();
    for i in 0..20_000u32 {
        let len = (rnd() % 200) as usize;
        let mut p: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        if len >= 3 {
            p[0] = types[(rnd() % types.len() as u64) as usize];
            p[1] = 15;
        }
        let src = MacAddr([2, 0, 0, 0, 0x0e, (rnd() % 4) as u8]);
        let dst = if i % 2 == 0 {
            MacAddr::BROADCAST
        } else {
            MacAddr([2, 0, 0, 0, 0x0d, 1])
        };
        m.receive(
            t0 + Duration::from_millis(u64::from(i)),
            1,
            src,
            dst,
            &p,
            &mut out,
        );
        out.clear();
    }
    assert!(m.counters().malformed > 0);
    assert!(m.originators().len() <= MAX_ORIGINATORS);
}

/// Two nodes where node 1 is set up like a kernel with one gretap: its
/// originator is its hard interface MAC (02:00:00:00:0b:01), node 0 plays
/// 02:00:00:00:0a:01 likewise, so the captured batctl ping bytes apply.
fn kernel_like_pair() -> (Sim, MacAddr, MacAddr) {
    let a = MacAddr([2, 0, 0, 0, 0x0a, 1]);
    let b = MacAddr([2, 0, 0, 0, 0x0b, 1]);
    let mut s = Sim::new(0);
    for mac in [a, b] {
        s.nodes.push(Mesh::new(MeshConfig::new(mac)));
        s.delivered.push(Vec::new());
    }
    s.nodes[0].hardif_add(1, a);
    s.nodes[1].hardif_add(1, b);
    s.links.push(Link {
        a: (0, 1, a),
        b: (1, 1, b),
        up: true,
    });
    (s, a, b)
}

#[test]
fn originator_equal_to_hardif_mac_works_like_a_kernel_single_gretap() {
    let (mut s, a, b) = kernel_like_pair();
    s.run(Duration::from_secs(10));
    let o = s.nodes[0].originators();
    assert_eq!(o.len(), 1, "no separate secondary originator");
    assert_eq!((o[0].orig, o[0].next_hop), (b, Some(b)));
    assert!(o[0].tq > 0);
    let mut out = Vec::new();
    assert!(s.nodes[1].send_unicast(s.now, a, &frame(4), &mut out));
    s.run_outputs(1, out);
    assert_eq!(s.delivered[0].len(), 1);
}

#[test]
fn answers_captured_batctl_ping() {
    use crate::wire::batman::tests::ICMP;
    let (mut s, a, b) = kernel_like_pair();
    s.run(Duration::from_secs(10));
    let mut out = Vec::new();
    s.nodes[1].receive(s.now, 1, a, b, &ICMP, &mut out);
    let [MeshOutput::Transmit {
        hardif: 1,
        dst,
        packet,
    }] = out.as_slice()
    else {
        panic!("one reply expected: {out:?}")
    };
    assert_eq!(*dst, a);
    let r = crate::wire::batman::IcmpPacket::new_checked(&packet[..]).unwrap();
    assert_eq!(
        (r.msg_type(), r.dest(), r.orig(), r.seqno(), r.uid()),
        (0, a, b, 1, 0xd7)
    );
    assert_eq!(r.ttl(), TTL);
}

#[test]
fn kernel_format_tt_request_gets_full_table_response() {
    let (mut s, a, b) = kernel_like_pair();
    let client = MacAddr([2, 0, 0, 0, 0x0b, 0]);
    s.nodes[1].tt_local_add(client, 0);
    s.run(Duration::from_secs(10));
    // A TT_REQUEST as batadv_send_tt_request builds it: UNICAST_TVLV 0x44,
    // dst b, src a, TT TVLV v1 {flags REQUEST|FULL_TABLE, ttvn 1, 1 VLAN}.
    let crc = translation_table::tt_entry_crc(client, 0, 0);
    let mut req = vec![0x44, 0x0f, 0x32, 0x00];
    req.extend_from_slice(&b.0);
    req.extend_from_slice(&a.0);
    req.extend_from_slice(&[0x00, 0x10, 0x00, 0x00]); // tvlv_len 16, align
    req.extend_from_slice(&[0x04, 0x01, 0x00, 0x0c, 0x12, 0x01, 0x00, 0x01]);
    req.extend_from_slice(&crc.to_be_bytes());
    req.extend_from_slice(&[0, 0, 0, 0]);
    let mut out = Vec::new();
    s.nodes[1].receive(s.now, 1, a, b, &req, &mut out);
    let [MeshOutput::Transmit { dst, packet, .. }] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(*dst, a);
    let p = crate::wire::batman::UnicastTvlvPacket::new_checked(&packet[..]).unwrap();
    assert_eq!((p.dest(), p.src(), p.ttl()), (a, b, TTL));
    let t = crate::wire::batman::TvlvIter::new(p.tvlv())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!((t.tvlv_type, t.version), (4, 1));
    let tt = crate::wire::batman::TtData::new_checked(t.value).unwrap();
    assert_eq!((tt.flags(), tt.ttvn(), tt.num_vlan()), (0x14, 1, 1));
    assert_eq!(tt.vlans().next().unwrap().crc, crc);
    let ch: Vec<_> = tt.changes().collect();
    assert_eq!(ch.len(), 1);
    assert_eq!((ch[0].flags, ch[0].addr, ch[0].vid), (0, client, 0));
    assert_eq!(s.nodes[1].counters().tt_requests_answered, 1);
}

#[test]
fn roam_adv_moves_client_and_hardif_del_drops_routes() {
    let (mut s, a, b) = kernel_like_pair();
    s.run(Duration::from_secs(10));
    let client = MacAddr([2, 0x77, 0, 0, 0, 1]);
    s.nodes[1].tt_local_add(client, 0);
    let mut roam = vec![0x44, 0x0f, 0x32, 0x00];
    roam.extend_from_slice(&b.0);
    roam.extend_from_slice(&a.0);
    roam.extend_from_slice(&[0x00, 0x0c, 0x00, 0x00]);
    roam.extend_from_slice(&[0x05, 0x01, 0x00, 0x08]);
    roam.extend_from_slice(&client.0);
    roam.extend_from_slice(&[0, 0]);
    let mut out = Vec::new();
    s.nodes[1].receive(s.now, 1, a, b, &roam, &mut out);
    assert_eq!(s.nodes[1].tt_global_lookup(client, 0), Some(a));
    assert_eq!(s.nodes[1].counters().roam_received, 1);
    assert!(
        s.nodes[1].tt_local_entries().is_empty(),
        "never announced, so simply gone"
    );
    // The dataplane hears that its client left, once.
    assert_eq!(s.nodes[1].take_roamed_away(), vec![(client, 0, a)]);
    assert!(s.nodes[1].take_roamed_away().is_empty());
    // A ROAM for a client that is not ours changes nothing locally.
    s.nodes[1].receive(s.now, 1, a, b, &roam, &mut out);
    assert!(s.nodes[1].take_roamed_away().is_empty());
    s.nodes[1].hardif_del(1);
    assert!(s.nodes[1]
        .originators()
        .iter()
        .all(|o| o.next_hop.is_none()));
    assert!(!s.nodes[1].send_unicast(s.now, a, &frame(1), &mut out));
}

fn capture_lines() -> Vec<Vec<u8>> {
    include_str!("frag_capture.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            (0..l.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn reassembles_captured_kernel_fragments() {
    let caps = capture_lines();
    let (f0, f1, merged) = (&caps[0], &caps[1], &caps[2]);
    let a = MacAddr([2, 0, 0, 0, 0x0a, 1]);
    let b = MacAddr([2, 0, 0, 0, 0x0b, 1]);
    let t0 = Instant::now();
    let mut m = Mesh::new(MeshConfig::new(b));
    m.hardif_add(1, b);
    let mut out = Vec::new();
    // the kernel sent fragment 0 (the tail) first
    m.receive(t0, 1, a, b, f0, &mut out);
    assert!(out.is_empty());
    m.receive(t0, 1, a, b, f1, &mut out);
    let [MeshOutput::Deliver {
        frame,
        source_orig: None,
        broadcast: false,
        ..
    }] = out.as_slice()
    else {
        panic!("{out:?}")
    };
    assert_eq!(
        frame.as_slice(),
        &merged[10..],
        "the 1442-byte ping frame, as tshark reassembled it"
    );
    assert_eq!(m.counters().frag_reassembled, 1);
    // a duplicate fragment starts a new chain that never completes, and times out
    out.clear();
    m.receive(t0, 1, a, b, f1, &mut out);
    m.receive(t0, 1, a, b, f1, &mut out);
    assert!(out.is_empty());
    assert_eq!(m.counters().frag_dropped, 1);
    m.receive(t0, 1, a, b, f0, &mut out);
    m.tick(t0 + Duration::from_secs(11), &mut out);
    assert!(!out.iter().any(|o| matches!(o, MeshOutput::Deliver { .. })));
    assert_eq!(m.counters().frag_dropped, 2);
}

#[test]
fn fragments_like_the_kernel_byte_for_byte() {
    let caps = capture_lines();
    let a = MacAddr([2, 0, 0, 0, 0x0a, 1]);
    let b = MacAddr([2, 0, 0, 0, 0x0b, 1]);
    // The kernel's 1452-byte unicast over gretap MTU 1382, seqno 45453.
    let frags = crate::mesh::fragmentation::frag_split(&caps[2], 1382, b, a, 45453).unwrap();
    assert_eq!(frags, vec![caps[0].clone(), caps[1].clone()]);
    // Through the public path: our unicast to a kernel-like node over a 1382 link.
    let (mut s, _, _) = kernel_like_pair();
    s.nodes[0].hardif_set_mtu(1, 1382);
    s.run(Duration::from_secs(10));
    let big = caps[2][10..].to_vec();
    let mut out = Vec::new();
    assert!(s.nodes[0].send_unicast(s.now, b, &big, &mut out));
    assert_eq!(out.len(), 2);
    assert!(out
        .iter()
        .all(|o| matches!(o, MeshOutput::Transmit { packet, .. } if packet.len() <= 1382)));
    s.run_outputs(0, out);
    assert_eq!(s.delivered[1], vec![(big, None, false)]);
}

/// The kernel's local table behind the captured OGMs: bat0's MAC plus the
/// multicast listeners batman-adv 2022.3 announces in TT (solicited-node
/// groups of fe80::ff:fe00:X00 and fd00:198:19:1::N, ff02::1, 224.0.0.1).
/// Our CRC of the same table must equal the one the kernel put on the wire
/// (A: 0x1be95e8e, B: 0x08b9ad7a in every captured OGM).
#[test]
fn tt_crc_matches_captured_kernel_ogms() {
    for (node, last, wire_crc) in [(0x0au8, 1u8, 0x1be9_5e8eu32), (0x0b, 2, 0x08b9_ad7a)] {
        let t0 = Instant::now();
        let mut m = Mesh::new(MeshConfig::new(MacAddr([2, 0, 0, 0, node, 1])));
        m.hardif_add(1, MacAddr([2, 0, 0, 0, node, 1]));
        for mac in [
            [2, 0, 0, 0, node, 0],
            [0x33, 0x33, 0xff, 0, node, 0],
            [0x33, 0x33, 0xff, 0, 0, last],
            [0x33, 0x33, 0, 0, 0, 1],
            [0x01, 0x00, 0x5e, 0, 0, 1],
        ] {
            m.tt_local_add(MacAddr(mac), 0);
        }
        let mut out = Vec::new();
        m.tick(t0, &mut out);
        let MeshOutput::Transmit { packet, .. } = &out[0] else {
            panic!()
        };
        let ogm = crate::wire::batman::OgmPacket::new_checked(&packet[..]).unwrap();
        let tv = crate::wire::batman::TvlvIter::new(ogm.tvlv())
            .next()
            .unwrap()
            .unwrap();
        let tt = crate::wire::batman::TtData::new_checked(tv.value).unwrap();
        assert_eq!(tt.vlans().next().unwrap().crc, wire_crc, "node {node:#x}");
    }
    // The global side: the captured OGM's CRC is accepted once we hold the same table.
    let kernel = MacAddr([2, 0, 0, 0, 0x0a, 1]);
    let mut ott = crate::mesh::translation_table::OrigTt::default();
    let mut tt = crate::mesh::translation_table::TranslationTable::default();
    for mac in [
        [2, 0, 0, 0, 0x0a, 0],
        [0x33, 0x33, 0xff, 0, 0x0a, 0],
        [0x33, 0x33, 0xff, 0, 0, 1],
        [0x33, 0x33, 0, 0, 0, 1],
        [1, 0, 0x5e, 0, 0, 1],
    ] {
        let c = crate::wire::batman::TtChange {
            flags: 0,
            addr: MacAddr(mac),
            vid: 0,
        };
        assert!(tt.global_add(&mut ott, kernel, &c));
    }
    let cap = crate::wire::batman::OgmPacket::new_checked(&KERNEL_OGM[..]).unwrap();
    let tv = crate::wire::batman::TvlvIter::new(cap.tvlv())
        .next()
        .unwrap()
        .unwrap();
    let vlans: Vec<_> = crate::wire::batman::TtData::new_checked(tv.value)
        .unwrap()
        .vlans()
        .collect();
    assert!(ott.check_crc(&vlans));
}
