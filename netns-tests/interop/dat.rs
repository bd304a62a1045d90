//! batman-adv's distributed ARP table between a kernel node and meshwire
//! (issue 11): each answers the other's ARP lookups from its DHT store.
//!
//! - The kernel asks: its client (bat0) resolves a meshwire VM; the kernel
//!   sends DHT_GET to meshwire (its only DAT candidate), meshwire answers
//!   from the VM port's policy with a DAT_CACHE_REPLY, the kernel drops
//!   its held broadcast: the VM never sees an ARP request.
//! - meshwire asks: the kernel's client uses an address only the kernel's
//!   DAT store knows (its own, from its own outgoing request); the VM
//!   resolves it, meshwire sends DHT_GET to the kernel, the kernel's
//!   DAT_CACHE_REPLY answers and meshwire drops its held flood.

use std::time::Duration;

use super::common::raw::Capture;
use super::common::*;
use super::refvm::RefVm;
use super::*;

/// The kernel client's second address (step 2).
const RV_SECOND_IP: &str = "198.19.1.101";

fn node_counter(t: &Topology, section: &str, name: &str) -> u64 {
    t.ctl(1, "stats")[section][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {section} counter {name}"))
}

fn port_counter(t: &Topology, port: &str, k: &str) -> u64 {
    let ports = t.ctl(1, "ports");
    find(&ports, "name", port)
        .and_then(|p| p["policy"][k].as_u64())
        .unwrap_or_else(|| panic!("no {k} of port {port}: {ports}"))
}

/// ARP requests whose sender hardware address is `sha`.
fn arp_requests_from(sha: [u8; 6]) -> impl Fn(&[u8]) -> bool + Send + 'static {
    move |f: &[u8]| f.len() >= 42 && f[12..14] == [8, 6] && f[20..22] == [0, 1] && f[22..28] == sha
}

#[test]
fn kernel_and_meshwire_resolve_arp_through_each_others_dat() {
    let opts = Opts {
        vm_policy: true,
        ..Opts::default()
    };
    let mut t = Topology::with_opts("mwD", &[&[Attach::TapNic]], OGM_MS, opts);
    t.opts.port_mtu = Some(1500);
    let (rv_priv, rv_pub) = genkey();
    t.hvs[0].extra_config = kernel_peer_config(&rv_pub);
    let mw_orig = t.originator_of(1);
    let vm = t.vm("vm1a").clone();
    let port = format!("t-{}", vm.name);
    t.start(1);
    let args = kernel_node_args(&t, &rv_priv, &[("U", 1)]);
    let rv = RefVm::start("mwD", &args);
    let ok = wait_until(Duration::from_secs(60), || {
        rv.cmd("batctl o -H")
            .lines()
            .any(|l| l.contains(&mw_orig) && l.trim_start().starts_with('*'))
            && find(&t.ctl(1, "originators"), "originator", RV_ORIG)
                .is_some_and(|o| o["tq"].as_u64().unwrap_or(0) > 0)
    });
    assert!(ok, "no routes both ways\n{}", t.dump_logs());
    // The VM speaks once, without ARP: meshwire's FDB and the kernel's TT
    // know its MAC, nobody its address.
    let py =
        "import socket\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\ns.bind(('eth0',0))\n\
              m=bytes.fromhex(__import__('sys').argv[1].replace(':',''))\n\
              s.send(b'\\xff'*6+m+b'\\x88\\xb5'+bytes(46))\n";
    ns_exec(&vm.ns, &["python3", "-c", py, &vm.mac]);
    let ok = wait_until(Duration::from_secs(30), || {
        rv.cmd("batctl tg -H").contains(&vm.mac)
    });
    assert!(ok, "the kernel never learned the VM's MAC from TT");
    // ... and meshwire the kernel client's (answers vouch only for MACs
    // the FDB or the TT places).
    let ok = wait_until(Duration::from_secs(30), || {
        t.ctl(1, "tt").to_string().contains(RV_BAT_MAC)
    });
    assert!(
        ok,
        "meshwire's TT never listed the kernel's bat0: {}",
        t.ctl(1, "tt")
    );

    // 1. The kernel asks meshwire.
    let rv_mac: meshwire::wire::MacAddr = RV_BAT_MAC.parse().unwrap();
    let cap = Capture::start(&vm.ns, "eth0", arp_requests_from(rv_mac.0));
    let k_get = rv.stat("dat_get_tx");
    let mw_answered = node_counter(&t, "node", "dat_answered");
    let arp_answered = port_counter(&t, &port, "arp_answered");
    assert!(
        rv.try_cmd(&format!("ping -c 2 -W 3 {}", vm.ip4)).0,
        "kernel -> VM failed\n{}",
        t.dump_logs()
    );
    let n = rv.cmd(&format!("ip neigh show {}", vm.ip4));
    assert!(n.contains(&vm.mac), "the kernel's ARP entry: {n}");
    assert!(rv.stat("dat_get_tx") > k_get, "the kernel sent no DHT_GET");
    assert!(
        node_counter(&t, "node", "dat_answered") > mw_answered,
        "meshwire answered no DHT_GET: {}",
        t.ctl(1, "stats")
    );
    // The VM's own ARP for the kernel (to answer the ping) was answered by
    // meshwire from the DHT_GET's sender.
    assert!(
        port_counter(&t, &port, "arp_answered") > arp_answered,
        "the VM's ARP for the kernel was not answered by meshwire: tt {} fdb {} ports {}",
        t.ctl(1, "tt"),
        t.ctl(1, "fdb"),
        t.ctl(1, "ports")
    );
    let dc = rv.cmd("batctl dc -H");
    assert!(
        dc.contains(&vm.ip4) && dc.contains(&vm.mac),
        "kernel DAT cache:\n{dc}"
    );
    let got = cap.finish(Duration::from_millis(600));
    assert!(
        got.is_empty(),
        "the VM saw {} ARP requests from the kernel",
        got.len()
    );

    // 2. meshwire asks the kernel: a second address on the kernel's bat0,
    // used toward the VM. The kernel answers its own request for the VM
    // from its DAT store (no DHT_GET), so only the kernel knows the address
    // until the VM asks.
    rv.cmd(&format!("ip addr add {RV_SECOND_IP}/24 dev bat0"));
    rv.cmd("ip neigh flush dev bat0");
    let get_rx = rv.stat("dat_get_rx");
    let cached_tx = rv.stat("dat_cached_reply_tx");
    let prevented = node_counter(&t, "node", "dat_fallback_prevented");
    let mw_get_rx = node_counter(&t, "mesh", "dat_get_rx");
    assert!(
        rv.try_cmd(&format!("ping -c 2 -W 3 -I {RV_SECOND_IP} {}", vm.ip4))
            .0,
        "kernel ({RV_SECOND_IP}) -> VM failed\n{}",
        t.dump_logs()
    );
    assert_eq!(
        node_counter(&t, "mesh", "dat_get_rx"),
        mw_get_rx,
        "the kernel asked the DHT although its store knew the VM"
    );
    let n = ns_exec(&vm.ns, &["ip", "neigh", "show", RV_SECOND_IP]);
    assert!(n.contains(RV_BAT_MAC), "the VM's ARP entry: {n}");
    assert!(
        rv.stat("dat_get_rx") > get_rx,
        "meshwire sent the kernel no DHT_GET"
    );
    assert!(
        rv.stat("dat_cached_reply_tx") > cached_tx,
        "the kernel sent no cache reply"
    );
    assert!(
        node_counter(&t, "node", "dat_fallback_prevented") > prevented,
        "meshwire flooded the VM's request anyway: {}",
        t.ctl(1, "stats")
    );
    eprintln!(
        "DAT between meshwire and the kernel: kernel dc:\n{}\nkernel stats:\n{}",
        rv.cmd("batctl dc"),
        rv.cmd("batctl statistics | grep dat")
    );
}
