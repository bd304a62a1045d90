//! The DHCP and RA guard with the real servers: `dnsmasq` and `radvd` in
//! the hostile VM, busybox `udhcpc` and the kernel's own neighbour
//! discovery in the good ones. Switching the port's role on at runtime
//! (`ctl port set`) lets the same servers through: the guard is what
//! stops them.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::raw::Capture;
use crate::common::*;
use crate::policy::policy_topology;

/// A server running in a namespace, killed by its PID when dropped.
struct Server(Child);

impl Server {
    fn start(ns: &str, args: &[&str], log: &std::path::Path) -> Server {
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {args:?}: {e}"));
        Server(child)
    }

    fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // `ip netns exec` execs the server: the child is the server.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// busybox udhcpc: true when a lease was offered and acknowledged.
fn dhcp_lease(ns: &str) -> bool {
    ns_try(
        ns,
        &[
            "busybox",
            "udhcpc",
            "-i",
            "eth0",
            "-f",
            "-q",
            "-n",
            "-t",
            "3",
            "-T",
            "1",
            "-s",
            "/bin/true",
        ],
    )
}

fn ctl_set(t: &Topology, hv: usize, args: &[&str]) {
    let sock = t.socket(hv);
    let mut v = vec![
        BIN,
        "ctl",
        "--socket",
        sock.to_str().unwrap(),
        "port",
        "set",
    ];
    v.extend_from_slice(args);
    sh(&v);
}

fn is_ra(f: &[u8]) -> bool {
    f.len() > 54 && f[12..14] == [0x86, 0xdd] && f[20] == 58 && f[54] == 134
}

fn policy_counter(t: &Topology, hv: usize, port: &str, k: &str) -> u64 {
    t.ctl(hv, "ports")
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == port))
        .and_then(|p| p["policy"][k].as_u64())
        .unwrap_or_else(|| panic!("no {k} on {port}"))
}

#[test]
fn a_rogue_dhcp_server_and_radvd_in_a_vm_reach_nobody() {
    let mut t = policy_topology("pguard");
    t.start_all();
    assert!(t.wait_routes(Duration::from_secs(30)), "{}", t.dump_logs());
    let (bad, good, remote) = (
        t.vm("vm1a").clone(),
        t.vm("vm1b").clone(),
        t.vm("vm2a").clone(),
    );
    assert!(t.ping_until("vm2a", &bad.ip4, Duration::from_secs(20)));
    let dir = t.dir.clone();
    let leases = dir.join("leases");
    let range = "--dhcp-range=198.19.1.100,198.19.1.150,255.255.255.0,1h".to_string();
    let mut dnsmasq = Server::start(
        &bad.ns,
        &[
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=eth0",
            "--bind-interfaces",
            &range,
            "--dhcp-authoritative",
            &format!("--dhcp-leasefile={}", leases.display()),
            &format!("--pid-file={}", dir.join("dnsmasq.pid").display()),
        ],
        &dir.join("dnsmasq.log"),
    );
    ns_exec(
        &bad.ns,
        &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"],
    );
    let conf = dir.join("radvd.conf");
    std::fs::write(
        &conf,
        "interface eth0 {\n AdvSendAdvert on;\n MinRtrAdvInterval 3;\n MaxRtrAdvInterval 4;\n prefix fd00:bad::/64 { AdvOnLink on; AdvAutonomous on; };\n};\n",
    )
    .unwrap();
    let mut radvd = Server::start(
        &bad.ns,
        &[
            "radvd",
            "--nodaemon",
            "-C",
            conf.to_str().unwrap(),
            "-p",
            dir.join("radvd.pid").to_str().unwrap(),
            "-m",
            "stderr",
        ],
        &dir.join("radvd.log"),
    );
    let ras = [
        Capture::start(&good.ns, "eth0", is_ra),
        Capture::start(&remote.ns, "eth0", is_ra),
    ];
    // No lease from the rogue server, locally or across the mesh.
    assert!(
        !dhcp_lease(&remote.ns),
        "vm2a got a lease from the rogue server"
    );
    assert!(
        !dhcp_lease(&good.ns),
        "vm1b got a lease from the rogue server"
    );
    std::thread::sleep(Duration::from_secs(4));
    let got: Vec<usize> = ras
        .into_iter()
        .map(|c| c.finish(Duration::from_millis(500)).len())
        .collect();
    assert!(
        dnsmasq.alive(),
        "dnsmasq died: {}",
        std::fs::read_to_string(dir.join("dnsmasq.log")).unwrap_or_default()
    );
    assert!(
        radvd.alive(),
        "radvd died: {}",
        std::fs::read_to_string(dir.join("radvd.log")).unwrap_or_default()
    );
    assert_eq!(
        got,
        vec![0, 0],
        "router advertisements arrived (vm1b, vm2a)"
    );
    let dropped_dhcp = policy_counter(&t, 1, "t-vm1a", "drop_dhcp_server");
    let dropped_ra = policy_counter(&t, 1, "t-vm1a", "drop_router_advertisement");
    assert!(dropped_dhcp >= 2, "offers dropped: {dropped_dhcp}");
    assert!(dropped_ra >= 1, "RAs dropped: {dropped_ra}");
    let no_global = ns_exec(&remote.ns, &["ip", "-6", "addr", "show", "dev", "eth0"]);
    assert!(
        !no_global.contains("fd00:bad"),
        "vm2a took the rogue prefix: {no_global}"
    );
    // The good VMs still talk.
    assert!(t.ping("vm1b", &remote.ip4, 3, &[]));
    // The same servers, with the port's roles switched on at runtime.
    ctl_set(
        &t,
        1,
        &[
            "t-vm1a",
            "--dhcp-server",
            "true",
            "--router-advertisements",
            "true",
        ],
    );
    let ra = Capture::start(&remote.ns, "eth0", is_ra);
    assert!(dhcp_lease(&remote.ns), "no lease even with dhcp_server on");
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !ra.finish(Duration::from_millis(500)).is_empty(),
        "no RA with router_advertisements on"
    );
}
