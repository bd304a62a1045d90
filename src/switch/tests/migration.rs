//! Live migration (issue 4): announcements, moves, and the old node's
//! redirect, driven with real announcement frames from the builders and
//! captured frames.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use super::super::announce::{build_gratuitous_arp, build_rarp, build_unsolicited_na};
use super::*;

const ORIG3: &str = "02:00:00:00:99:03";
const BLA_CLAIM: &str =
    "ffffffffffff020000000a010806000108000604000243054305d20600000000ff43050282c600000000";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn garp(m: MacAddr, vlan: Option<u16>) -> Vec<u8> {
    let mut b = Vec::new();
    build_gratuitous_arp(&mut b, m, Ipv4Addr::new(198, 19, 7, 10), vlan);
    b
}

fn rarp(m: MacAddr) -> Vec<u8> {
    let mut b = Vec::new();
    build_rarp(&mut b, m, None);
    b
}

fn na(m: MacAddr) -> Vec<u8> {
    let mut b = Vec::new();
    let ip: Ipv6Addr = "fd00:198:19:7::10".parse().unwrap();
    build_unsolicited_na(&mut b, m, ip, None);
    b
}

fn loc(sw: &Switch, t: Instant, m: &str) -> Option<Location> {
    sw.lookup(t, mac(m), 0).map(|e| e.location)
}

#[test]
fn every_announcement_from_a_port_is_reported_even_unmoved() {
    let mut sw = Switch::new(SwitchConfig::default());
    let t = Instant::now();
    let cases = [
        (garp(mac(A), None), Announce::GratuitousArp),
        (rarp(mac(A)), Announce::Rarp),
        (na(mac(A)), Announce::UnsolicitedNa),
    ];
    // New MAC, then the same MAC re-announcing on the same port (qemu's
    // rounds are 50 ms and more apart): every time Learned, so the dataplane
    // re-claims it in the mesh.
    let mut now = t;
    for (i, (f, kind)) in cases.iter().enumerate() {
        for _ in 0..2 {
            now += ms(50);
            let (d, l) = sw.from_port(now, 1, f);
            assert_eq!(
                l,
                Some(Learned {
                    mac: mac(A),
                    vid: 0,
                    moved_from: None,
                    announce: Some(*kind)
                }),
                "case {i}"
            );
            assert!(matches!(d, Decision::Flood { mesh: true, .. }), "{d:?}");
        }
    }
    // An ordinary frame from a known MAC is not news.
    assert_eq!(sw.from_port(now, 1, &frame(mac(B), mac(A), None)).1, None);
    let c = sw.counters();
    assert_eq!(
        (c.announce_from_port, c.learned_new, c.learned_moved),
        (6, 1, 0)
    );
    assert_eq!(c.announce_damped, 0);
}

#[test]
fn announcement_bursts_are_damped_but_moves_never() {
    let mut sw = Switch::new(SwitchConfig::default());
    let t = Instant::now();
    // A VM spraying gratuitous ARPs: one claim per 40 ms, not one per frame.
    let g = garp(mac(A), None);
    let reported = (0..1000u64)
        .filter(|i| {
            sw.from_port(t + Duration::from_micros(i * 100), 1, &g)
                .1
                .is_some()
        })
        .count();
    assert_eq!(reported, 3, "claims at 0, 40 and 80 ms of a 100 ms burst");
    assert_eq!(sw.counters().announce_damped, 997);
    // The first frame of a new MAC claims it; an announcement right after
    // adds nothing.
    assert!(sw
        .from_port(t, 2, &frame(MacAddr::BROADCAST, mac(B), None))
        .1
        .is_some());
    assert_eq!(sw.from_port(t + ms(5), 2, &rarp(mac(B))).1, None);
    // A move is reported however recent the last claim: port 2 -> port 3,
    // and from the mesh back here.
    let (_, l) = sw.from_port(t + ms(6), 3, &rarp(mac(B)));
    assert_eq!(l.unwrap().moved_from, Some(Location::Port(2)));
    sw.from_mesh(t + ms(200), &rarp(mac(B)), Some(mac(ORIG)));
    let (_, l) = sw.from_port(t + ms(201), 3, &rarp(mac(B)));
    assert_eq!(l.unwrap().moved_from, Some(Location::Originator(mac(ORIG))));
    assert_eq!(sw.from_port(t + ms(202), 3, &na(mac(B))).1, None);
    assert!(sw.from_port(t + ms(241), 3, &na(mac(B))).1.is_some());
}

#[test]
fn announcement_from_a_port_takes_a_mesh_entry_at_once() {
    let mut sw = Switch::new(SwitchConfig::default());
    let t = Instant::now();
    sw.from_port(t, 2, &frame(MacAddr::BROADCAST, mac(C), None));
    // The VM lived behind ORIG; it was heard from there a moment ago.
    sw.from_mesh(t, &frame(MacAddr::BROADCAST, mac(A), None), Some(mac(ORIG)));
    assert_eq!(loc(&sw, t, A), Some(Location::Originator(mac(ORIG))));
    // 1 ms later qemu's RARP arrives on our port: no waiting in this direction.
    let (_, l) = sw.from_port(t + ms(1), 1, &rarp(mac(A)));
    assert_eq!(
        l,
        Some(Learned {
            mac: mac(A),
            vid: 0,
            moved_from: Some(Location::Originator(mac(ORIG))),
            announce: Some(Announce::Rarp)
        })
    );
    assert_eq!(
        sw.from_port(t + ms(2), 2, &frame(mac(A), mac(C), None)).0,
        Decision::Port(1)
    );
    // A mesh unicast for it is delivered here now, not redirected.
    let to_a = frame(mac(A), mac(B), None);
    assert_eq!(sw.from_mesh(t + ms(2), &to_a, None), Decision::Port(1));
    assert_eq!(sw.redirect_for(t + ms(2), &to_a), None);
}

#[test]
fn tagged_announcement_moves_only_its_vlan() {
    let mut sw = Switch::new(SwitchConfig::default());
    let t = Instant::now();
    sw.from_mesh(t, &frame(MacAddr::BROADCAST, mac(A), None), Some(mac(ORIG)));
    sw.from_mesh(
        t,
        &frame(MacAddr::BROADCAST, mac(A), Some(5)),
        Some(mac(ORIG)),
    );
    let (_, l) = sw.from_port(t, 1, &garp(mac(A), Some(5)));
    let l = l.unwrap();
    assert_eq!((l.vid, l.announce), (0x8005, Some(Announce::GratuitousArp)));
    assert_eq!(l.moved_from, Some(Location::Originator(mac(ORIG))));
    assert_eq!(loc(&sw, t, A), Some(Location::Originator(mac(ORIG))));
    assert_eq!(
        sw.lookup(t, mac(A), 0x8005).unwrap().location,
        Location::Port(1)
    );
}

#[test]
fn mesh_announcement_moves_a_local_mac_after_100ms_of_silence() {
    for (i, claim) in [garp(mac(A), None), rarp(mac(A)), na(mac(A))]
        .iter()
        .enumerate()
    {
        let mut sw = Switch::new(SwitchConfig::default());
        let t = Instant::now();
        sw.from_port(t, 1, &frame(MacAddr::BROADCAST, mac(A), None));
        // An ordinary broadcast 150 ms later does not steal it (1 s rule)...
        let plain = frame(MacAddr::BROADCAST, mac(A), None);
        sw.from_mesh(t + ms(150), &plain, Some(mac(ORIG)));
        assert_eq!(loc(&sw, t, A), Some(Location::Port(1)), "case {i}");
        assert_eq!(sw.counters().mesh_claim_ignored, 1);
        // ...an announcement from the new node does, at once.
        let d = sw.from_mesh(t + ms(150), claim, Some(mac(ORIG)));
        assert_eq!(
            d,
            Decision::Flood {
                except: None,
                mesh: false
            }
        );
        assert_eq!(
            loc(&sw, t + ms(150), A),
            Some(Location::Originator(mac(ORIG))),
            "case {i}"
        );
        assert_eq!(sw.take_withdrawals(), vec![(mac(A), 0)]);
        let c = sw.counters();
        assert_eq!((c.announce_from_mesh, c.mesh_announce_moved), (1, 1));
        // Local frames to it now go to the new node.
        assert_eq!(
            sw.from_port(t + ms(151), 2, &frame(mac(A), mac(C), None)).0,
            Decision::Originator(mac(ORIG))
        );
    }
}

#[test]
fn mesh_announcement_for_a_vm_that_just_spoke_here_is_ignored_and_counted() {
    let mut sw = Switch::new(SwitchConfig::default());
    let t = Instant::now();
    sw.from_port(t, 1, &frame(mac(B), mac(A), None));
    sw.from_mesh(t + ms(60), &garp(mac(A), None), Some(mac(ORIG)));
    assert_eq!(loc(&sw, t, A), Some(Location::Port(1)));
    assert!(sw.take_withdrawals().is_empty());
    assert_eq!(sw.counters().mesh_announce_ignored, 1);
    assert_eq!(sw.counters().mesh_announce_moved, 0);
    // qemu's next round, 150 ms after the VM's last frame here: it moved.
    sw.from_mesh(t + ms(160), &rarp(mac(A)), Some(mac(ORIG)));
    assert_eq!(
        loc(&sw, t + ms(160), A),
        Some(Location::Originator(mac(ORIG)))
    );
    // If the VM speaks here again it is here again: reported as a move back.
    let (_, l) = sw.from_port(t + ms(170), 1, &frame(mac(B), mac(A), None));
    assert_eq!(l.unwrap().moved_from, Some(Location::Originator(mac(ORIG))));
}

#[test]
fn announcement_without_originator_or_from_bla_moves_nothing() {
    let mut sw = Switch::new(SwitchConfig::default());
    let t = Instant::now();
    sw.from_port(t, 1, &frame(MacAddr::BROADCAST, mac(A), None));
    // Delivered as unicast: no originator to learn.
    sw.from_mesh(t + ms(500), &garp(mac(A), None), None);
    assert_eq!(loc(&sw, t, A), Some(Location::Port(1)));
    assert_eq!(sw.counters().announce_from_mesh, 0);
    // batman-adv's BLA claim frame (captured) looks gratuitous but is not.
    let bla = hex(BLA_CLAIM);
    let (_, l) = sw.from_port(t, 3, &bla);
    assert_eq!(l.unwrap().announce, None);
    assert_eq!(sw.from_port(t, 3, &bla).1, None);
    // An ARP about another host's MAC is not an announcement of the sender.
    let mut proxy = garp(mac(B), None);
    proxy[6..12].copy_from_slice(mac(C).as_bytes());
    sw.from_port(t, 2, &frame(MacAddr::BROADCAST, mac(C), None));
    assert_eq!(sw.from_port(t, 2, &proxy).1, None);
    assert_eq!(sw.counters().announce_from_port, 0);
}

#[test]
fn old_node_redirects_unicast_for_a_departed_mac() {
    let mut sw = Switch::new(SwitchConfig::default());
    let t = Instant::now();
    sw.from_port(t, 1, &frame(MacAddr::BROADCAST, mac(A), None));
    let to_a = frame(mac(A), mac(B), None);
    assert_eq!(sw.redirect_for(t, &to_a), None, "still local");
    // A arrives at ORIG2 and announces itself.
    let moved = t + ms(200);
    sw.from_mesh(moved, &rarp(mac(A)), Some(mac(ORIG2)));
    // from_mesh keeps its no-loop rule; redirect_for names the new node.
    assert_eq!(
        sw.from_mesh(moved, &to_a, None),
        Decision::Drop(DropReason::RemoteDestination)
    );
    assert_eq!(sw.redirect_for(moved, &to_a), Some(mac(ORIG2)));
    // Tagged frames are another client; group destinations never redirect.
    assert_eq!(
        sw.redirect_for(moved, &frame(mac(A), mac(B), Some(9))),
        None
    );
    assert_eq!(
        sw.redirect_for(moved, &frame(MacAddr::BROADCAST, mac(B), None)),
        None
    );
    assert_eq!(sw.redirect_for(moved, &to_a[..13]), None);
    // It roams on to ORIG3: the old node follows it.
    sw.from_mesh(moved + ms(5000), &garp(mac(A), None), Some(mac(ORIG3)));
    assert_eq!(sw.redirect_for(moved + ms(5000), &to_a), Some(mac(ORIG3)));
    // The window counts from when it left us, refreshes do not extend it.
    let end = moved + SwitchConfig::default().redirect_window;
    sw.from_mesh(end, &rarp(mac(A)), Some(mac(ORIG3)));
    assert_eq!(sw.redirect_for(end, &to_a), Some(mac(ORIG3)));
    assert_eq!(sw.redirect_for(end + ms(1), &to_a), None);
    // A MAC that was never ours is not redirected: other nodes' business.
    sw.from_mesh(t, &frame(MacAddr::BROADCAST, mac(C), None), Some(mac(ORIG)));
    assert_eq!(sw.redirect_for(t, &frame(mac(C), mac(B), None)), None);
}

#[test]
fn move_between_local_ports_clears_the_departure() {
    let mut sw = Switch::new(SwitchConfig::default());
    let t = Instant::now();
    sw.from_port(t, 1, &frame(MacAddr::BROADCAST, mac(A), None));
    sw.from_mesh(t + ms(200), &garp(mac(A), None), Some(mac(ORIG)));
    assert!(sw
        .lookup(t + ms(200), mac(A), 0)
        .unwrap()
        .departed
        .is_some());
    // Back here (on another port), then away again through the TT after
    // a silent second: a fresh departure time.
    let (_, l) = sw.from_port(t + ms(300), 2, &garp(mac(A), None));
    assert_eq!(l.unwrap().moved_from, Some(Location::Originator(mac(ORIG))));
    assert_eq!(sw.lookup(t + ms(300), mac(A), 0).unwrap().departed, None);
    let later = t + ms(1400);
    sw.learn_from_tt(later, mac(A), 0, mac(ORIG2));
    let e = sw.lookup(later, mac(A), 0).unwrap();
    assert_eq!(
        (e.location, e.departed),
        (Location::Originator(mac(ORIG2)), Some(later))
    );
}

/// Random mutations of real announcements through both directions: nothing
/// panics, a mesh frame is never sent back to the mesh by `from_mesh`, and
/// `redirect_for` only ever names an originator the FDB holds for a unicast
/// destination that left a local port.
#[test]
fn mutated_announcements_keep_the_guarantees() {
    let mut sw = small(128, 32);
    let t = Instant::now();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let macs = [mac(A), mac(B), mac(C)];
    let origs = [mac(ORIG), mac(ORIG2), mac(ORIG3)];
    let mut announced = 0u64;
    for i in 0..30_000u64 {
        let m = macs[(next() % 3) as usize];
        let mut f = match next() % 3 {
            0 => garp(m, (i % 4 == 0).then_some(5)),
            1 => rarp(m),
            _ => na(m),
        };
        // Half of them mutated: a few random bytes, sometimes truncated.
        if next() % 2 == 0 {
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % f.len();
                f[at] = next() as u8;
            }
            let keep = (next() as usize) % (f.len() + 1);
            f.truncate(keep.max(f.len() / 2));
        }
        let now = t + ms(i * 7);
        if next() % 2 == 0 {
            let (_, l) = sw.from_port(now, (next() % 3) as u32, &f);
            announced += u64::from(l.is_some_and(|l| l.announce.is_some()));
        } else {
            let orig = origs[(next() % 3) as usize];
            let d = sw.from_mesh(now, &f, (next() % 4 != 0).then_some(orig));
            assert!(!matches!(
                d,
                Decision::Originator(_)
                    | Decision::Flood { mesh: true, .. }
                    | Decision::Unknown { .. }
            ));
            let mut uni = f.clone();
            if uni.len() >= 6 {
                uni[..6].copy_from_slice(m.as_bytes());
            }
            if let Some(o) = sw.redirect_for(now, &uni) {
                let e = sw.lookup(now, m, Frame::new_checked(&uni[..]).unwrap().batman_vid());
                let e = e.expect("redirect without an entry");
                assert_eq!(e.location, Location::Originator(o));
                assert!(e.departed.is_some());
            }
        }
        assert!(sw.fdb_len() <= 128);
    }
    assert!(announced > 1000, "only {announced} announcements survived");
    let c = sw.counters();
    assert!(
        c.mesh_announce_moved > 0 && c.announce_from_mesh > 0,
        "{c:?}"
    );
}

#[test]
fn port_clients_for_ctl_announce() {
    let mut sw = Switch::new(SwitchConfig::default());
    let t = Instant::now();
    sw.from_port(t, 1, &frame(MacAddr::BROADCAST, mac(C), Some(5)));
    sw.from_port(t, 1, &frame(MacAddr::BROADCAST, mac(A), None));
    sw.from_port(t, 2, &frame(MacAddr::BROADCAST, mac(B), None));
    sw.from_mesh(
        t,
        &frame(MacAddr::BROADCAST, mac(A), Some(7)),
        Some(mac(ORIG)),
    );
    assert_eq!(sw.port_clients(t, 1), vec![(mac(A), 0), (mac(C), 0x8005)]);
    assert_eq!(sw.port_clients(t, 2), vec![(mac(B), 0)]);
    assert_eq!(sw.port_clients(t, 3), vec![]);
    // Aged entries are not clients any more, reaped or not.
    assert_eq!(sw.port_clients(t + Duration::from_secs(301), 1), vec![]);
    // An IP-less announcement for each: qemu's RARP.
    let mut b = Vec::new();
    for (m, vid) in sw.port_clients(t, 1) {
        build_rarp(&mut b, m, super::super::announce::vlan_of_batman_vid(vid));
        let (_, l) = sw.from_port(t + ms(100), 1, &b);
        let l = l.unwrap();
        assert_eq!((l.mac, l.vid, l.announce), (m, vid, Some(Announce::Rarp)));
    }
}
