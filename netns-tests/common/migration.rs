//! A VM that live-migrates between hv1 and hv2: one namespace with two TAPs
//! (same MAC and address), one from each hypervisor's meshwire, only one up
//! at a time, and a steady ping stream to it from a VM on hv3. Shared by the
//! migration test and the migration bench.

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::*;

pub const VM_MAC: &str = "02:00:00:01:99:01";
pub const VM_IP: &str = "198.19.1.99";
pub const VM_NS_SUFFIX: &str = "vmm";

/// hv3's VM pings the migrating VM; the replies land in a file.
pub struct Stream {
    child: Child,
    pub out: std::path::PathBuf,
}

impl Stream {
    /// Pings every `interval_s` seconds.
    pub fn start(t: &Topology, interval_s: &str) -> Stream {
        Stream::start_to(t, "vm3a", VM_IP, interval_s)
    }

    /// VM `from` pings `to_ip` every `interval_s` seconds.
    pub fn start_to(t: &Topology, from: &str, to_ip: &str, interval_s: &str) -> Stream {
        let out = t.dir.join(format!("stream-{from}-{to_ip}.txt"));
        let f = fs::File::create(&out).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &t.vm(from).ns,
                "ping",
                "-n",
                "-i",
                interval_s,
                to_ip,
            ])
            .stdout(f)
            .stderr(Stdio::null())
            .spawn()
            .expect("ping stream");
        Stream { child, out }
    }

    pub fn replies(&self) -> usize {
        fs::read_to_string(&self.out)
            .unwrap_or_default()
            .matches("bytes from")
            .count()
    }

    /// Requests sent so far, as far as the replies tell (the highest
    /// icmp_seq answered).
    pub fn sent(&self) -> usize {
        fs::read_to_string(&self.out)
            .unwrap_or_default()
            .split("icmp_seq=")
            .skip(1)
            .filter_map(|s| s.split(' ').next()?.parse().ok())
            .max()
            .unwrap_or(0)
    }

    /// True when at least `n` more replies arrive within `limit`.
    pub fn resumes(&self, n: usize, limit: Duration) -> bool {
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

pub fn ctl_ok(t: &Topology, hv: usize, args: &[&str]) -> String {
    let sock = t.socket(hv);
    let mut v = vec![BIN, "ctl", "--socket", sock.to_str().unwrap()];
    v.extend_from_slice(args);
    sh(&v)
}

/// The VM's two NICs: `m1` (hv1's TAP) and `m2` (hv2's TAP).
pub fn plumb_migrating_vm(t: &Topology, vm_ns: &str) {
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
pub enum Stimulus {
    GratuitousArp,
    Rarp,
    CtlAnnounce,
    OrdinaryFrame,
}

pub fn migrate(t: &Topology, vm_ns: &str, to_hv: usize, how: Stimulus) {
    let from = format!("m{}", 3 - to_hv);
    let to = format!("m{to_hv}");
    // qemu sends its RARP the moment the VM resumes: start the sender
    // first, so an interpreter's start-up is not counted as outage.
    let rarp = matches!(how, Stimulus::Rarp).then(|| RarpSender::start(vm_ns, &to));
    ns_exec(vm_ns, &["ip", "link", "set", "dev", &from, "down"]);
    ns_exec(vm_ns, &["ip", "link", "set", "dev", &to, "up"]);
    match how {
        Stimulus::GratuitousArp => {
            ns_exec(vm_ns, &["arping", "-q", "-U", "-c", "1", "-I", &to, VM_IP]);
        }
        Stimulus::Rarp => rarp.expect("started above").fire(),
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

/// A RARP request as qemu sends after a migration (sha = tha = the VM's
/// MAC), from a raw socket that is ready before the move.
struct RarpSender(Child);

impl RarpSender {
    fn start(vm_ns: &str, dev: &str) -> RarpSender {
        let py = "import socket,sys\n\
s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n\
s.bind((sys.argv[1],0))\n\
m=bytes.fromhex(sys.argv[2].replace(':',''))\n\
f=b'\\xff'*6+m+b'\\x80\\x35'+bytes.fromhex('0001080006040003')+m+bytes(4)+m+bytes(4)\n\
sys.stdout.write('ready\\n'); sys.stdout.flush()\n\
sys.stdin.readline()\n\
s.send(f+bytes(60-len(f)))\n";
        let mut c = Command::new("ip")
            .args(["netns", "exec", vm_ns, "python3", "-c", py, dev, VM_MAC])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 for the RARP");
        let mut line = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(c.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        RarpSender(c)
    }

    fn fire(mut self) {
        use std::io::Write;
        self.0.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        let st = self.0.wait().unwrap();
        assert!(st.success(), "RARP sender failed");
    }
}

/// Deletes a namespace the test made outside the topology.
pub struct NsGuard(pub String);

impl Drop for NsGuard {
    fn drop(&mut self) {
        try_sh(&["ip", "netns", "del", &self.0]);
    }
}

/// (no_route, flooded, rerouted, roam_adv_sent) summed per hypervisor.
pub fn counters(t: &Topology) -> Vec<(u64, u64, u64, u64, u64)> {
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
