//! `[[port]] bridge` (issue 10): the layout where the VMs' own NICs sit in a
//! Linux bridge on the hypervisor and meshwire's port is the bridge's
//! uplink. meshwire makes its TAP a port of the bridge itself, the TAP
//! stays in the bridge while the daemon is away (crash or clean stop) so
//! the VMs stay attached and traffic resumes when it is back, and `ctl
//! announce` on the port first removes the announced MAC from the bridge's
//! FDB, so a VM that arrived behind the bridge and has said nothing yet is
//! reachable at once.
//!
//! Layout: hv1 has bridge `vmbr` with vm1a behind it and the port `uplink`
//! (`bridge = "vmbr"`); hv2 has vm2a on a TAP; a third VM (`vmm`) has a NIC
//! in hv1's bridge and a TAP on hv2, one up at a time, as a migrating VM.

use std::time::Duration;

use serde_json::Value;

use crate::common::migration::{ctl_ok, NsGuard, Stream};
use crate::common::*;

const VM_MAC: &str = "02:00:00:01:99:02";
const VM_IP: &str = "198.19.1.98";

/// The bridge `dev` is a port of, from `ip -j link`.
fn master_of(t: &Topology, hv: usize, dev: &str) -> Option<String> {
    let out = ns_exec(&t.hvs[hv - 1].ns, &["ip", "-j", "link", "show", "dev", dev]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0]["master"].as_str().map(str::to_owned)
}

/// Whether hv's bridge `vmbr` has `mac` learned on `dev`.
fn fdb_has(t: &Topology, hv: usize, mac: &str, dev: &str) -> bool {
    let out = ns_exec(
        &t.hvs[hv - 1].ns,
        &["bridge", "-j", "fdb", "show", "br", "vmbr"],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .any(|e| e["mac"] == mac && e["ifname"] == dev)
}

fn topology(prefix: &str) -> Topology {
    let opts = Opts {
        bridge_key: true,
        ..Opts::default()
    };
    let mut t = Topology::with_opts(
        prefix,
        &[&[Attach::Bridge], &[Attach::TapNic], &[Attach::TapNic]],
        200,
        opts,
    );
    t.start_all();
    assert!(
        t.wait_routes(Duration::from_secs(30)),
        "routes never formed\n{}",
        t.dump_logs()
    );
    t
}

#[test]
fn the_bridged_port_joins_its_bridge_and_stays_across_restarts() {
    let mut t = topology("mwBr");
    assert_eq!(
        master_of(&t, 1, "uplink").as_deref(),
        Some("vmbr"),
        "meshwire did not make its port a port of vmbr"
    );
    let ports = t.ctl(1, "ports");
    let up = ports
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "uplink")
        .unwrap();
    assert_eq!(up["bridge"], "vmbr", "{ports}");
    let vm1a = t.vm("vm1a").ip4.clone();
    assert!(
        t.ping_until("vm3a", &vm1a, Duration::from_secs(20)),
        "vm3a cannot reach vm1a behind hv1's bridge\n{}",
        t.dump_logs()
    );

    // vm3a pings vm1a every 50 ms across both restarts.
    let stream = Stream::start_to(&t, "vm3a", &vm1a, "0.05");
    assert!(stream.resumes(5, Duration::from_secs(10)), "no stream");
    for kill in [true, false] {
        let how = if kill { "kill -9" } else { "SIGTERM" };
        t.stop(1, kill);
        // The daemon is gone; its TAP is not, and it is still bridged.
        assert_eq!(
            master_of(&t, 1, "uplink").as_deref(),
            Some("vmbr"),
            "after {how} the TAP left the bridge (or went away)"
        );
        let before = stream.replies();
        t.start(1);
        assert!(
            stream.resumes(20, Duration::from_secs(30)),
            "after {how} and a restart, vm3a's pings to vm1a did not come back ({} replies before)\n{}",
            before,
            t.dump_logs()
        );
        assert_eq!(master_of(&t, 1, "uplink").as_deref(), Some("vmbr"));
    }
    eprintln!(
        "pings every 50 ms across a kill -9 and a SIGTERM restart: {} of {} answered",
        stream.replies(),
        stream.sent()
    );
    // In a full mesh nothing is forwarded, least of all in circles while
    // hv1 was away (the others' stale routes through each other).
    for hv in [2, 3] {
        let m = &t.ctl(hv, "stats")["mesh"];
        assert_eq!(
            m["ttl_exceeded"], 0,
            "hv{hv}: unicast looped until its TTL ran out: {m}"
        );
    }

    // A bridged port removed at runtime takes its TAP with it.
    ctl_ok(&t, 1, &["port", "del", "uplink"]);
    assert!(
        wait_until(Duration::from_secs(5), || !ns_try(
            &t.hvs[0].ns,
            &["ip", "link", "show", "dev", "uplink"]
        )),
        "the removed bridged port's TAP stayed"
    );
}

#[test]
fn announce_on_a_bridged_port_clears_the_bridges_stale_entry() {
    let t = topology("mwBa");
    // The migrating VM: m1 in hv1's bridge, m2 a TAP of hv2's meshwire.
    let vm_ns = format!("{}-vmm", t.prefix);
    sh(&["ip", "netns", "add", &vm_ns]);
    let _guard = NsGuard(vm_ns.clone());
    let hv1 = t.hvs[0].ns.clone();
    sh(&[
        "ip", "link", "add", "name", "m1", "netns", &vm_ns, "type", "veth", "peer", "name",
        "v-mig", "netns", &hv1,
    ]);
    ns_exec(
        &hv1,
        &["ip", "link", "set", "v-mig", "master", "vmbr", "up"],
    );
    ctl_ok(&t, 2, &["port", "add", "t-mig"]);
    ns_exec(
        &t.hvs[1].ns,
        &["ip", "link", "set", "t-mig", "netns", &vm_ns],
    );
    ns_exec(&vm_ns, &["ip", "link", "set", "t-mig", "name", "m2"]);
    for dev in ["m1", "m2"] {
        // Silent: no IPv6 (DAD, MLD), so the VM sends only what the test asks.
        ns_exec(
            &vm_ns,
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{dev}.disable_ipv6=1"),
            ],
        );
        ns_exec(&vm_ns, &["ip", "link", "set", dev, "address", VM_MAC]);
        ns_exec(
            &vm_ns,
            &["ip", "addr", "add", &format!("{VM_IP}/24"), "dev", dev],
        );
    }
    ns_exec(&vm_ns, &["ip", "link", "set", "m2", "up"]);

    // The VM on hv2: vm1a (behind hv1's bridge) talks to it, and hv1's
    // bridge learns its MAC on the uplink.
    assert!(
        t.ping_until("vm1a", VM_IP, Duration::from_secs(20)),
        "vm1a cannot reach the VM on hv2\n{}",
        t.dump_logs()
    );
    assert!(
        fdb_has(&t, 1, VM_MAC, "uplink"),
        "hv1's bridge never learned the VM on uplink"
    );

    // It moves behind hv1's bridge and says nothing: the bridge still
    // sends its frames to the uplink, and vm1a cannot reach it.
    ns_exec(&vm_ns, &["ip", "link", "set", "m2", "down"]);
    ns_exec(&vm_ns, &["ip", "link", "set", "m1", "up"]);
    assert!(
        !t.ping("vm1a", VM_IP, 2, &["-W", "1"]),
        "vm1a reached the silent VM through a stale bridge entry: the test shows nothing"
    );
    assert!(fdb_has(&t, 1, VM_MAC, "uplink"));

    // The migration hook: announce on the bridged port.
    let out = ctl_ok(
        &t,
        1,
        &[
            "announce", "--port", "uplink", "--mac", VM_MAC, "--ip", VM_IP,
        ],
    );
    assert!(out.contains("removed from its bridge's FDB"), "{out}");
    assert!(!fdb_has(&t, 1, VM_MAC, "uplink"), "the stale entry stayed");
    assert!(
        t.ping("vm1a", VM_IP, 3, &["-W", "1"]),
        "vm1a cannot reach the VM after the announce\n{}",
        t.dump_logs()
    );
    // And vm3a on the third node reaches it at its new place.
    assert!(
        t.ping_until("vm3a", VM_IP, Duration::from_secs(10)),
        "vm3a cannot reach the VM at hv1\n{}",
        t.dump_logs()
    );
}
