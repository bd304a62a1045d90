//! Switch tests: real Ethernet frames built with the wire view, or captured.

use std::time::{Duration, Instant};

use super::*;
use crate::wire::ethernet::{ethertype, Frame};

mod announce;
mod kernel;
mod migration;

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

/// An IPv4-ish frame, optionally 802.1Q tagged with `vlan`.
fn frame(dst: MacAddr, src: MacAddr, vlan: Option<u16>) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    let mut f = Frame::new_unchecked(&mut b[..]);
    f.set_dst_addr(dst);
    f.set_src_addr(src);
    match vlan {
        Some(id) => {
            f.set_ethertype(ethertype::VLAN);
            f.set_vlan_tag(id, ethertype::IPV4);
        }
        None => f.set_ethertype(ethertype::IPV4),
    }
    b
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// refvm/captures/A-bat0.pcap frames 1 (ARP request) and 2 (ARP reply).
const ARP_REQUEST: &str =
    "ffffffffffff020000000a0008060001080006040001020000000a00c6130101000000000000c6130102";
const ARP_REPLY: &str =
    "020000000a00020000000b0008060001080006040002020000000b00c6130102020000000a00c6130101";

const A: &str = "02:00:00:00:0a:00";
const B: &str = "02:00:00:00:0b:00";
const C: &str = "02:00:00:00:0c:00";
const ORIG: &str = "02:00:00:00:99:01";
const ORIG2: &str = "02:00:00:00:99:02";

fn small(max_entries: usize, max_per_port: usize) -> Switch {
    let mut cfg = SwitchConfig::default();
    cfg.fdb.max_entries = max_entries;
    cfg.fdb.max_per_port = max_per_port;
    Switch::new(cfg)
}

#[test]
fn learns_and_forwards_captured_arp_exchange() {
    let mut sw = Switch::new(SwitchConfig::default());
    let t = Instant::now();
    let (d, l) = sw.from_port(t, 1, &hex(ARP_REQUEST));
    assert_eq!(
        d,
        Decision::Flood {
            except: Some(1),
            mesh: true
        }
    );
    assert_eq!(
        l,
        Some(Learned {
            mac: mac(A),
            vid: 0,
            moved_from: None,
            announce: None
        })
    );
    let (d, l) = sw.from_port(t, 2, &hex(ARP_REPLY));
    assert_eq!(d, Decision::Port(1));
    assert_eq!(
        l,
        Some(Learned {
            mac: mac(B),
            vid: 0,
            moved_from: None,
            announce: None
        })
    );
    // Known both ways now; refreshing is not news.
    let (d, l) = sw.from_port(t, 1, &frame(mac(B), mac(A), None));
    assert_eq!((d, l), (Decision::Port(2), None));
    let c = sw.counters();
    assert_eq!(
        (c.from_port, c.flooded, c.to_port, c.learned_new),
        (3, 1, 2, 2)
    );
}

#[test]
fn unknown_unicast_is_left_to_the_mesh() {
    let mut sw = Switch::new(SwitchConfig::default());
    let (d, _) = sw.from_port(Instant::now(), 3, &frame(mac(B), mac(A), None));
    assert_eq!(d, Decision::Unknown { except: Some(3) });
    assert_eq!(sw.counters().unknown, 1);
}

#[test]
fn no_hairpin_to_the_ingress_port() {
    let mut sw = Switch::new(SwitchConfig::default());
    let t = Instant::now();
    // A and C sit behind the same bridge on port 1.
    sw.from_port(t, 1, &frame(MacAddr::BROADCAST, mac(C), None));
    let (d, _) = sw.from_port(t, 1, &frame(mac(C), mac(A), None));
    assert_eq!(d, Decision::Drop(DropReason::SamePort));
    assert_eq!(sw.counters().drop_same_port, 1);
    // Floods from port 1 exclude port 1.
    let (d, _) = sw.from_port(t, 1, &frame(MacAddr::BROADCAST, mac(A), None));
    assert_eq!(
        d,
        Decision::Flood {
            except: Some(1),
            mesh: true
        }
    );
}

#[test]
fn invalid_sources_and_truncation_are_dropped_and_counted() {
    let mut sw = Switch::new(SwitchConfig::default());
    let t = Instant::now();
    for src in [MacAddr::ZERO, MacAddr::BROADCAST, mac("33:33:00:00:00:01")] {
        let (d, l) = sw.from_port(t, 1, &frame(mac(B), src, None));
        assert_eq!((d, l), (Decision::Drop(DropReason::InvalidSource), None));
        let d = sw.from_mesh(t, &frame(mac(B), src, None), Some(mac(ORIG)));
        assert_eq!(d, Decision::Drop(DropReason::InvalidSource));
    }
    assert_eq!(sw.fdb_len(), 0);
    let req = hex(ARP_REQUEST);
    assert_eq!(
        sw.from_port(t, 1, &req[..13]).0,
        Decision::Drop(DropReason::Truncated)
    );
    let tagged = frame(mac(B), mac(A), Some(5));
    assert_eq!(
        sw.from_mesh(t, &tagged[..17], None),
        Decision::Drop(DropReason::Truncated)
    );
    let c = sw.counters();
    assert_eq!((c.drop_invalid_source, c.drop_truncated), (6, 2));
    assert_eq!(sw.fdb_len(), 0);
}

#[test]
fn mesh_frames_never_go_back_to_the_mesh() {
    let mut sw = Switch::new(SwitchConfig::default());
    let t = Instant::now();
    sw.from_port(t, 1, &frame(MacAddr::BROADCAST, mac(A), None));
    // Broadcast from the mesh, originator known: learned, flooded locally.
    let mut bcast_reply = hex(ARP_REPLY);
    bcast_reply[..6].fill(0xff);
    let d = sw.from_mesh(t, &bcast_reply, None);
    assert_eq!(
        d,
        Decision::Flood {
            except: None,
            mesh: false
        }
    );
    let d = sw.from_mesh(t, &frame(MacAddr::BROADCAST, mac(B), None), Some(mac(ORIG)));
    assert_eq!(
        d,
        Decision::Flood {
            except: None,
            mesh: false
        }
    );
    assert_eq!(
        sw.lookup(t, mac(B), 0).unwrap().location,
        Location::Originator(mac(ORIG))
    );
    // Now a local frame to B goes to ORIG.
    assert_eq!(
        sw.from_port(t, 1, &frame(mac(B), mac(A), None)).0,
        Decision::Originator(mac(ORIG))
    );
    // Mesh unicast to a local client: its port. Unknown: all local ports.
    assert_eq!(
        sw.from_mesh(t, &frame(mac(A), mac(B), None), None),
        Decision::Port(1)
    );
    let d = sw.from_mesh(t, &frame(mac(C), mac(B), None), None);
    assert_eq!(
        d,
        Decision::Flood {
            except: None,
            mesh: false
        }
    );
    // To a client the FDB places at another originator: not back to the mesh.
    sw.from_mesh(
        t,
        &frame(MacAddr::BROADCAST, mac(C), None),
        Some(mac(ORIG2)),
    );
    let d = sw.from_mesh(t, &frame(mac(C), mac(B), None), Some(mac(ORIG)));
    assert_eq!(d, Decision::Drop(DropReason::RemoteDestination));
}

/// Deterministic random frames and originators: a mesh frame's decision is
/// never Originator or a mesh flood, and nothing panics.
#[test]
fn random_mesh_frames_only_reach_local_ports() {
    let mut sw = small(64, 16);
    let t = Instant::now();
    let mut x: u64 = 0x243f_6a88_85a3_08d3;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut buf = [0u8; 40];
    for i in 0..20_000u32 {
        for b in buf.iter_mut() {
            *b = (next() % 4) as u8; // few distinct MACs so they repeat
        }
        if i % 3 == 0 {
            buf[12..14].copy_from_slice(&[0x81, 0x00]);
        }
        let len = (next() % 40) as usize;
        let now = t + Duration::from_millis(u64::from(i));
        if i % 2 == 0 {
            let (d, _) = sw.from_port(now, i % 4, &buf[..len]);
            if let Decision::Port(p) = d {
                assert_ne!(p, i % 4);
            }
        } else {
            let orig = MacAddr::from_bytes(&buf[20..26]).filter(|_| i % 5 != 0);
            match sw.from_mesh(now, &buf[..len], orig) {
                Decision::Originator(_)
                | Decision::Flood { mesh: true, .. }
                | Decision::Unknown { .. } => {
                    panic!("mesh frame sent back to the mesh")
                }
                _ => {}
            }
        }
        assert!(sw.fdb_len() <= 64);
    }
    assert!(sw.counters().to_port > 0, "never reached a learned port");
}

#[test]
fn vlans_are_separate() {
    let mut sw = Switch::new(SwitchConfig::default());
    let t = Instant::now();
    // The same MAC on the untagged segment at port 1 and on VLAN 5 at port 2.
    sw.from_port(t, 1, &frame(MacAddr::BROADCAST, mac(B), None));
    let (_, l) = sw.from_port(t, 2, &frame(MacAddr::BROADCAST, mac(B), Some(5)));
    assert_eq!(
        l,
        Some(Learned {
            mac: mac(B),
            vid: 0x8005,
            moved_from: None,
            announce: None
        })
    );
    assert_eq!(
        sw.from_port(t, 3, &frame(mac(B), mac(A), None)).0,
        Decision::Port(1)
    );
    assert_eq!(
        sw.from_port(t, 3, &frame(mac(B), mac(A), Some(5))).0,
        Decision::Port(2)
    );
    assert_eq!(
        sw.from_port(t, 3, &frame(mac(B), mac(A), Some(6))).0,
        Decision::Unknown { except: Some(3) }
    );
    // The 12-bit id is what counts, not the priority bits.
    assert_eq!(
        sw.from_port(t, 3, &frame(mac(B), mac(A), Some(0xe005))).0,
        Decision::Port(2)
    );
}

#[test]
fn moves_are_reported() {
    let mut sw = Switch::new(SwitchConfig::default());
    let t = Instant::now();
    sw.from_port(t, 1, &frame(MacAddr::BROADCAST, mac(A), None));
    let (_, l) = sw.from_port(t, 2, &frame(MacAddr::BROADCAST, mac(A), None));
    assert_eq!(l.unwrap().moved_from, Some(Location::Port(1)));
    // B lives at an originator, then arrives here (a migrated VM's first frame).
    sw.from_mesh(t, &frame(MacAddr::BROADCAST, mac(B), None), Some(mac(ORIG)));
    let (_, l) = sw.from_port(t, 3, &frame(MacAddr::BROADCAST, mac(B), None));
    assert_eq!(
        l,
        Some(Learned {
            mac: mac(B),
            vid: 0,
            moved_from: Some(Location::Originator(mac(ORIG))),
            announce: None
        })
    );
    assert_eq!(
        sw.from_port(t, 1, &frame(mac(B), mac(C), None)).0,
        Decision::Port(3)
    );
    assert_eq!(sw.counters().learned_moved, 2);
}

#[test]
fn mesh_claim_replaces_local_only_after_a_silent_second() {
    let mut sw = Switch::new(SwitchConfig::default());
    let t = Instant::now();
    sw.from_port(t, 1, &frame(MacAddr::BROADCAST, mac(A), None));
    let claim = frame(MacAddr::BROADCAST, mac(A), None);
    sw.from_mesh(t + Duration::from_millis(500), &claim, Some(mac(ORIG)));
    assert_eq!(sw.lookup(t, mac(A), 0).unwrap().location, Location::Port(1));
    assert_eq!(sw.counters().mesh_claim_ignored, 1);
    assert!(sw.take_withdrawals().is_empty());
    // Silent for 1.5 s and now heard from another node: it moved away.
    let later = t + Duration::from_millis(1500);
    sw.from_mesh(later, &claim, Some(mac(ORIG)));
    assert_eq!(
        sw.lookup(later, mac(A), 0).unwrap().location,
        Location::Originator(mac(ORIG))
    );
    assert_eq!(sw.take_withdrawals(), vec![(mac(A), 0)]);
    assert!(sw.take_withdrawals().is_empty());
    // A TT answer does not override a fresh local entry either.
    sw.from_port(later, 2, &frame(MacAddr::BROADCAST, mac(C), None));
    sw.learn_from_tt(later, mac(C), 0, mac(ORIG2));
    assert_eq!(
        sw.lookup(later, mac(C), 0).unwrap().location,
        Location::Port(2)
    );
}

#[test]
fn ageing_withdraws_local_and_forgets_remote() {
    let mut sw = Switch::new(SwitchConfig::default());
    let t = Instant::now();
    sw.from_port(t, 1, &frame(MacAddr::BROADCAST, mac(A), None));
    sw.from_mesh(t, &frame(MacAddr::BROADCAST, mac(B), None), Some(mac(ORIG)));
    assert!(sw.expire(t + Duration::from_secs(299)).is_empty());
    let late = t + Duration::from_secs(301);
    // Aged but not yet reaped already reads as unknown.
    assert_eq!(
        sw.from_mesh(late, &frame(mac(A), mac(C), None), None),
        Decision::Flood {
            except: None,
            mesh: false
        }
    );
    assert_eq!(sw.expire(late), vec![(mac(A), 0)]);
    assert_eq!(sw.fdb_len(), 0);
    let c = sw.counters().fdb;
    assert_eq!((c.aged_local, c.aged_remote), (1, 1));
    // Heard again after ageing: new again, so the mesh hears about it.
    let (_, l) = sw.from_port(late, 1, &frame(MacAddr::BROADCAST, mac(A), None));
    assert_eq!(l.unwrap().moved_from, None);
}

#[test]
fn per_port_and_total_bounds() {
    let mut sw = small(8, 4);
    let t = Instant::now();
    let m = |i: u8| MacAddr([2, 0, 0, 0, 1, i]);
    for i in 0..10 {
        sw.from_port(t, 1, &frame(MacAddr::BROADCAST, m(i), None));
    }
    assert_eq!(sw.fdb_len(), 4);
    assert_eq!(sw.counters().fdb.refused_port_limit, 6);
    // Four remote entries fill the table; the oldest one makes room later.
    for i in 0..4u8 {
        let at = t + Duration::from_millis(u64::from(i));
        sw.from_mesh(
            at,
            &frame(MacAddr::BROADCAST, m(100 + i), None),
            Some(mac(ORIG)),
        );
    }
    assert_eq!(sw.fdb_len(), 8);
    let (_, l) = sw.from_port(
        t + Duration::from_millis(10),
        2,
        &frame(MacAddr::BROADCAST, m(50), None),
    );
    assert!(l.is_some());
    assert_eq!(sw.fdb_len(), 8);
    assert_eq!(sw.counters().fdb.evicted_remote, 1);
    assert!(sw.lookup(t, m(100), 0).is_none(), "the oldest remote went");
    // Fill the rest with local MACs: nothing left to evict, new MACs refused.
    for i in 60..63 {
        sw.from_port(
            t + Duration::from_millis(20),
            2,
            &frame(MacAddr::BROADCAST, m(i), None),
        );
    }
    let (_, l) = sw.from_port(
        t + Duration::from_millis(30),
        3,
        &frame(MacAddr::BROADCAST, m(70), None),
    );
    assert_eq!(l, None);
    assert_eq!(sw.fdb_len(), 8);
    assert!(sw.counters().fdb.refused_full >= 1);
    // Local clients keep working while full.
    assert_eq!(
        sw.from_port(t, 2, &frame(m(0), m(50), None)).0,
        Decision::Port(1)
    );
}

#[test]
fn port_removal_and_ctl_view() {
    let mut sw = Switch::new(SwitchConfig::default());
    let t = Instant::now();
    sw.set_port_name(1, "vm1");
    sw.from_port(t, 1, &frame(MacAddr::BROADCAST, mac(A), None));
    sw.from_port(t, 1, &frame(MacAddr::BROADCAST, mac(C), Some(7)));
    sw.from_mesh(t, &frame(MacAddr::BROADCAST, mac(B), None), Some(mac(ORIG)));
    let v = sw.fdb_entries(t + Duration::from_millis(250));
    assert_eq!(v.len(), 3);
    let json = serde_json::to_string(&v).unwrap();
    assert!(json.contains("\"location\":\"port vm1\""), "{json}");
    assert!(
        json.contains("\"location\":\"originator 02:00:00:00:99:01\""),
        "{json}"
    );
    assert!(json.contains("\"age_ms\":250"), "{json}");
    assert!(json.contains("\"learned\":\"mesh\""), "{json}");
    let mut gone = sw.port_removed(1);
    gone.sort();
    assert_eq!(gone, vec![(mac(A), 0), (mac(C), 0x8007)]);
    assert_eq!(sw.fdb_len(), 1);
    let json = serde_json::to_string(sw.counters()).unwrap();
    assert!(json.contains("\"learned_new\":2"), "{json}");
}

#[test]
fn remote_macs_are_capped_per_originator() {
    let mut cfg = SwitchConfig::default();
    cfg.fdb.max_per_originator = 100;
    let mut sw = Switch::new(cfg);
    let t = Instant::now();
    let (spray, honest) = (mac(ORIG), MacAddr([2, 0, 0, 0, 0x99, 2]));
    let m = |i: u32| {
        let b = i.to_be_bytes();
        MacAddr([2, 1, b[0], b[1], b[2], b[3]])
    };
    sw.from_mesh(t, &frame(MacAddr::BROADCAST, mac(B), None), Some(honest));
    // One originator sprays random sources: it gets its share, no more.
    for i in 0..10_000 {
        sw.from_mesh(t, &frame(MacAddr::BROADCAST, m(i), None), Some(spray));
    }
    assert_eq!(sw.fdb_len(), 101);
    assert_eq!(sw.counters().fdb.refused_originator_limit, 9_900);
    assert_eq!(
        sw.lookup(t, mac(B), 0).map(|e| e.location),
        Some(Location::Originator(honest)),
        "another originator's client pushed out"
    );
    // A sprayed MAC that moves to the honest originator leaves the count.
    sw.from_mesh(t, &frame(MacAddr::BROADCAST, m(0), None), Some(honest));
    sw.from_mesh(t, &frame(MacAddr::BROADCAST, m(20_000), None), Some(spray));
    assert!(sw.lookup(t, m(20_000), 0).is_some());
}

#[test]
fn a_full_table_evicts_the_oldest_idle_remote_entry() {
    let mut sw = small(1000, 10);
    let t = Instant::now();
    let m = |i: u32| {
        let b = i.to_be_bytes();
        MacAddr([2, 1, b[0], b[1], b[2], b[3]])
    };
    for i in 0..1000 {
        sw.from_mesh(t, &frame(MacAddr::BROADCAST, m(i), None), Some(mac(ORIG)));
    }
    // m(0) keeps talking; the rest go quiet.
    let later = t + Duration::from_secs(5);
    sw.from_mesh(
        later,
        &frame(MacAddr::BROADCAST, m(0), None),
        Some(mac(ORIG)),
    );
    // Every new MAC costs one eviction, in learning order, m(0) spared.
    for i in 1000..1500 {
        sw.from_mesh(
            later,
            &frame(MacAddr::BROADCAST, m(i), None),
            Some(mac(ORIG)),
        );
    }
    assert_eq!(sw.fdb_len(), 1000);
    assert_eq!(sw.counters().fdb.evicted_remote, 500);
    assert!(sw.lookup(later, m(0), 0).is_some(), "the busy one went");
    assert!(sw.lookup(later, m(1), 0).is_none());
    assert!(sw.lookup(later, m(501), 0).is_some());
    assert!(sw.lookup(later, m(1499), 0).is_some());
}
