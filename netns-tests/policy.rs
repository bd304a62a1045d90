//! Port policy (issue 11) end to end: a hostile VM sends the real bad
//! traffic from its namespace; the other VMs and nodes check that none of
//! it arrives while the good VMs' traffic flows.
//!
//! Layout: hv1 has vm1a (the hostile one) and vm1b, hv2 has vm2a; every
//! port is a VM port with its MAC and addresses (`Opts::vm_policy`).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use meshwire::switch::announce;
use meshwire::wire::arp::{self, Operation};
use meshwire::wire::{ipv4, ndisc, MacAddr};
use serde_json::Value;

use crate::common::raw::{Capture, RawSock};
use crate::common::*;

pub const MARK: &[u8] = b"MESHWIRE-POLICY-TEST";

pub fn has_mark(f: &[u8]) -> bool {
    f.windows(MARK.len()).any(|w| w == MARK)
}

pub fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

pub fn eth(dst: MacAddr, src: MacAddr, et: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(dst.as_bytes());
    f.extend_from_slice(src.as_bytes());
    f.extend_from_slice(&et.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A UDP datagram carrying the mark, from `sip` (any address the sender
/// likes) to port 9.
pub fn udp4(src: MacAddr, dst: MacAddr, sip: Ipv4Addr, dip: Ipv4Addr) -> Vec<u8> {
    let mut l4 = vec![0x30, 0x39, 0, 9, 0, 0, 0, 0];
    l4.extend_from_slice(MARK);
    let len = l4.len() as u16;
    l4[4..6].copy_from_slice(&len.to_be_bytes());
    let mut p = vec![0u8; 20];
    ipv4::Repr {
        src_addr: sip,
        dst_addr: dip,
        protocol: 17,
        payload_len: l4.len(),
        ttl: 64,
        tos: 0,
        ident: 7,
        dont_frag: false,
    }
    .emit(&mut p)
    .unwrap();
    p.extend_from_slice(&l4);
    eth(dst, src, 0x0800, &p)
}

/// An IPv6 UDP datagram carrying the mark (checksum 0: receivers drop
/// it, but it is seen on their wire, which is what is counted).
pub fn udp6(src: MacAddr, dst: MacAddr, sip: Ipv6Addr, dip: Ipv6Addr) -> Vec<u8> {
    let mut l4 = vec![0x30, 0x39, 0, 9, 0, 0, 0, 0];
    l4.extend_from_slice(MARK);
    let len = l4.len() as u16;
    l4[4..6].copy_from_slice(&len.to_be_bytes());
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&[17, 64]);
    p.extend_from_slice(&sip.octets());
    p.extend_from_slice(&dip.octets());
    p.extend_from_slice(&l4);
    eth(dst, src, 0x86dd, &p)
}

pub fn arp_reply(
    src: MacAddr,
    dst: MacAddr,
    sha: MacAddr,
    spa: Ipv4Addr,
    tpa: Ipv4Addr,
) -> Vec<u8> {
    let mut p = [0u8; arp::PACKET_LEN];
    arp::Repr {
        operation: Operation::Reply,
        sha,
        spa,
        tha: dst,
        tpa,
    }
    .emit(&mut arp::Packet::new_unchecked(&mut p[..]));
    eth(dst, src, 0x0806, &p)
}

fn port_policy(t: &Topology, hv: usize, port: &str) -> Value {
    let ports = t.ctl(hv, "ports");
    ports
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == port))
        .map(|p| p["policy"].clone())
        .unwrap_or_else(|| panic!("no port {port} on hv{hv}: {ports}"))
}

fn counter(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("no counter {k} in {v}"))
}

/// Where hv's FDB has `mac`.
fn fdb_location(t: &Topology, hv: usize, mac: &str) -> Option<String> {
    t.ctl(hv, "fdb")
        .as_array()?
        .iter()
        .find(|e| e["mac"] == mac)
        .and_then(|e| e["location"].as_str().map(String::from))
}

pub fn policy_topology(prefix: &str) -> Topology {
    let opts = Opts {
        vm_policy: true,
        ..Opts::default()
    };
    Topology::with_opts(
        prefix,
        &[&[Attach::TapNic, Attach::TapNic], &[Attach::TapNic]],
        500,
        opts,
    )
}

#[test]
fn spoofed_frames_from_a_vm_reach_nobody_and_move_nothing() {
    let mut t = policy_topology("pspoof");
    // The bad VM may multicast only what IP needs.
    t.port_config.push((
        "t-vm1a".into(),
        "multicast = [\"arp\", \"dhcp\", \"nd\", \"mld\"]\n".into(),
    ));
    t.start_all();
    assert!(t.wait_routes(Duration::from_secs(30)), "{}", t.dump_logs());
    let (bad, good, remote) = (
        t.vm("vm1a").clone(),
        t.vm("vm1b").clone(),
        t.vm("vm2a").clone(),
    );
    // The good VMs (and the bad one, as itself) talk, v4 and v6.
    for (a, b) in [(&good, &remote), (&bad, &remote), (&remote, &good)] {
        assert!(
            t.ping_until(&a.name, &b.ip4, Duration::from_secs(20)),
            "{} -> {}\n{}",
            a.name,
            b.name,
            t.dump_logs()
        );
        assert!(
            t.ping(&a.name, &b.ip6, 2, &[]),
            "{} -> {} v6",
            a.name,
            b.name
        );
    }
    let moves_before: Vec<u64> = (1..=2)
        .map(|hv| t.ctl(hv, "stats")["node"]["moves"].as_u64().unwrap())
        .collect();
    let caps = [
        Capture::start(&good.ns, "eth0", has_mark),
        Capture::start(&remote.ns, "eth0", has_mark),
    ];
    let (bm, gm, rm) = (mac(&bad.mac), mac(&good.mac), mac(&remote.mac));
    // ARP replies from the bad VM's MAC that claim vm1b's address.
    let victim = good.ip4.parse::<Ipv4Addr>().unwrap().octets();
    let poison = move |f: &[u8]| -> bool {
        f.len() >= 42 && f[12..14] == [8, 6] && f[22..28] == bm.0 && f[28..32] == victim
    };
    let arp_caps = [
        Capture::start(&good.ns, "eth0", poison),
        Capture::start(&remote.ns, "eth0", poison),
    ];
    let ip4 = |v: &Vm| v.ip4.parse::<Ipv4Addr>().unwrap();
    let ip6 = |v: &Vm| v.ip6.parse::<Ipv6Addr>().unwrap();
    // The TAP's own frames from before the VM set its MAC count too: only
    // what this test sends is compared.
    let before = port_policy(&t, 1, "t-vm1a");
    let s = RawSock::open(&bad.ns, "eth0");
    let bcast = MacAddr::BROADCAST;
    let mut sent = 0;
    let mut send = |f: Vec<u8>| {
        assert!(s.send(&f), "send from the bad VM");
        sent += 1;
    };
    for _ in 0..3 {
        // Another VM's MAC: local (vm1b) and remote (vm2a).
        send(udp4(gm, bcast, ip4(&good), Ipv4Addr::BROADCAST));
        send(udp4(rm, gm, ip4(&remote), ip4(&good)));
        send(udp4(rm, bcast, ip4(&remote), Ipv4Addr::BROADCAST));
        // Its own MAC with the others' IPv4 and IPv6 sources.
        send(udp4(bm, rm, ip4(&good), ip4(&remote)));
        send(udp4(bm, bcast, ip4(&remote), Ipv4Addr::BROADCAST));
        send(udp6(bm, rm, ip6(&good), ip6(&remote)));
        // ARP replies claiming vm1b's address, to vm2a and to everyone.
        send(arp_reply(bm, rm, bm, ip4(&good), ip4(&remote)));
        send(arp_reply(bm, bcast, bm, ip4(&good), ip4(&good)));
        // An unsolicited NA for vm1b's IPv6 address with its own MAC,
        // from its own address.
        let mut na = Vec::new();
        announce::build_unsolicited_na(&mut na, bm, ip6(&good), None);
        na[22..38].copy_from_slice(&ip6(&bad).octets());
        let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
        ndisc::Message::new_unchecked(&mut na[54..86]).fill_checksum(&ip6(&bad), &all_nodes);
        na.extend_from_slice(MARK);
        send(na);
        // Its own addresses, but a multicast kind the port may not send.
        send(udp4(
            bm,
            MacAddr([1, 0, 0x5e, 0, 0, 0xfb]),
            ip4(&bad),
            Ipv4Addr::new(224, 0, 0, 251),
        ));
        // batman-adv's own ethertype, plain and VLAN-tagged.
        let mut b = eth(bcast, bm, 0x4305, &[0; 10]);
        b.extend_from_slice(MARK);
        send(b.clone());
        b.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
        send(b);
    }
    let settle = Duration::from_millis(1500);
    let got: Vec<usize> = caps.into_iter().map(|c| c.finish(settle).len()).collect();
    let poisoned: Vec<usize> = arp_caps
        .into_iter()
        .map(|c| c.finish(Duration::ZERO).len())
        .collect();
    assert_eq!(got, vec![0, 0], "spoofed frames arrived (vm1b, vm2a)");
    assert_eq!(poisoned, vec![0, 0], "poisoning ARP replies arrived");
    // Nothing moved: vm1b still on hv1's port, vm2a still on hv2's.
    assert_eq!(
        fdb_location(&t, 1, &good.mac).as_deref(),
        Some("port t-vm1b"),
        "vm1b moved on hv1"
    );
    assert_eq!(
        fdb_location(&t, 2, &remote.mac).as_deref(),
        Some("port t-vm2a")
    );
    let moves_after: Vec<u64> = (1..=2)
        .map(|hv| t.ctl(hv, "stats")["node"]["moves"].as_u64().unwrap())
        .collect();
    assert_eq!(moves_before, moves_after, "a spoofed frame was a migration");
    // Each frame dropped for its reason, counted on the bad VM's port.
    let p = port_policy(&t, 1, "t-vm1a");
    let d = |k: &str| counter(&p, k) - counter(&before, k);
    assert_eq!(d("drop_spoofed_mac"), 9, "{p}");
    assert_eq!(d("drop_spoofed_ipv4"), 6, "{p}");
    assert_eq!(d("drop_spoofed_ipv6"), 3, "{p}");
    assert_eq!(d("drop_spoofed_arp"), 6, "{p}");
    assert_eq!(d("drop_spoofed_nd"), 3, "{p}");
    assert_eq!(d("drop_batman_from_port"), 6, "{p}");
    // The VM's own IGMP reports are not on its list either.
    assert!(d("drop_multicast_not_allowed") >= 3, "{p}");
    assert_eq!(sent, 36);
    // vm2a still reaches vm1b at vm1b's MAC (no poisoned neighbour entry).
    let neigh = ns_exec(&remote.ns, &["ip", "neigh", "show", &good.ip4]);
    assert!(
        !neigh.contains(&bad.mac),
        "vm2a's ARP cache poisoned: {neigh}"
    );
    for (a, b) in [(&good, &remote), (&remote, &good)] {
        assert!(
            t.ping(&a.name, &b.ip4, 3, &[]),
            "{} -> {} after",
            a.name,
            b.name
        );
        assert!(
            t.ping(&a.name, &b.ip6, 3, &[]),
            "{} -> {} v6 after",
            a.name,
            b.name
        );
    }
}
