//! Issue 4: live migration. A VM namespace holds two TAPs with the same MAC
//! and address, one from hv1's meshwire and one from hv2's; only one is up
//! at a time. A VM on hv3 pings it steadily. With a 10 s originator
//! interval, each kind of move must bring the stream back without waiting
//! for periodic OGMs. Also: ports added and removed at runtime, and on
//! reload.

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;

const VM_MAC: &str = "02:00:00:01:99:01";
const VM_IP: &str = "198.19.1.99";
const VM_NS_SUFFIX: &str = "vmm";

/// hv3's VM pings the migrating VM; the replies land in a file.
struct Stream {
    child: Child,
    out: std::path::PathBuf,
}

impl Stream {
    fn start(t: &Topology) -> Stream {
        let out = t.dir.join("stream.txt");
        let f = fs::File::create(&out).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &t.vm("vm3a").ns,
                "ping",
                "-n",
                "-i",
                "0.02",
                VM_IP,
            ])
            .stdout(f)
            .stderr(Stdio::null())
            .spawn()
            .expect("ping stream");
        Stream { child, out }
    }

    fn replies(&self) -> usize {
        fs::read_to_string(&self.out)
            .unwrap_or_default()
            .matches("bytes from")
            .count()
    }

    /// True when at least `n` more replies arrive within `limit`.
    fn resumes(&self, n: usize, limit: Duration) -> bool {
        let base = self.replies();
        wait_until(limit, || self.replies() >= base + n)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ctl_ok(t: &Topology, hv: usize, args: &[&str]) -> String {
    let sock = t.socket(hv);
    let mut v = vec![BIN, "ctl", "--socket", sock.to_str().unwrap()];
    v.extend_from_slice(args);
    sh(&v)
}

/// The VM's two NICs: `m1` (hv1's TAP) and `m2` (hv2's TAP).
fn plumb_migrating_vm(t: &Topology, vm_ns: &str) {
    for hv in [1, 2] {
        let tap = format!("t-m{hv}");
        let ns = &t.hvs[hv - 1].ns;
        ns_exec(ns, &["ip", "link", "set", "dev", &tap, "netns", vm_ns]);
        let dev = format!("m{hv}");
        ns_exec(vm_ns, &["ip", "link", "set", "dev", &tap, "name", &dev]);
        // Silent on link-up: no IPv6 autoconfiguration, DAD or MLD, so
        // every frame the VM sends after a move is one the test chose.
        ns_exec(
            vm_ns,
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{dev}.disable_ipv6=1"),
            ],
        );
        ns_exec(
            vm_ns,
            &["ip", "link", "set", "dev", &dev, "address", VM_MAC],
        );
        ns_exec(
            vm_ns,
            &["ip", "addr", "add", &format!("{VM_IP}/24"), "dev", &dev],
        );
    }
    ns_exec(vm_ns, &["ip", "link", "set", "dev", "m1", "up"]);
}

/// What the VM (or the operator) does after the move.
#[derive(Clone, Copy, Debug)]
enum Stimulus {
    GratuitousArp,
    Rarp,
    CtlAnnounce,
    OrdinaryFrame,
}

fn migrate(t: &Topology, vm_ns: &str, to_hv: usize, how: Stimulus) {
    let from = format!("m{}", 3 - to_hv);
    let to = format!("m{to_hv}");
    ns_exec(vm_ns, &["ip", "link", "set", "dev", &from, "down"]);
    ns_exec(vm_ns, &["ip", "link", "set", "dev", &to, "up"]);
    match how {
        Stimulus::GratuitousArp => {
            ns_exec(vm_ns, &["arping", "-q", "-U", "-c", "1", "-I", &to, VM_IP]);
        }
        Stimulus::Rarp => {
            // What qemu sends after a migration: RARP request, sha = tha.
            let py = "import socket,sys\n\
s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n\
s.bind((sys.argv[1],0))\n\
m=bytes.fromhex(sys.argv[2].replace(':',''))\n\
f=b'\\xff'*6+m+b'\\x80\\x35'+bytes.fromhex('0001080006040003')+m+bytes(4)+m+bytes(4)\n\
s.send(f+bytes(60-len(f)))\n";
            ns_exec(vm_ns, &["python3", "-c", py, &to, VM_MAC]);
        }
        Stimulus::CtlAnnounce => {
            let port = format!("t-m{to_hv}");
            let out = ctl_ok(
                t,
                to_hv,
                &["announce", "--port", &port, "--mac", VM_MAC, "--ip", VM_IP],
            );
            assert!(out.contains("sent"), "{out}");
        }
        Stimulus::OrdinaryFrame => {
            let dst = t.vm("vm3a").ip4.clone();
            ns_try(vm_ns, &["ping", "-c", "1", "-W", "1", "-I", &to, &dst]);
        }
    }
}

#[test]
fn migration_resumes_without_waiting_for_ogms() {
    // OGMs every 10 s: a move that waited for one would stall the stream
    // for seconds; the announce paths must not.
    let mut t = Topology::new("mwM", &[&[], &[], &[Attach::TapNic]], 10_000);
    t.start_all();
    // The VM's ports arrive at runtime, as a libvirt hook would add them.
    for hv in [1, 2] {
        let out = ctl_ok(&t, hv, &["port", "add", &format!("t-m{hv}")]);
        assert!(out.contains("added"), "{out}");
    }
    let vm_ns = format!("{}-{VM_NS_SUFFIX}", t.prefix);
    sh(&["ip", "netns", "add", &vm_ns]);
    let _vm_guard = NsGuard(vm_ns.clone());
    plumb_migrating_vm(&t, &vm_ns);

    // Initial convergence needs a few OGM intervals (bidirectional links);
    // until then unicast would fall back to flooding, which proves nothing.
    assert!(
        t.wait_routes(Duration::from_secs(120)),
        "routes never converged\n{}",
        t.dump_logs()
    );
    assert!(
        t.ping_until("vm3a", VM_IP, Duration::from_secs(30)),
        "no initial path to the VM\n{}",
        t.dump_logs()
    );
    let stream = Stream::start(&t);
    assert!(
        stream.resumes(10, Duration::from_secs(10)),
        "stream never started"
    );

    let cases = [
        (2, Stimulus::GratuitousArp),
        (1, Stimulus::Rarp),
        (2, Stimulus::CtlAnnounce),
        (1, Stimulus::OrdinaryFrame),
    ];
    for (to_hv, how) in cases {
        let before = counters(&t);
        migrate(&t, &vm_ns, to_hv, how);
        assert!(
            stream.resumes(5, Duration::from_secs(5)),
            "{how:?}: the stream did not resume after moving to hv{to_hv}\n{}",
            t.dump_logs()
        );
        // Settled: the stream keeps flowing on the new side.
        assert!(
            stream.resumes(20, Duration::from_secs(5)),
            "{how:?}: stream not steady"
        );
        let after = counters(&t);
        for hv in 0..3 {
            assert_eq!(
                before[hv].0,
                after[hv].0,
                "{how:?}: hv{} fell back to flooding for lack of a route",
                hv + 1
            );
        }
    }

    // The old side's port goes away at runtime: its TAP leaves the VM.
    let out = ctl_ok(&t, 2, &["port", "del", "t-m2"]);
    assert!(out.contains("removed"), "{out}");
    assert!(
        !ns_try(&vm_ns, &["ip", "link", "show", "dev", "m2"]),
        "TAP outlived ctl port del"
    );
    let ports = t.ctl(2, "ports");
    assert!(ports.as_array().unwrap().is_empty(), "{ports}");
    // The VM, now on hv1, is still reachable.
    assert!(stream.resumes(10, Duration::from_secs(5)));
}

#[test]
fn ports_follow_the_config_on_reload() {
    let mut t = Topology::new("mwR", &[&[Attach::TapNic], &[Attach::TapNic]], 500);
    t.start_all();
    let path = t.config_path(1);
    let pid = t.hvs[0].daemon.as_ref().unwrap().id().to_string();
    let names = |t: &Topology| -> Vec<String> {
        t.ctl(1, "ports")
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };

    let orig = fs::read_to_string(&path).unwrap();
    fs::write(
        &path,
        format!("{orig}\n[[port]]\nname = \"t-extra\"\nmtu = 1300\n"),
    )
    .unwrap();
    sh(&["kill", "-HUP", &pid]);
    assert!(wait_until(Duration::from_secs(5), || names(&t)
        .contains(&"t-extra".to_string())));
    let mtu = ns_exec(&t.hvs[0].ns, &["cat", "/sys/class/net/t-extra/mtu"]);
    assert_eq!(mtu.trim(), "1300");

    // A broken file changes nothing.
    fs::write(&path, "[node]\nbroken = true\n").unwrap();
    sh(&["kill", "-HUP", &pid]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(names(&t).contains(&"t-extra".to_string()));

    fs::write(&path, &orig).unwrap();
    sh(&["kill", "-HUP", &pid]);
    assert!(wait_until(Duration::from_secs(5), || !names(&t)
        .contains(&"t-extra".to_string())));
    assert!(!ns_try(
        &t.hvs[0].ns,
        &["ip", "link", "show", "dev", "t-extra"]
    ));
    // The VM that was there all along still works.
    let ip = t.vm("vm2a").ip4.clone();
    assert!(t.ping_until("vm1a", &ip, Duration::from_secs(30)));
}

/// Deletes a namespace the test made outside the topology.
struct NsGuard(String);

impl Drop for NsGuard {
    fn drop(&mut self) {
        try_sh(&["ip", "netns", "del", &self.0]);
    }
}

/// (no_route, flooded, rerouted, roam_adv_sent) summed per hypervisor.
fn counters(t: &Topology) -> Vec<(u64, u64, u64, u64, u64)> {
    (1..=3)
        .map(|hv| {
            let s = t.ctl(hv, "stats");
            let g = |a: &str, b: &str| s[a][b].as_u64().unwrap_or(0);
            (
                g("node", "no_route"),
                g("switch", "flooded"),
                g("mesh", "unicast_rerouted"),
                g("mesh", "roam_sent"),
                g("mesh", "tx_ogm"),
            )
        })
        .collect()
}
