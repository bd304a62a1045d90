//! Every policy decision, with the frames a VM sends and the ones a
//! hostile VM sends instead (and malformed ones), through the hooks as
//! the bridge calls them. No root, no I/O.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use super::frames::*;
use super::*;
use crate::bridge::hooks::{Admit, Hooks};
use crate::wire::arp::Operation;
use crate::wire::ethernet::ethertype;

const ME: MacAddr = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
const OTHER: MacAddr = MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x99]);
const P: u32 = 7;

fn my_v4() -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 10, 5)
}
fn other_v4() -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 10, 6)
}
fn my_v6() -> Ipv6Addr {
    "fd00:10::5".parse().unwrap()
}
fn other_v6() -> Ipv6Addr {
    "fd00:10::6".parse().unwrap()
}

fn vm_policy() -> PortPolicy {
    PortPolicy {
        ipv4: vec![my_v4()],
        ipv6: vec![my_v6()],
        ..PortPolicy::vm(ME)
    }
}

/// Reads one counter.
type Counter = fn(&HooksCounters) -> u64;

fn hooks(policy: PortPolicy) -> Hooks {
    let mut h = Hooks::default();
    h.set_policy(P, policy);
    h
}

/// Whether ingress lets `frame` in (any rewrite is handed back).
fn admits(h: &mut Hooks, now: Instant, frame: &[u8]) -> bool {
    match h.port_ingress(now, P, frame) {
        Admit::Drop => false,
        Admit::Pass => true,
        Admit::Rewritten(f) => {
            h.done_with(f);
            true
        }
    }
}

fn udp4(src: MacAddr, sip: Ipv4Addr) -> Vec<u8> {
    ipv4(src, OTHER, sip, other_v4(), 17, &udp(4000, 5000, b"hello"))
}

fn udp6(src: MacAddr, sip: Ipv6Addr) -> Vec<u8> {
    ipv6(src, OTHER, sip, other_v6(), 17, &udp(4000, 5000, b"hello"))
}

#[test]
fn a_vm_port_passes_its_own_traffic() {
    let mut h = hooks(vm_policy());
    let now = Instant::now();
    let ll = link_local(ME);
    let mut rarp = Vec::new();
    crate::switch::announce::build_rarp(&mut rarp, ME, None);
    let own = [
        udp4(ME, my_v4()),
        udp6(ME, my_v6()),
        udp6(ME, ll),
        arp(Operation::Request, ME, ME, my_v4(), other_v4()),
        arp(Operation::Reply, ME, ME, my_v4(), other_v4()),
        // An ARP probe (RFC 5227) before the address is in use.
        arp(Operation::Request, ME, ME, Ipv4Addr::UNSPECIFIED, my_v4()),
        gratuitous_arp(ME, my_v4()),
        dhcp_discover(ME),
        ns(ME, Ipv6Addr::UNSPECIFIED, my_v6(), None),
        ns(ME, ll, other_v6(), Some(ME)),
        na(ME, my_v6(), my_v6(), ME),
        na(ME, ll, ll, ME),
        rarp,
        eth(OTHER, ME, 0x88cc, &[0; 46]),
    ];
    for (i, f) in own.iter().enumerate() {
        assert!(admits(&mut h, now, f), "own frame {i} dropped");
    }
    assert_eq!(h.port_counters(P).drops(), 0);
}

#[test]
fn spoofed_sources_are_dropped_and_counted_by_reason() {
    let mut h = hooks(vm_policy());
    let now = Instant::now();
    let cases: [(Vec<u8>, Counter); 12] = [
        // Another VM's MAC, whatever it carries.
        (udp4(OTHER, other_v4()), |c| c.drop_spoofed_mac),
        (gratuitous_arp(OTHER, other_v4()), |c| c.drop_spoofed_mac),
        // Own MAC, someone else's addresses.
        (udp4(ME, other_v4()), |c| c.drop_spoofed_ipv4),
        (
            ipv4(
                ME,
                OTHER,
                Ipv4Addr::UNSPECIFIED,
                other_v4(),
                17,
                &udp(1, 2, &[]),
            ),
            |c| c.drop_spoofed_ipv4,
        ),
        (udp6(ME, other_v6()), |c| c.drop_spoofed_ipv6),
        (udp6(ME, link_local(OTHER)), |c| c.drop_spoofed_ipv6),
        (udp6(ME, Ipv6Addr::UNSPECIFIED), |c| c.drop_spoofed_ipv6),
        // ARP poisoning: a reply claiming the other VM's address, or
        // carrying another sender MAC.
        (arp(Operation::Reply, ME, ME, other_v4(), other_v4()), |c| {
            c.drop_spoofed_arp
        }),
        (arp(Operation::Reply, ME, OTHER, my_v4(), other_v4()), |c| {
            c.drop_spoofed_arp
        }),
        // ND: advertising the other VM's address, or another MAC.
        (na(ME, my_v6(), other_v6(), ME), |c| c.drop_spoofed_nd),
        (na(ME, my_v6(), my_v6(), OTHER), |c| c.drop_spoofed_nd),
        (ns(ME, my_v6(), other_v6(), Some(OTHER)), |c| {
            c.drop_spoofed_nd
        }),
    ];
    for (i, (f, counter)) in cases.iter().enumerate() {
        let before = counter(&h.port_counters(P));
        assert!(!admits(&mut h, now, f), "spoofed frame {i} admitted");
        assert_eq!(counter(&h.port_counters(P)), before + 1, "case {i} counter");
    }
    // DAD for someone else's address: claiming it.
    assert!(!admits(
        &mut h,
        now,
        &ns(ME, Ipv6Addr::UNSPECIFIED, other_v6(), None)
    ));
    assert_eq!(h.port_counters(P).drop_spoofed_nd, 4);
    assert_eq!(h.counters().drops(), h.port_counters(P).drops());
}

#[test]
fn an_uplink_learns_freely() {
    let mut h = hooks(PortPolicy::default());
    let now = Instant::now();
    for f in [
        udp4(OTHER, other_v4()),
        udp4(ME, my_v4()),
        arp(Operation::Reply, OTHER, OTHER, other_v4(), my_v4()),
        dhcp_offer(OTHER, other_v4(), ME),
        ra(OTHER, link_local(OTHER), 0, &[]),
    ] {
        assert!(admits(&mut h, now, &f));
    }
    // ... but never batman's ethertype.
    assert!(!admits(
        &mut h,
        now,
        &eth(OTHER, ME, ethertype::BATMAN, &[0; 46])
    ));
    assert_eq!(h.port_counters(P).drop_batman_from_port, 1);
}

#[test]
fn dhcp_servers_only_where_allowed() {
    let now = Instant::now();
    let offer = dhcp_offer(ME, my_v4(), OTHER);
    let reply6 = udp_from(547, 546, &[7, 1, 2, 3]);
    let advertise6 = udp_from(547, 546, &[2, 1, 2, 3]);
    let mut h = hooks(vm_policy());
    for f in [&offer, &reply6, &advertise6] {
        assert!(!admits(&mut h, now, f));
    }
    assert_eq!(h.port_counters(P).drop_dhcp_server, 3);
    // A client's own DHCPv6 solicit passes.
    assert!(admits(&mut h, now, &udp_from(546, 547, &[1, 1, 2, 3])));
    let mut server = hooks(PortPolicy {
        dhcp_server: true,
        ..vm_policy()
    });
    for f in [&offer, &reply6] {
        assert!(admits(&mut server, now, f));
    }
}

fn udp_from(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let dip: Ipv6Addr = "ff02::1:2".parse().unwrap();
    ipv6(
        ME,
        OTHER,
        link_local(ME),
        dip,
        17,
        &udp(sport, dport, payload),
    )
}

#[test]
fn router_advertisements_only_where_allowed_even_behind_headers() {
    let now = Instant::now();
    let ll = link_local(ME);
    let hbh = [58, 0, 1, 4, 0, 0, 0, 0];
    let dst_opts_then_hbh = [0, 0, 1, 4, 0, 0, 0, 0, 58, 0, 1, 4, 0, 0, 0, 0];
    // A first fragment (offset 0) that holds the RA.
    let frag = [58, 0, 0, 1, 0, 0, 0, 9];
    let mut h = hooks(vm_policy());
    for f in [
        ra(ME, ll, 0, &[]),
        ra(ME, ll, 0, &hbh),
        ra(ME, ll, 60, &dst_opts_then_hbh),
        ra(ME, ll, 44, &frag),
    ] {
        assert!(!admits(&mut h, now, &f));
    }
    assert_eq!(h.port_counters(P).drop_router_advertisement, 4);
    // A redirect is a router's message too.
    let dip: Ipv6Addr = "ff02::1".parse().unwrap();
    let mut redirect = vec![137, 0, 0, 0, 0, 0, 0, 0];
    redirect.extend_from_slice(&[0; 32]);
    let f = ipv6(ME, OTHER, ll, dip, 58, &icmpv6(ll, dip, redirect));
    assert!(!admits(&mut h, now, &f));
    assert_eq!(h.port_counters(P).drop_router_advertisement, 5);
    // Evasion: a header chain too long to walk, or a first fragment too
    // short for the ICMPv6 header, is dropped as unreadable.
    let mut chain = Vec::new();
    for _ in 0..12 {
        chain.extend_from_slice(&[0, 0, 1, 4, 0, 0, 0, 0]);
    }
    let last = chain.len() - 8;
    chain[last] = 58;
    assert!(!admits(&mut h, now, &ra(ME, ll, 0, &chain)));
    let tiny = ipv6_ext(
        ME,
        OTHER,
        ll,
        dip,
        44,
        &[58, 0, 0, 1, 0, 0, 0, 9],
        &[134, 0],
    );
    assert!(!admits(&mut h, now, &tiny));
    assert_eq!(h.port_counters(P).drop_malformed, 2);
    let mut router = hooks(PortPolicy {
        router_advertisements: true,
        ..vm_policy()
    });
    assert!(admits(&mut router, now, &ra(ME, ll, 0, &hbh)));
}

#[test]
fn malformed_frames_never_panic_and_are_dropped_on_vm_ports() {
    let now = Instant::now();
    let mut h = hooks(vm_policy());
    let mut bad_len = udp4(ME, my_v4());
    bad_len[16..18].copy_from_slice(&9000u16.to_be_bytes());
    assert!(!admits(&mut h, now, &bad_len));
    let arp_short = gratuitous_arp(ME, my_v4())[..30].to_vec();
    assert!(!admits(&mut h, now, &arp_short));
    assert_eq!(h.port_counters(P).drop_malformed, 2);
    // Every prefix of every kind of frame, through ingress and egress.
    let frames = [
        udp4(ME, my_v4()),
        udp6(ME, my_v6()),
        ns(ME, Ipv6Addr::UNSPECIFIED, my_v6(), Some(ME)),
        na(ME, my_v6(), my_v6(), ME),
        dhcp_offer(ME, my_v4(), OTHER),
        ra(ME, link_local(ME), 0, &[58, 0, 1, 4, 0, 0, 0, 0]),
    ];
    let mut tagged = hooks(PortPolicy {
        vlan: Some(10),
        ..PortPolicy::vm(ME)
    });
    for f in &frames {
        for n in 0..=f.len() {
            let _ = admits(&mut h, now, &f[..n]);
            let _ = admits(&mut tagged, now, &f[..n]);
            if let Some(Some(c)) = tagged.port_egress(P, &f[..n]) {
                tagged.done_with(c);
            }
        }
    }
}

#[test]
fn arp_and_nd_beyond_the_rate_are_dropped() {
    let t0 = Instant::now();
    let mut h = hooks(PortPolicy {
        arp_nd_rate: 20,
        ..vm_policy()
    });
    let req = arp(Operation::Request, ME, ME, my_v4(), other_v4());
    let sol = ns(ME, my_v6(), other_v6(), Some(ME));
    let passed = (0..50)
        .filter(|i| admits(&mut h, t0, if i % 2 == 0 { &req } else { &sol }))
        .count();
    assert_eq!(passed, 20, "one second's burst");
    assert_eq!(h.port_counters(P).drop_arp_nd_rate, 30);
    // Other traffic is not in that budget.
    assert!(admits(&mut h, t0, &udp4(ME, my_v4())));
    // A second later, another second's worth.
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!((0..50).filter(|_| admits(&mut h, t1, &req)).count(), 20);
}

#[test]
fn floods_beyond_the_rate_are_dropped_per_port_and_per_source_on_uplinks() {
    let t0 = Instant::now();
    let bcast = eth(MacAddr::BROADCAST, ME, 0x0800, &[0; 46]);
    let mut h = hooks(PortPolicy {
        broadcast_rate: 10,
        ..vm_policy()
    });
    assert_eq!(
        (0..100).filter(|_| h.flood_admit(t0, P, &bcast)).count(),
        10
    );
    assert_eq!(h.port_counters(P).drop_broadcast_rate, 90);
    // An uplink: each source MAC its own budget.
    let mut up = hooks(PortPolicy {
        broadcast_rate: 10,
        ..PortPolicy::default()
    });
    let other = eth(MacAddr::BROADCAST, OTHER, 0x0800, &[0; 46]);
    assert_eq!(
        (0..100).filter(|_| up.flood_admit(t0, P, &bcast)).count(),
        10
    );
    assert_eq!(
        (0..100).filter(|_| up.flood_admit(t0, P, &other)).count(),
        10
    );
    // Rate 0: no limit.
    let mut open = hooks(PortPolicy {
        broadcast_rate: 0,
        ..vm_policy()
    });
    assert!((0..10_000).all(|_| open.flood_admit(t0, P, &bcast)));
}

#[test]
fn a_vlan_port_is_tagged_in_and_untagged_out() {
    let now = Instant::now();
    let mut h = hooks(PortPolicy {
        vlan: Some(10),
        ..vm_policy()
    });
    let f = udp4(ME, my_v4());
    let Admit::Rewritten(t) = h.port_ingress(now, P, &f) else {
        panic!("not tagged")
    };
    assert_eq!(&t[12..16], &[0x81, 0x00, 0x00, 0x0a]);
    assert_eq!(&t[16..], &f[12..]);
    // The mesh's VLAN 10 frame leaves untagged; other networks not at all.
    let Some(Some(out)) = h.port_egress(P, &t) else {
        panic!("not untagged")
    };
    assert_eq!(out, f);
    assert!(h.port_egress(P, &f).is_none(), "untagged network leaked in");
    let mut t20 = t.clone();
    t20[15] = 20;
    assert!(h.port_egress(P, &t20).is_none(), "VLAN 20 leaked in");
    assert_eq!(h.port_counters(P).egress_other_network, 2);
    // A VM sending tagged frames tries to reach another network.
    assert!(!admits(&mut h, now, &t20));
    assert!(!admits(&mut h, now, &t));
    assert_eq!(h.port_counters(P).drop_vlan, 2);
    // An untagged VM port gets the untagged network only.
    let mut plain = hooks(vm_policy());
    assert!(matches!(plain.port_egress(P, &f), Some(None)));
    assert!(plain.port_egress(P, &t).is_none());
}

#[test]
fn a_trunk_uplink_carries_its_vlans_only() {
    let now = Instant::now();
    let mut h = hooks(PortPolicy {
        trunk: vec![10, 20],
        ..PortPolicy::default()
    });
    let f = udp4(OTHER, other_v4());
    let mut t10 = f.clone();
    t10.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
    let mut t30 = t10.clone();
    t30[15] = 30;
    assert!(admits(&mut h, now, &f));
    assert!(admits(&mut h, now, &t10));
    assert!(!admits(&mut h, now, &t30));
    assert!(matches!(h.port_egress(P, &t10), Some(None)));
    assert!(matches!(h.port_egress(P, &f), Some(None)));
    assert!(h.port_egress(P, &t30).is_none());
    // An uplink with neither key carries everything, as bat0 does.
    let mut open = hooks(PortPolicy::default());
    assert!(admits(&mut open, now, &t30));
    assert!(matches!(open.port_egress(P, &t30), Some(None)));
}

#[test]
fn a_vm_port_without_ipv4_learns_it_from_its_dhcp_ack() {
    let now = Instant::now();
    let mut h = hooks(PortPolicy::vm(ME));
    let leased = Ipv4Addr::new(198, 19, 1, 99);
    let server = MacAddr([2, 0, 0, 0, 0, 0x53]);
    assert!(!admits(&mut h, now, &udp4(ME, leased)), "before the ack");
    assert!(admits(&mut h, now, &dhcp_discover(ME)));
    let ack = |chaddr| {
        ipv4(
            server,
            ME,
            Ipv4Addr::new(198, 19, 1, 1),
            leased,
            17,
            &udp(67, 68, &bootp(2, 5, chaddr, leased)),
        )
    };
    // An ACK for another client teaches nothing.
    assert!(matches!(h.port_egress(P, &ack(OTHER)), Some(None)));
    assert_eq!(h.learned_v4(P), None);
    assert!(matches!(h.port_egress(P, &ack(ME)), Some(None)));
    assert_eq!(h.learned_v4(P), Some(leased));
    assert_eq!(h.port_counters(P).dhcp_learned, 1);
    assert!(admits(&mut h, now, &udp4(ME, leased)));
    assert!(!admits(&mut h, now, &udp4(ME, other_v4())));
    // A port with ipv4 configured learns nothing.
    let mut fixed = hooks(vm_policy());
    let _ = fixed.port_egress(P, &ack(ME));
    assert_eq!(fixed.learned_v4(P), None);
}

#[test]
fn a_new_policy_changes_one_port_and_keeps_its_counters() {
    let now = Instant::now();
    let mut h = hooks(vm_policy());
    h.set_policy(P + 1, vm_policy());
    assert!(!admits(&mut h, now, &udp4(ME, other_v4())));
    h.set_policy(
        P,
        PortPolicy {
            ipv4: vec![my_v4(), other_v4()],
            ..vm_policy()
        },
    );
    assert!(admits(&mut h, now, &udp4(ME, other_v4())));
    assert_eq!(h.port_counters(P).drop_spoofed_ipv4, 1, "counters kept");
    assert_eq!(h.policy(P + 1), Some(&vm_policy()), "other port untouched");
}

#[test]
fn a_multicast_allowlist_passes_only_its_kinds() {
    use super::mcast::McastKind::*;
    let now = Instant::now();
    let mut h = hooks(PortPolicy {
        multicast: Some(vec![Arp, Dhcp, Nd, Mld]),
        ..vm_policy()
    });
    let ll = link_local(ME);
    let mdns_dst: Ipv4Addr = "224.0.0.251".parse().unwrap();
    let mdns_mac = MacAddr([1, 0, 0x5e, 0, 0, 0xfb]);
    let mdns = ipv4(ME, mdns_mac, my_v4(), mdns_dst, 17, &udp(5353, 5353, b"q"));
    let igmp = ipv4(
        ME,
        MacAddr([1, 0, 0x5e, 0, 0, 0x16]),
        my_v4(),
        "224.0.0.22".parse().unwrap(),
        2,
        &[0x22; 8],
    );
    let dip: Ipv6Addr = "ff02::16".parse().unwrap();
    let mld = ipv6(
        ME,
        MacAddr([0x33, 0x33, 0, 0, 0, 0x16]),
        ll,
        dip,
        58,
        &icmpv6(ll, dip, vec![143, 0, 0, 0, 0, 0, 0, 0]),
    );
    for f in [
        gratuitous_arp(ME, my_v4()),
        dhcp_discover(ME),
        ns(ME, ll, other_v6(), Some(ME)),
        mld,
        // Unicast is not the list's business.
        udp4(ME, my_v4()),
    ] {
        assert!(admits(&mut h, now, &f));
    }
    for f in [
        mdns,
        igmp,
        udp4(ME, my_v4())
            .iter()
            .enumerate()
            .map(|(i, &b)| if i == 0 { 0xff } else { b })
            .collect(),
    ] {
        assert!(!admits(&mut h, now, &f));
    }
    assert_eq!(h.port_counters(P).drop_multicast_not_allowed, 3);
    // Without the key, every kind passes.
    let mut open = hooks(vm_policy());
    let mdns = ipv4(ME, mdns_mac, my_v4(), mdns_dst, 17, &udp(5353, 5353, b"q"));
    assert!(admits(&mut open, now, &mdns));
}
