//! Tests on real bytes captured from a Linux batman-adv 2022.3 node
//! (`../shared/refvm/captures/*.decode.txt`) and a hostile-input sweep.

use super::tvlv::{tt_flags, tvlv_type, Tvlv};
use super::*;

/// IV_OGM from A-gt-B frame 1: orig 02:00:00:00:0a:01, TT v1 + MCAST v2 + DAT v1.
pub(crate) const OGM: [u8; 52] = [
    0x00, 0x0f, 0x32, 0x00, 0xd4, 0xcd, 0x4f, 0x7b, 0x02, 0x00, 0x00, 0x00, 0x0a, 0x01, 0x02, 0x00,
    0x00, 0x00, 0x0a, 0x01, 0x00, 0xff, 0x00, 0x1c, 0x04, 0x01, 0x00, 0x0c, 0x01, 0x02, 0x00, 0x01,
    0x1b, 0xe9, 0x5e, 0x8e, 0x00, 0x00, 0x00, 0x00, 0x06, 0x02, 0x00, 0x04, 0x18, 0x00, 0x00, 0x00,
    0x02, 0x01, 0x00, 0x00,
];
/// UNICAST from A-gt-B frame 8 (ICMP echo 198.19.1.1 -> .2).
const UNICAST: [u8; 108] = [
    0x40, 0x0f, 0x32, 0x02, 0x02, 0x00, 0x00, 0x00, 0x0b, 0x01, 0x02, 0x00, 0x00, 0x00, 0x0b, 0x00,
    0x02, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x08, 0x00, 0x45, 0x00, 0x00, 0x54, 0x71, 0xfe, 0x40, 0x00,
    0x40, 0x01, 0x3a, 0x81, 0xc6, 0x13, 0x01, 0x01, 0xc6, 0x13, 0x01, 0x02, 0x08, 0x00, 0xf0, 0xf9,
    0x00, 0xea, 0x00, 0x01, 0x44, 0xc5, 0x01, 0x6b, 0x00, 0x00, 0x00, 0x00, 0xf7, 0x17, 0x0a, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b,
    0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b,
    0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37,
];
/// BCAST from A-wg0 frame 77 (broadcast ping), TTL 49, seqno 5.
const BCAST: [u8; 112] = [
    0x01, 0x0f, 0x31, 0x00, 0x00, 0x00, 0x00, 0x05, 0x02, 0x00, 0x00, 0x00, 0x0a, 0x01, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x08, 0x00, 0x45, 0x00, 0x00, 0x54,
    0x00, 0x00, 0x40, 0x00, 0x40, 0x01, 0xab, 0x82, 0xc6, 0x13, 0x01, 0x01, 0xc6, 0x13, 0x01, 0xff,
    0x08, 0x00, 0x54, 0xc0, 0x00, 0xf1, 0x00, 0x01, 0x4b, 0xc5, 0x01, 0x6b, 0x00, 0x00, 0x00, 0x00,
    0x8e, 0x4a, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
    0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27,
    0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37,
];
/// First 48 bytes of UNICAST_FRAG A-gt-B frame 25 (fragment 0 of 1452).
const FRAG0: [u8; 48] = [
    0x41, 0x0f, 0x32, 0x00, 0x02, 0x00, 0x00, 0x00, 0x0b, 0x01, 0x02, 0x00, 0x00, 0x00, 0x0a, 0x01,
    0xb1, 0x8d, 0x05, 0xac, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad,
    0xae, 0xaf, 0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd,
];
/// Header of fragment 1 (A-wg0 frame 28) and the start of the unicast header it carries.
const FRAG1: [u8; 26] = [
    0x41, 0x0f, 0x32, 0x10, 0x02, 0x00, 0x00, 0x00, 0x0b, 0x01, 0x02, 0x00, 0x00, 0x00, 0x0a, 0x01,
    0xb1, 0x8d, 0x05, 0xac, 0x40, 0x0f, 0x32, 0x02, 0x02, 0x00,
];
/// UNICAST_4ADDR DAT DHT_GET from A-wg0 frame 83 (ARP request inside).
const UNICAST_4ADDR: [u8; 60] = [
    0x42, 0x0f, 0x32, 0x02, 0x02, 0x00, 0x00, 0x00, 0x0b, 0x01, 0x02, 0x00, 0x00, 0x00, 0x0a, 0x01,
    0x02, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x08, 0x06,
    0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x0a, 0x00, 0xc6, 0x13,
    0x01, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc6, 0x13, 0x01, 0x63,
];
/// batctl ping ICMP echo request from A-wg0 frame 61.
pub(crate) const ICMP: [u8; 20] = [
    0x43, 0x0f, 0x32, 0x08, 0x02, 0x00, 0x00, 0x00, 0x0b, 0x01, 0x02, 0x00, 0x00, 0x00, 0x0a, 0x01,
    0xd7, 0x00, 0x00, 0x01,
];

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

#[test]
fn kernel_ogm_with_tvlvs() {
    let p = OgmPacket::new_checked(&OGM[..]).unwrap();
    assert_eq!(p.ttl(), 50);
    assert_eq!(p.flags(), 0);
    assert_eq!(p.seqno(), 3_570_225_019);
    assert_eq!(p.orig(), mac("02:00:00:00:0a:01"));
    assert_eq!(p.prev_sender(), mac("02:00:00:00:0a:01"));
    assert_eq!(p.tq(), 255);
    assert_eq!(p.tvlv_len(), 28);
    let tv: Vec<Tvlv> = TvlvIter::new(p.tvlv()).map(|t| t.unwrap()).collect();
    assert_eq!(tv.len(), 3);
    assert_eq!((tv[0].tvlv_type, tv[0].version), (tvlv_type::TT, 1));
    assert_eq!(
        (tv[1].tvlv_type, tv[1].version, tv[1].value),
        (tvlv_type::MCAST, 2, &[0x18, 0, 0, 0][..])
    );
    assert_eq!(
        (tv[2].tvlv_type, tv[2].version, tv[2].value.len()),
        (tvlv_type::DAT, 1, 0)
    );
    let tt = TtData::new_checked(tv[0].value).unwrap();
    assert_eq!(tt.flags(), tt_flags::OGM_DIFF);
    assert_eq!(tt.ttvn(), 2);
    let vlans: Vec<_> = tt.vlans().collect();
    assert_eq!(
        vlans,
        vec![tvlv::TtVlan {
            crc: 0x1be9_5e8e,
            vid: 0
        }]
    );
    assert_eq!(tt.num_changes(), 0);
}

#[test]
fn aggregated_ogms_parse_as_a_sequence() {
    let mut agg = OGM.to_vec();
    let mut second = OGM.to_vec();
    second[2] = 49; // a forwarded copy
    second[3] = ogm::flags::DIRECTLINK;
    agg.extend_from_slice(&second);
    agg.extend_from_slice(&OGM[..10]); // trailing garbage
    let items: Vec<_> = OgmIter::new(&agg).collect();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].as_ref().unwrap().ttl(), 50);
    let p2 = items[1].as_ref().unwrap();
    assert_eq!((p2.ttl(), p2.flags()), (49, ogm::flags::DIRECTLINK));
    assert_eq!(p2.as_bytes().len(), 52);
    assert_eq!(items[2].as_ref().unwrap_err(), &WireError::Truncated);
}

#[test]
fn ogm_emit_round_trips_to_kernel_bytes() {
    let p = OgmPacket::new_checked(&OGM[..]).unwrap();
    let mut out = Vec::new();
    ogm::emit(
        &mut out,
        p.ttl(),
        p.flags(),
        p.seqno(),
        p.orig(),
        p.prev_sender(),
        p.tq(),
        p.tvlv(),
    );
    assert_eq!(out, OGM.to_vec());
    // The TT TVLV rebuilt from its parts is byte-identical too.
    let mut tt = Vec::new();
    tvlv::emit_tt_data(
        &mut tt,
        tt_flags::OGM_DIFF,
        2,
        &[tvlv::TtVlan {
            crc: 0x1be9_5e8e,
            vid: 0,
        }],
        &[],
    );
    let mut c = Vec::new();
    tvlv::emit(&mut c, tvlv_type::TT, 1, &tt).unwrap();
    assert_eq!(&c[..], &OGM[24..40]);
}

#[test]
fn kernel_unicast() {
    let p = UnicastPacket::new_checked(&UNICAST[..]).unwrap();
    assert_eq!((p.ttl(), p.ttvn()), (50, 2));
    assert_eq!(p.dest(), mac("02:00:00:00:0b:01"));
    assert_eq!(&p.payload()[..6], mac("02:00:00:00:0b:00").as_bytes());
    assert_eq!(p.payload().len(), 98);
    assert!(UnicastPacket::new_checked(&UNICAST[..9]).is_err());
    assert_eq!(
        UnicastPacket::new_checked(&BCAST[..]).unwrap_err(),
        WireError::Malformed
    );
}

#[test]
fn kernel_bcast() {
    let p = BcastPacket::new_checked(&BCAST[..]).unwrap();
    assert_eq!((p.ttl(), p.seqno()), (49, 5));
    assert_eq!(p.orig(), mac("02:00:00:00:0a:01"));
    assert_eq!(&p.payload()[..6], &[0xff; 6]);
    let mut v = BCAST.to_vec();
    v[1] = 14;
    assert_eq!(
        BcastPacket::new_checked(&v[..]).unwrap_err(),
        WireError::Unsupported
    );
}

#[test]
fn kernel_frags() {
    let f0 = FragPacket::new_checked(&FRAG0[..]).unwrap();
    assert_eq!((f0.no(), f0.priority(), f0.ttl()), (0, 0, 50));
    assert_eq!(f0.dest(), mac("02:00:00:00:0b:01"));
    assert_eq!(f0.orig(), mac("02:00:00:00:0a:01"));
    assert_eq!((f0.seqno(), f0.total_size()), (45453, 1452));
    let f1 = FragPacket::new_checked(&FRAG1[..]).unwrap();
    assert_eq!((f1.no(), f1.seqno()), (1, 45453));
    assert_eq!(f1.payload()[0], packet_type::UNICAST);
}

#[test]
fn kernel_4addr_and_icmp() {
    let p = Unicast4AddrPacket::new_checked(&UNICAST_4ADDR[..]).unwrap();
    assert_eq!(p.subtype(), subtype::DAT_DHT_GET);
    assert_eq!(p.src(), mac("02:00:00:00:0a:01"));
    assert_eq!(p.dest(), mac("02:00:00:00:0b:01"));
    assert_eq!(&p.payload()[12..14], &[0x08, 0x06]);
    let i = IcmpPacket::new_checked(&ICMP[..]).unwrap();
    assert_eq!((i.msg_type(), i.uid(), i.seqno()), (8, 0xd7, 1));
    assert_eq!(i.orig(), mac("02:00:00:00:0a:01"));
}

#[test]
fn unicast_tvlv_and_roam() {
    let mut b = vec![0u8; UnicastTvlvPacket::<&[u8]>::HEADER_LEN];
    let mut val = Vec::new();
    val.extend_from_slice(mac("02:00:00:00:0c:00").as_bytes());
    val.extend_from_slice(&0x8005u16.to_be_bytes());
    tvlv::emit(&mut b, tvlv_type::ROAM, 1, &val).unwrap();
    {
        let mut p = UnicastTvlvPacket::new_unchecked(&mut b[..]);
        p.init_header();
        p.set_ttl(50);
        p.set_dest(mac("02:00:00:00:0b:01"));
        p.set_src(mac("02:00:00:00:0a:01"));
        p.set_tvlv_len(12);
    }
    let p = UnicastTvlvPacket::new_checked(&b[..]).unwrap();
    let t = TvlvIter::new(p.tvlv()).next().unwrap().unwrap();
    let r = RoamAdv::parse(t.value).unwrap();
    assert_eq!((r.client, r.vid), (mac("02:00:00:00:0c:00"), 0x8005));
    assert_eq!(
        UnicastTvlvPacket::new_checked(&b[..b.len() - 1]).unwrap_err(),
        WireError::Truncated
    );
}

#[test]
fn tvlv_iter_stops_on_overlong_length() {
    let region = [0x04, 0x01, 0x00, 0x20, 0x01, 0x02];
    let mut it = TvlvIter::new(&region);
    assert_eq!(it.next(), Some(Err(WireError::Truncated)));
    assert_eq!(it.next(), None);
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Reads every field of every view a buffer could be; must never panic.
pub(crate) fn touch_all(b: &[u8]) -> usize {
    let mut acc = 0usize;
    let _ = CommonHeader::parse(b);
    for o in OgmIter::new(b).flatten() {
        acc += usize::from(o.tq()) + o.seqno() as usize + usize::from(o.ttl());
        for t in TvlvIter::new(o.tvlv()).flatten() {
            if let Ok(tt) = TtData::new_checked(t.value) {
                acc += tt.vlans().count() + tt.changes().count() + usize::from(tt.ttvn());
                acc += tt.vlan_bytes().len() + tt.num_changes();
            }
            acc += RoamAdv::parse(t.value)
                .map(|r| usize::from(r.vid))
                .unwrap_or(0);
        }
    }
    if let Ok(p) = BcastPacket::new_checked(b) {
        acc += p.payload().len() + p.seqno() as usize + usize::from(p.orig().0[0]);
    }
    if let Ok(p) = UnicastPacket::new_checked(b) {
        acc += p.payload().len() + usize::from(p.ttvn()) + usize::from(p.dest().0[5]);
    }
    if let Ok(p) = Unicast4AddrPacket::new_checked(b) {
        acc += p.payload().len() + usize::from(p.subtype()) + usize::from(p.src().0[5]);
    }
    if let Ok(p) = FragPacket::new_checked(b) {
        acc += p.payload().len() + usize::from(p.no()) + usize::from(p.total_size());
    }
    if let Ok(p) = IcmpPacket::new_checked(b) {
        acc += usize::from(p.seqno()) + usize::from(p.msg_type());
    }
    if let Ok(p) = UnicastTvlvPacket::new_checked(b) {
        for t in TvlvIter::new(p.tvlv()).flatten() {
            acc += t.value.len();
            if let Ok(tt) = TtData::new_checked(t.value) {
                acc += tt.changes().count();
            }
        }
    }
    // Views built unchecked must not panic either.
    let o = OgmPacket::new_unchecked(b);
    acc += o.tvlv().len() + o.as_bytes().len() + usize::from(o.tvlv_len());
    acc += UnicastTvlvPacket::new_unchecked(b).tvlv().len();
    acc
}

#[test]
fn hostile_inputs_never_panic() {
    let seeds: [&[u8]; 8] = [
        &OGM,
        &UNICAST,
        &BCAST,
        &FRAG0,
        &FRAG1,
        &UNICAST_4ADDR,
        &ICMP,
        &[],
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0usize;
    let mut buf = Vec::with_capacity(512);
    for i in 0..120_000u32 {
        buf.clear();
        let r = rng.next();
        match i % 4 {
            // pure noise, random length
            0 => (0..(r % 300)).for_each(|_| buf.push(rng.next() as u8)),
            // a real packet truncated at a random point
            1 => {
                let s = seeds[(r % 8) as usize];
                let cut = (rng.next() as usize) % (s.len() + 1);
                buf.extend_from_slice(&s[..cut]);
            }
            // a real packet with a few bytes flipped (lengths, counts, types)
            2 => {
                buf.extend_from_slice(seeds[(r % 8) as usize]);
                for _ in 0..(1 + rng.next() % 4) {
                    if !buf.is_empty() {
                        let at = (rng.next() as usize) % buf.len();
                        buf[at] = rng.next() as u8;
                    }
                }
            }
            // valid header bytes followed by noise (aggregate-like)
            _ => {
                buf.extend_from_slice(&OGM[..(r % 53) as usize]);
                (0..(rng.next() % 100)).for_each(|_| buf.push(rng.next() as u8));
            }
        }
        accepted = accepted.wrapping_add(touch_all(&buf));
    }
    // Some inputs parse (mutated real packets), so the sweep exercised real paths.
    assert!(accepted > 0);
}
