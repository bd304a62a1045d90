//! The built announcements against a real kernel: written into a TAP whose
//! netdev lives in a namespace this test creates, the kernel's neighbour
//! tables must take them (root needed; only 198.19.x / fd00:: addresses).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::super::announce::{build_gratuitous_arp, build_unsolicited_na};
use super::*;
use crate::port::testnet::{tap_in_netns, Netns};

const OLD: &str = "02:00:00:00:fd:01";
const VM: &str = "02:00:00:00:fd:07";

/// Polls (bounded, 3 s) until `ip neigh show ADDR dev DEV` names `lladdr`.
fn wait_neigh(ns: &Netns, dev: &str, addr: &str, lladdr: &str) -> String {
    let mut last = String::new();
    for _ in 0..300 {
        last = ns.ip_output(&["neigh", "show", addr, "dev", dev]);
        if last.contains(&format!("lladdr {lladdr}")) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{addr} never at {lladdr}: {last:?}");
}

fn sysctl(ns: &Netns, key: &str, value: &str) {
    ns.exec(&["sysctl", "-q", "-w", &format!("{key}={value}")]);
}

#[test]
fn kernel_neighbour_tables_take_the_announcements() {
    let (name, ns, mut ports, id) = tap_in_netns(1500);
    ns.ip(&["addr", "add", "198.19.253.1/24", "dev", &name]);
    ns.ip(&[
        "addr",
        "add",
        "fd00:198:19:253::1/64",
        "dev",
        &name,
        "nodad",
    ]);
    ns.ip(&["link", "set", &name, "up"]);

    // Known neighbours at an old address: what the announcements override
    // with the default sysctls (a host updates, but does not create, entries
    // from unsolicited traffic).
    for addr in ["198.19.253.7", "fd00:198:19:253::7"] {
        ns.ip(&[
            "neigh", "add", addr, "lladdr", OLD, "dev", &name, "nud", "stale",
        ]);
    }
    let mut b = Vec::new();
    build_gratuitous_arp(&mut b, mac(VM), Ipv4Addr::new(198, 19, 253, 7), None);
    assert!(ports.send(id, &b));
    let ip6: Ipv6Addr = "fd00:198:19:253::7".parse().unwrap();
    build_unsolicited_na(&mut b, mac(VM), ip6, None);
    assert!(ports.send(id, &b));
    wait_neigh(&ns, &name, "198.19.253.7", VM);
    wait_neigh(&ns, &name, "fd00:198:19:253::7", VM);

    // With the sysctls that accept unsolicited neighbours, the kernel creates
    // entries from nothing but our frames. (Linux takes untracked NAs only
    // as a router, RFC 9131: forwarding on, in this namespace only.)
    sysctl(&ns, &format!("net.ipv4.conf.{name}.arp_accept"), "1");
    sysctl(&ns, &format!("net.ipv6.conf.{name}.forwarding"), "1");
    sysctl(
        &ns,
        &format!("net.ipv6.conf.{name}.accept_untracked_na"),
        "1",
    );
    build_gratuitous_arp(&mut b, mac(VM), Ipv4Addr::new(198, 19, 253, 8), None);
    assert!(ports.send(id, &b));
    let ip6: Ipv6Addr = "fd00:198:19:253::8".parse().unwrap();
    build_unsolicited_na(&mut b, mac(VM), ip6, None);
    assert!(ports.send(id, &b));
    wait_neigh(&ns, &name, "198.19.253.8", VM);
    wait_neigh(&ns, &name, "fd00:198:19:253::8", VM);
    let c = ports.counters();
    assert_eq!(ports.get(id).unwrap().counters.tx_frames, 4, "{c:?}");
    drop(ports.remove(id));
}
