//! ARP/ND suppression through whole bridges: requests for known owners
//! answered into the asking port with nothing crossing the mesh, unknown
//! ones flooded, the rules that keep a proxy from lying (own addresses,
//! DAD, dead owners, other networks), and answers after a migration.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::bridge::policy::frames::{arp, gratuitous_arp, ipv4, na, ns, udp};
use crate::wire::arp::{Operation, Packet as ArpPacket, Repr as ArpRepr};
use crate::wire::ndisc::{self, Ndisc};

fn ip4(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 1, host)
}

fn ip6(host: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, host.into())
}

fn vm_port(net: &mut Net, node: usize, port: PortId, tag: u8, vlan: Option<u16>) {
    net.nodes[node].hooks.set_policy(
        port,
        PortPolicy {
            ipv4: vec![ip4(tag)],
            ipv6: vec![ip6(tag)],
            vlan,
            ..PortPolicy::vm(vm(tag))
        },
    );
}

/// An ARP request from `asker` (a VM with address ip4(asker)) for `target`.
fn who_has(asker: u8, target: Ipv4Addr) -> Vec<u8> {
    arp(Operation::Request, vm(asker), vm(asker), ip4(asker), target)
}

/// An NS from `asker` for `target`.
fn solicit(asker: u8, target: Ipv6Addr) -> Vec<u8> {
    ns(vm(asker), ip6(asker), target, Some(vm(asker)))
}

/// The frames `port` of `node` got, decoded as ARP replies.
fn arp_replies(net: &Net, node: usize, port: PortId) -> Vec<(MacAddr, ArpRepr)> {
    net.got[node]
        .iter()
        .filter(|(p, f)| *p == port && f.get(12..14) == Some(&[0x08, 0x06]))
        .filter_map(|(_, f)| {
            let r = ArpRepr::parse(&ArpPacket::new_checked(&f[14..]).ok()?).ok()?;
            (r.operation == Operation::Reply).then_some((MacAddr::from_bytes(&f[..6])?, r))
        })
        .collect()
}

/// The NAs `port` of `node` got: (Ethernet dst, src, the NA).
fn adverts(net: &Net, node: usize, port: PortId) -> Vec<(MacAddr, MacAddr, Ndisc)> {
    net.got[node]
        .iter()
        .filter(|(p, f)| *p == port && f.get(12..14) == Some(&[0x86, 0xdd]))
        .filter_map(|(_, f)| {
            let n = Ndisc::parse(&f[14..]).ok()?;
            let (d, s) = (
                MacAddr::from_bytes(&f[..6])?,
                MacAddr::from_bytes(&f[6..12])?,
            );
            n.is_advert().then_some((d, s, n))
        })
        .collect()
}

/// Node 0 port 0: VM A; node 1 port 0: VM C; both have announced their
/// addresses once (gratuitous ARP; C an unsolicited NA too).
fn two_vms() -> Net {
    let mut net = Net::full_mesh(2);
    vm_port(&mut net, 0, 0, 0xa, None);
    vm_port(&mut net, 1, 0, 0xc, None);
    net.converge();
    net.send(0, 0, &gratuitous_arp(vm(0xa), ip4(0xa)));
    net.send(1, 0, &gratuitous_arp(vm(0xc), ip4(0xc)));
    net.send(1, 0, &na(vm(0xc), ip6(0xc), ip6(0xc), vm(0xc)));
    net.run(Duration::from_secs(3));
    net.clear();
    net
}

#[test]
fn a_known_remote_owner_is_answered_locally_and_nothing_crosses_the_mesh() {
    let mut net = two_vms();
    net.send(0, 0, &who_has(0xa, ip4(0xc)));
    net.send(0, 0, &solicit(0xa, ip6(0xc)));
    assert_eq!(net.datagrams, 0, "a request crossed the mesh");
    assert!(net.got[1].is_empty());
    let r = arp_replies(&net, 0, 0);
    assert_eq!(r.len(), 1);
    let (dst, r) = r[0];
    assert_eq!(dst, vm(0xa));
    assert_eq!(
        (r.sha, r.spa, r.tha, r.tpa),
        (vm(0xc), ip4(0xc), vm(0xa), ip4(0xa))
    );
    let n = adverts(&net, 0, 0);
    assert_eq!(n.len(), 1, "one NA (checksum and hop limit valid)");
    let (dst, src, n) = n[0];
    assert_eq!((dst, src), (vm(0xa), vm(0xc)));
    assert_eq!((n.src, n.dst, n.target), (ip6(0xc), ip6(0xa), ip6(0xc)));
    assert_eq!(n.target_lladdr, Some(vm(0xc)));
    assert_eq!(n.flags, ndisc::FLAG_SOLICITED | ndisc::FLAG_OVERRIDE);
    let c = net.nodes[0].hooks.port_counters(0);
    assert_eq!(
        (c.arp_answered, c.nd_answered, c.arp_nd_unanswered),
        (1, 1, 0)
    );
    // C's link-local address is not known on node 0 yet: the NS goes
    // out, C's NA comes back through the mesh and is snooped; asked
    // again, node 0 answers.
    net.clear();
    let ll = crate::bridge::policy::link_local(vm(0xc));
    let q = solicit(0xa, ll);
    net.send(0, 0, &q);
    assert_eq!(net.count(1, 0, &q), 1);
    let mut reply = na(vm(0xc), ll, ll, vm(0xc));
    reply[..6].copy_from_slice(vm(0xa).as_bytes());
    net.send(1, 0, &reply);
    net.clear();
    net.send(0, 0, &q);
    assert_eq!(net.datagrams, 0);
    assert_eq!(adverts(&net, 0, 0).len(), 1);
    // On C's own node, its policy alone answers for its link-local
    // address (a port on node 1 asking).
    net.clear();
    net.send(1, 1, &ns(vm(0xe), ip6(0xe), ll, Some(vm(0xe))));
    assert_eq!(net.datagrams, 0);
    assert_eq!(adverts(&net, 1, 1)[0].1, vm(0xc));
}

#[test]
fn an_unknown_address_still_goes_out_and_its_answer_is_learned() {
    let mut net = Net::full_mesh(2);
    vm_port(&mut net, 0, 0, 0xa, None);
    net.converge();
    net.clear();
    // H sits behind node 1's uplink (port 1, no policy): nobody knows it.
    let h = MacAddr([2, 0, 0, 0x55, 0, 1]);
    let hip = Ipv4Addr::new(198, 19, 1, 200);
    let req = who_has(0xa, hip);
    net.send(0, 0, &req);
    // It waits 250 ms for the distributed ARP table (node 1, which does
    // not know either), then floods.
    assert_eq!(net.count(1, 1, &req), 0);
    net.run(Duration::from_millis(300));
    assert_eq!(net.count(1, 1, &req), 1, "the unknown request went out");
    assert_eq!(net.nodes[0].hooks.port_counters(0).arp_nd_unanswered, 1);
    // H answers (a unicast reply through the mesh): node 0 snoops it.
    let mut reply = arp(Operation::Reply, h, h, hip, ip4(0xa));
    reply[..6].copy_from_slice(vm(0xa).as_bytes());
    net.send(1, 1, &reply);
    assert_eq!(net.count(0, 0, &reply), 1);
    // One OGM interval: node 1's TT claim for H reaches node 0, which
    // then knows H is alive there.
    net.run(Duration::from_secs(2));
    net.clear();
    net.send(0, 0, &req);
    assert_eq!(net.datagrams, 0, "asked again, answered locally");
    assert_eq!(arp_replies(&net, 0, 0)[0].1.sha, h);
    assert!(net.nodes[0]
        .arp_nd_entries(net.now)
        .contains(&(0, IpAddr::V4(hip), h)));
    // Five minutes of silence: the snooped entry is gone, asked again it
    // floods.
    net.run(Duration::from_secs(301));
    net.clear();
    net.send(0, 0, &req);
    net.run(Duration::from_millis(300));
    assert_eq!(net.count(1, 1, &req), 1);
}

#[test]
fn own_addresses_announcements_and_dead_owners_are_not_answered() {
    let mut net = two_vms();
    // A asks for its own address (an ARP probe, and an ordinary request).
    for f in [
        arp(
            Operation::Request,
            vm(0xa),
            vm(0xa),
            Ipv4Addr::UNSPECIFIED,
            ip4(0xa),
        ),
        who_has(0xa, ip4(0xa)),
        ns(vm(0xa), Ipv6Addr::UNSPECIFIED, ip6(0xa), None),
    ] {
        net.send(0, 0, &f);
        assert_eq!(net.count(1, 0, &f), 1, "flooded, not answered");
    }
    // Announcements always flood.
    let g = gratuitous_arp(vm(0xa), ip4(0xa));
    net.send(0, 0, &g);
    assert_eq!(net.count(1, 0, &g), 1);
    assert!(arp_replies(&net, 0, 0).is_empty());
    assert!(adverts(&net, 0, 0).is_empty());
    // C's port goes away: its MAC leaves the mesh, its address is no
    // longer answered for (even though the policy said so a moment ago).
    net.nodes[1].remove_port(0);
    net.run(Duration::from_secs(3));
    net.clear();
    let req = who_has(0xa, ip4(0xc));
    net.send(0, 0, &req);
    assert!(
        arp_replies(&net, 0, 0).is_empty(),
        "answered for a dead owner"
    );
    assert_eq!(net.count(1, 1, &req), 1);
}

#[test]
fn dad_is_answered_only_for_an_address_another_live_mac_owns() {
    let mut net = two_vms();
    // A newcomer on node 0 port 1 (an uplink) probes C's address and a
    // free one.
    let newcomer = MacAddr([2, 0, 0, 0x55, 0, 9]);
    let taken = ns(newcomer, Ipv6Addr::UNSPECIFIED, ip6(0xc), None);
    let free = ns(newcomer, Ipv6Addr::UNSPECIFIED, ip6(0x99), None);
    net.send(0, 1, &taken);
    assert_eq!(net.datagrams, 0);
    let n = adverts(&net, 0, 1);
    assert_eq!(n.len(), 1);
    let (dst, src, n) = n[0];
    assert_eq!(
        (dst, src),
        (crate::switch::announce::ALL_NODES_MAC, vm(0xc))
    );
    assert_eq!(n.dst, crate::switch::announce::ALL_NODES);
    assert_eq!(n.flags, ndisc::FLAG_OVERRIDE, "a defence: no S flag");
    net.clear();
    net.send(0, 1, &free);
    assert_eq!(net.count(1, 1, &free), 1, "a free address is not defended");
    assert!(adverts(&net, 0, 1).is_empty());
}

#[test]
fn answers_stay_in_their_network() {
    let mut net = Net::full_mesh(2);
    vm_port(&mut net, 0, 0, 0xa, Some(10));
    vm_port(&mut net, 0, 1, 0xb, Some(20));
    vm_port(&mut net, 1, 0, 0xc, Some(10));
    net.converge();
    net.send(1, 0, &gratuitous_arp(vm(0xc), ip4(0xc)));
    net.run(Duration::from_secs(3));
    net.clear();
    // A (VLAN 10) is answered, untagged as its port expects.
    net.send(0, 0, &who_has(0xa, ip4(0xc)));
    let r = arp_replies(&net, 0, 0);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].1.sha, vm(0xc));
    // B (VLAN 20) asking for the same address is not: it floods in VLAN 20
    // (where nobody has it).
    net.clear();
    let req = who_has(0xb, ip4(0xc));
    net.send(0, 1, &req);
    assert!(arp_replies(&net, 0, 1).is_empty());
    assert_eq!(net.nodes[0].hooks.port_counters(1).arp_nd_unanswered, 1);
    assert_eq!(net.count(1, 0, &req), 0, "crossed networks");
}

#[test]
fn after_a_migration_the_answer_follows_the_mac() {
    let mut net = Net::full_mesh(3);
    vm_port(&mut net, 0, 0, 0xa, None);
    vm_port(&mut net, 1, 0, 0xc, None);
    net.converge();
    net.send(1, 0, &gratuitous_arp(vm(0xc), ip4(0xc)));
    net.send(1, 0, &na(vm(0xc), ip6(0xc), ip6(0xc), vm(0xc)));
    net.run(Duration::from_secs(3));
    // C migrates to node 2: its port there gets the policy, the VM
    // announces itself; node 1's port goes away.
    vm_port(&mut net, 2, 0, 0xc, None);
    net.send(2, 0, &gratuitous_arp(vm(0xc), ip4(0xc)));
    net.nodes[1].remove_port(0);
    net.run(Duration::from_millis(200));
    assert_eq!(net.fdb(0, vm(0xc)), Some(Location::Originator(orig(2))));
    net.clear();
    net.send(0, 0, &who_has(0xa, ip4(0xc)));
    net.send(0, 0, &solicit(0xa, ip6(0xc)));
    assert_eq!(net.datagrams, 0);
    assert_eq!(arp_replies(&net, 0, 0)[0].1.sha, vm(0xc));
    assert_eq!(adverts(&net, 0, 0)[0].2.target_lladdr, Some(vm(0xc)));
    // A unicast to the answered MAC reaches C at its new node.
    let f = ipv4(vm(0xa), vm(0xc), ip4(0xa), ip4(0xc), 17, &udp(1, 2, b"x"));
    net.send(0, 0, &f);
    assert_eq!(net.count(2, 0, &f), 1);
    // The address changes hands: D (new MAC) takes C's IPv4 on node 1 and
    // announces it; nobody answers with C's MAC any more.
    let d = MacAddr([2, 0, 0, 0x55, 0, 0xd]);
    net.nodes[2].remove_port(0);
    net.run(Duration::from_secs(3));
    net.send(1, 1, &gratuitous_arp(d, ip4(0xc)));
    net.clear();
    // Before D's TT entry arrives node 0 cannot vouch for D: it floods
    // (and never answers with C's MAC).
    let req = who_has(0xa, ip4(0xc));
    net.send(0, 0, &req);
    assert!(arp_replies(&net, 0, 0).is_empty());
    assert_eq!(net.count(1, 1, &req), 1);
    net.run(Duration::from_secs(2));
    net.clear();
    net.send(0, 0, &req);
    assert_eq!(net.datagrams, 0);
    assert_eq!(arp_replies(&net, 0, 0)[0].1.sha, d);
}

#[test]
fn an_owner_behind_the_asking_port_answers_itself() {
    let mut net = Net::full_mesh(2);
    net.converge();
    // Two hosts behind node 0's uplink port 0: X answers for itself.
    let (x, y) = (
        MacAddr([2, 0, 0, 0x55, 0, 1]),
        MacAddr([2, 0, 0, 0x55, 0, 2]),
    );
    let (xip, yip) = (ip4(1), ip4(2));
    net.send(0, 0, &arp(Operation::Request, x, x, xip, ip4(3)));
    net.clear();
    let req = arp(Operation::Request, y, y, yip, xip);
    net.send(0, 0, &req);
    assert!(arp_replies(&net, 0, 0).is_empty());
    assert_eq!(net.count(0, 1, &req), 1, "flooded as before");
}

#[test]
fn hostile_requests_and_snoops_never_panic_and_answers_always_parse() {
    use crate::bridge::arp_nd::{snoop, Request};
    let seeds = [
        who_has(0xa, ip4(0xc)),
        solicit(0xa, ip6(0xc)),
        ns(vm(0xa), Ipv6Addr::UNSPECIFIED, ip6(0xc), None),
        na(vm(0xc), ip6(0xc), ip6(0xc), vm(0xc)),
        gratuitous_arp(vm(0xa), ip4(0xa)),
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut requests, mut snoops) = (0, 0);
    let mut out = Vec::new();
    for i in 0..50_000 {
        let mut f = seeds[i % seeds.len()].clone();
        for _ in 0..(rnd() % 3) {
            let at = (rnd() as usize) % f.len();
            f[at] = rnd() as u8;
        }
        f.truncate((rnd() as usize) % (f.len() + 8));
        snoops += usize::from(snoop(&f).is_some());
        if let Some(r) = Request::parse(&f) {
            requests += 1;
            r.answer(vm(0xc), rnd() % 2 == 0, &mut out);
            // Every answer is a valid ARP reply or NA (checksum included).
            let off = crate::wire::ethernet::l3_offset(&out).unwrap().0;
            match r {
                Request::Arp { .. } => {
                    let a = ArpRepr::parse(&ArpPacket::new_checked(&out[off..]).unwrap()).unwrap();
                    assert_eq!(a.operation, Operation::Reply);
                }
                Request::Ns { .. } => assert!(Ndisc::parse(&out[off..]).unwrap().is_advert()),
            }
        }
    }
    // The mutations must leave many frames valid, or this tests nothing.
    assert!(requests > 1000 && snoops > 1000, "{requests} {snoops}");
}
