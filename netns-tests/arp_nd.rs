//! ARP/ND suppression end to end: after warm-up, an ARP request and an NS
//! from a VM for a VM on another node are answered by its own node, and
//! no broadcast crosses the mesh (the other VMs never see the request and
//! the other nodes' broadcast counters do not move with it); right after
//! a migration the answer is still right; unknown addresses still resolve
//! by flooding.
//!
//! Layout: vm1a on hv1, vm2a on hv2, vm3a on hv3, each port a VM port with
//! its MAC and addresses; a migrating VM (IPv4 only) with a port on hv1
//! and on hv2 (`common/migration.rs`).

use std::time::Duration;

use crate::common::migration::*;
use crate::common::raw::Capture;
use crate::common::*;

/// hv's port counter `k` (`ctl ports --json`, under `policy`).
fn port_counter(t: &Topology, hv: usize, port: &str, k: &str) -> u64 {
    let ports = t.ctl(hv, "ports");
    ports
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == port))
        .and_then(|p| p["policy"][k].as_u64())
        .unwrap_or_else(|| panic!("no {k} of port {port} on hv{hv}: {ports}"))
}

/// Broadcasts hv's mesh received (`ctl stats`: mesh.rx_bcast).
fn rx_bcast(t: &Topology, hv: usize) -> u64 {
    t.ctl(hv, "stats")["mesh"]["rx_bcast"].as_u64().unwrap()
}

fn mac_bytes(s: &str) -> [u8; 6] {
    s.parse::<meshwire::wire::MacAddr>().unwrap().0
}

/// An ARP request or NS from `src` (an Ethernet source MAC).
fn request_from(src: [u8; 6]) -> impl Fn(&[u8]) -> bool + Send + 'static {
    move |f: &[u8]| {
        f.len() >= 42
            && f[6..12] == src
            && ((f[12..14] == [8, 6] && f[20..22] == [0, 1])
                || (f[12..14] == [0x86, 0xdd] && f.len() > 54 && f[20] == 58 && f[54] == 135))
    }
}

/// arping from `vm` for `ip`: the replying MAC (upper case), if any.
fn arping(t: &Topology, vm: &str, ip: &str, count: &str) -> Option<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &t.vm(vm).ns])
        .args(["arping", "-c", count, "-w", "5", "-I", "eth0", ip])
        .output()
        .expect("arping");
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    s.lines()
        .find(|l| l.contains("reply from"))
        .and_then(|l| l.split('[').nth(1))
        .and_then(|r| r.split(']').next())
        .map(|m| m.to_uppercase())
}

#[test]
fn arp_and_nd_for_known_vms_are_answered_locally_even_after_a_migration() {
    let opts = Opts {
        vm_policy: true,
        ..Opts::default()
    };
    let mut t = Topology::with_opts(
        "mwArpNd",
        &[&[Attach::TapNic], &[Attach::TapNic], &[Attach::TapNic]],
        500,
        opts,
    );
    t.start_all();
    for hv in [1, 2] {
        let port = format!("t-m{hv}");
        let out = ctl_ok(
            &t,
            hv,
            &["port", "add", &port, "--mac", VM_MAC, "--ip", VM_IP],
        );
        assert!(out.contains("added"), "{out}");
    }
    let vm_ns = format!("{}-{VM_NS_SUFFIX}", t.prefix);
    sh(&["ip", "netns", "add", &vm_ns]);
    let _vm_guard = NsGuard(vm_ns.clone());
    plumb_migrating_vm(&t, &vm_ns);
    assert!(t.wait_routes(Duration::from_secs(60)), "{}", t.dump_logs());
    let (v1, v2, v3) = (
        t.vm("vm1a").clone(),
        t.vm("vm2a").clone(),
        t.vm("vm3a").clone(),
    );

    // Warm-up: the first resolution floods; the answers travel back
    // through the mesh and the asking node snoops them.
    for (from, to) in [(&v1, &v2), (&v3, &v2), (&v3, &v1)] {
        assert!(
            t.ping_until(&from.name, &to.ip4, Duration::from_secs(30)),
            "{} -> {}\n{}",
            from.name,
            to.name,
            t.dump_logs()
        );
        assert!(
            t.ping(&from.name, &to.ip6, 2, &[]),
            "{} -> {} v6",
            from.name,
            to.name
        );
    }
    assert!(
        t.ping_until("vm3a", VM_IP, Duration::from_secs(20)),
        "{}",
        t.dump_logs()
    );

    // vm1a forgets its neighbours and resolves vm2a again, 5 times each
    // way: hv1 answers; vm2a and vm3a never see a request from vm1a, and
    // hv2/hv3 receive no broadcasts for them.
    let caps = [
        Capture::start(&v2.ns, "eth0", request_from(mac_bytes(&v1.mac))),
        Capture::start(&v3.ns, "eth0", request_from(mac_bytes(&v1.mac))),
    ];
    let (a0, n0) = (
        port_counter(&t, 1, "t-vm1a", "arp_answered"),
        port_counter(&t, 1, "t-vm1a", "nd_answered"),
    );
    let bcast0 = [rx_bcast(&t, 2), rx_bcast(&t, 3)];
    let rounds = 5;
    for _ in 0..rounds {
        ns_exec(&v1.ns, &["ip", "neigh", "flush", "dev", "eth0"]);
        ns_exec(&v1.ns, &["ip", "-6", "neigh", "flush", "dev", "eth0"]);
        assert!(t.ping("vm1a", &v2.ip4, 1, &[]), "v4 after the flush");
        assert!(t.ping("vm1a", &v2.ip6, 1, &[]), "v6 after the flush");
    }
    assert_eq!(
        arping(&t, "vm1a", &v2.ip4, "1").as_deref(),
        Some(v2.mac.to_uppercase().as_str()),
        "arping answered with vm2a's MAC"
    );
    let answered_v4 = port_counter(&t, 1, "t-vm1a", "arp_answered") - a0;
    let answered_v6 = port_counter(&t, 1, "t-vm1a", "nd_answered") - n0;
    assert!(answered_v4 > rounds, "ARP answered {answered_v4}");
    assert!(answered_v6 >= rounds, "NS answered {answered_v6}");
    for (c, who) in caps.into_iter().zip(["vm2a", "vm3a"]) {
        let got = c.finish(Duration::from_millis(500));
        assert!(got.is_empty(), "{who} saw {} requests from vm1a", got.len());
    }
    // Other traffic (an RS, an MLD report) may cross meanwhile; the
    // 2 x rounds + 1 requests did not.
    let bcast1 = [rx_bcast(&t, 2), rx_bcast(&t, 3)];
    for i in 0..2 {
        let d = bcast1[i] - bcast0[i];
        assert!(d < rounds, "hv{} received {d} broadcasts", i + 2);
    }

    // An address nobody has is not answered: it still goes out.
    let unknown = Capture::start(&v3.ns, "eth0", request_from(mac_bytes(&v1.mac)));
    let u0 = port_counter(&t, 1, "t-vm1a", "arp_nd_unanswered");
    assert_eq!(arping(&t, "vm1a", "198.19.1.250", "1"), None);
    assert!(
        !unknown.finish(Duration::from_millis(500)).is_empty(),
        "the unknown request never flooded"
    );
    assert!(port_counter(&t, 1, "t-vm1a", "arp_nd_unanswered") > u0);

    // The migrating VM moves hv1 -> hv2 (gratuitous ARP, as a guest
    // sends): vm3a resolves it at once, answered by hv3 with its MAC, and
    // reaches it at its new place; again after the move back.
    for (to_hv, how) in [(2, Stimulus::GratuitousArp), (1, Stimulus::CtlAnnounce)] {
        migrate(&t, &vm_ns, to_hv, how);
        let cap = Capture::start(
            &vm_ns,
            &format!("m{to_hv}"),
            request_from(mac_bytes(&v3.mac)),
        );
        let a0 = port_counter(&t, 3, "t-vm3a", "arp_answered");
        ns_exec(&v3.ns, &["ip", "neigh", "flush", "dev", "eth0"]);
        assert_eq!(
            arping(&t, "vm3a", VM_IP, "1").as_deref(),
            Some(VM_MAC.to_uppercase().as_str()),
            "after the move to hv{to_hv}"
        );
        assert!(
            port_counter(&t, 3, "t-vm3a", "arp_answered") > a0,
            "hv3 did not answer"
        );
        assert!(
            t.ping_until("vm3a", VM_IP, Duration::from_secs(10)),
            "vm3a -> the VM on hv{to_hv}\n{}",
            t.dump_logs()
        );
        let got = cap.finish(Duration::from_millis(300));
        assert!(
            got.is_empty(),
            "the request crossed the mesh: {}",
            got.len()
        );
    }
}
