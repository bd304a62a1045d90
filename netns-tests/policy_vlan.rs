//! Isolated networks end to end: VLAN 10 spans both nodes (untagged in
//! the VMs, tagged in the mesh as a kernel's bat0.10), VLAN 20 and the
//! untagged network beside it; nothing crosses. A port moved into VLAN 10
//! by editing the file and SIGHUP, and one added at runtime with `ctl
//! port add --mac --ip --vlan`, join it.

use std::time::Duration;

use crate::common::raw::{Capture, RawSock};
use crate::common::*;
use crate::policy::{has_mark, mac, udp4};

#[test]
fn vlans_stay_apart_and_ports_join_them_at_runtime() {
    let opts = Opts {
        vm_policy: true,
        ..Opts::default()
    };
    let mut t = Topology::with_opts(
        "pvlan",
        &[
            &[Attach::TapNic, Attach::TapNic],
            &[Attach::TapNic, Attach::TapNic, Attach::External],
        ],
        500,
        opts,
    );
    for (port, vlan) in [("t-vm1a", 10), ("t-vm2a", 10), ("t-vm1b", 20)] {
        t.port_config
            .push((port.into(), format!("vlan = {vlan}\n")));
    }
    t.start_all();
    assert!(t.wait_routes(Duration::from_secs(30)), "{}", t.dump_logs());
    let v = |n: &str| t.vm(n).clone();
    let (a1, b1, a2, b2, c2) = (v("vm1a"), v("vm1b"), v("vm2a"), v("vm2b"), v("vm2c"));
    // VLAN 10 across the mesh, both families.
    assert!(
        t.ping_until("vm1a", &a2.ip4, Duration::from_secs(20)),
        "VLAN 10 across the mesh\n{}",
        t.dump_logs()
    );
    assert!(t.ping("vm1a", &a2.ip6, 3, &[]));
    // hv2 knows vm1a in VLAN 10 only (the TT entry carries the VID flag).
    let fdb = t.ctl(2, "fdb");
    let entries: Vec<_> = fdb
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["mac"] == a1.mac.as_str())
        .collect();
    assert!(
        !entries.is_empty() && entries.iter().all(|e| e["vlan"] == 10),
        "{fdb}"
    );
    // Nothing crosses: 20 -> 10, untagged -> 10, 20 -> untagged.
    for (from, to) in [(&b1, &a2), (&b2, &a1), (&b1, &b2), (&a2, &b2)] {
        assert!(
            !t.ping(&from.name, &to.ip4, 2, &[]),
            "{} reached {}",
            from.name,
            to.name
        );
    }
    // A broadcast in VLAN 10 reaches VLAN 10 only.
    let caps = [
        Capture::start(&a2.ns, "eth0", has_mark),
        Capture::start(&b1.ns, "eth0", has_mark),
        Capture::start(&b2.ns, "eth0", has_mark),
    ];
    let s = RawSock::open(&a1.ns, "eth0");
    let f = udp4(
        mac(&a1.mac),
        meshwire::wire::MacAddr::BROADCAST,
        a1.ip4.parse().unwrap(),
        "198.19.1.255".parse().unwrap(),
    );
    for _ in 0..5 {
        assert!(s.send(&f));
    }
    let got: Vec<usize> = caps
        .into_iter()
        .map(|c| c.finish(Duration::from_millis(1000)).len())
        .collect();
    assert_eq!(
        got,
        vec![5, 0, 0],
        "VLAN 10 broadcast at (vm2a, vm1b, vm2b)"
    );
    assert!(f[12..14] == [8, 0], "sent untagged");

    // vm1b moves to VLAN 10 in the file; SIGHUP applies it.
    t.port_config.retain(|(p, _)| p != "t-vm1b");
    t.port_config.push(("t-vm1b".into(), "vlan = 10\n".into()));
    t.write_config(1);
    let pid = t.hvs[0].daemon.as_ref().unwrap().id().to_string();
    sh(&["kill", "-HUP", &pid]);
    assert!(
        t.ping_until("vm1b", &a2.ip4, Duration::from_secs(10)),
        "vm1b not in VLAN 10 after SIGHUP\n{}",
        t.log(1)
    );
    assert!(
        !t.ping("vm1b", &b2.ip4, 2, &[]),
        "vm1b still untagged-reachable"
    );
    // A port added at runtime into VLAN 10, with its MAC and addresses.
    let sock = t.socket(2);
    sh(&[
        BIN,
        "ctl",
        "--socket",
        sock.to_str().unwrap(),
        "port",
        "add",
        "t-vm2c",
        "--mac",
        &c2.mac,
        "--ip",
        &c2.ip4,
        &c2.ip6,
        "--vlan",
        "10",
    ]);
    let hv2 = t.hvs[1].ns.clone();
    ns_exec(&hv2, &["ip", "link", "set", "t-vm2c", "netns", &c2.ns]);
    ns_exec(
        &c2.ns,
        &["ip", "link", "set", "dev", "t-vm2c", "name", "eth0"],
    );
    ns_exec(&c2.ns, &["ip", "link", "set", "eth0", "address", &c2.mac]);
    ns_exec(
        &c2.ns,
        &[
            "ip",
            "addr",
            "add",
            &format!("{}/24", c2.ip4),
            "dev",
            "eth0",
        ],
    );
    ns_exec(&c2.ns, &["ip", "link", "set", "eth0", "up"]);
    assert!(
        t.ping_until("vm2c", &a1.ip4, Duration::from_secs(10)),
        "the runtime port is not in VLAN 10\n{}",
        t.log(2)
    );
    assert!(
        !t.ping("vm2c", &b2.ip4, 2, &[]),
        "the runtime port reached the untagged network"
    );
    let ports = t.ctl(2, "ports");
    let p = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "t-vm2c")
        .unwrap();
    assert_eq!(p["settings"]["vlan"], 10, "{p}");
    assert_eq!(p["settings"]["mac"], c2.mac.as_str(), "{p}");
}
