//! Real qemu guests, guest to guest across two meshwire nodes, for each way
//! a VM meets meshwire (issue 12), in one run: the guest's TAP in a Linux
//! bridge whose uplink is meshwire's TAP port ("bridge uplink"), meshwire
//! attached to the TAP qemu holds ("AF_PACKET attach"), and meshwire as
//! the guest's virtio-net device ("vhost-user"). The guests are the
//! reference VM's kernel and initramfs booted as plain hosts (eth0, MTU
//! 1500) under TCG: absolute figures are bound by the emulated guests, so
//! compare the rows of one run, not with the netns figures.
//!
//! Per attachment: iperf3 TCP guest -> guest (5 s), iperf3 UDP with
//! 64-byte datagrams (5 s, unlimited rate: packets/s the receiving guest
//! got), and the two daemons' CPU seconds (user + system, /proc) per GB
//! during the TCP run.
//!
//! `scripts/bench --vm` runs it (root, ../shared/refvm). Output: a Markdown
//! table on stdout and in bench-out/realvm.md.

#[path = "../netns-tests/common/mod.rs"]
mod common;
#[allow(dead_code)] // the interop tests use the rest
#[path = "../netns-tests/interop/refvm.rs"]
mod refvm;
// The vhost-user guest of the interop tests (its tests compile away here).
#[allow(dead_code, unused_imports)]
#[path = "../netns-tests/interop/guest.rs"]
mod guest;
#[allow(dead_code, unused_imports)]
#[path = "../netns-tests/interop/vhost.rs"]
mod vhost;

use std::fmt::Write as _;
use std::fs;
use std::time::Duration;

use common::*;
use refvm::RefVm;
use vhost::VhostGuest;

const IP_A: &str = "198.19.1.201";
const IP_B: &str = "198.19.1.202";
/// The second vhost-user guest's MAC (VhostGuest boots with one fixed MAC).
const MAC_B: &str = "52:54:00:76:68:02";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Bridge,
    Attach,
    Vhost,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Bridge => "bridge uplink (guest TAP in a Linux bridge)",
            Mode::Attach => "AF_PACKET attach (meshwire on qemu's TAP)",
            Mode::Vhost => "vhost-user (meshwire is the guest's virtio-net device)",
        }
    }
}

/// utime + stime of a process, in seconds.
fn cpu_s(pid: u32) -> f64 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (n(11) + n(12)) / 100.0
}

fn daemons_cpu(t: &Topology) -> f64 {
    t.hvs
        .iter()
        .filter_map(|h| h.daemon.as_ref())
        .map(|c| cpu_s(c.id()))
        .sum()
}

/// The number before `unit` on iperf3's receiver line.
fn receiver(out: &str) -> Option<Vec<String>> {
    let l = out.lines().rev().find(|l| l.contains("receiver"))?;
    Some(l.split_whitespace().map(String::from).collect())
}

fn mbits(w: &[String]) -> f64 {
    let Some(i) = w.iter().position(|x| x.ends_with("bits/sec")) else {
        return 0.0;
    };
    let v: f64 = w[i - 1].parse().unwrap_or(0.0);
    match w[i].as_str() {
        "Gbits/sec" => v * 1000.0,
        "Mbits/sec" => v,
        "Kbits/sec" => v / 1000.0,
        _ => 0.0,
    }
}

/// Datagrams the receiver got, from "lost/total".
fn udp_received(w: &[String]) -> f64 {
    w.iter()
        .find_map(|x| {
            let (lost, total) = x.split_once('/')?;
            let (lost, total): (f64, f64) = (lost.parse().ok()?, total.parse().ok()?);
            Some(total - lost)
        })
        .unwrap_or(0.0)
}

/// A guest of either kind, driven through its console.
enum Guest {
    Ref(RefVm),
    Vhost(VhostGuest),
}

impl Guest {
    fn try_cmd(&self, c: &str) -> (bool, String) {
        match self {
            Guest::Ref(g) => g.try_cmd(c),
            Guest::Vhost(g) => g.try_cmd(c),
        }
    }

    fn cmd(&self, c: &str) -> String {
        match self {
            Guest::Ref(g) => g.cmd(c),
            Guest::Vhost(g) => g.cmd(c),
        }
    }
}

fn vhost_sock(t: &Topology, hv: usize) -> std::path::PathBuf {
    t.dir.join(format!("vhost/hv{hv}.sock"))
}

fn boot(name: &'static str, t: &Topology, hv: usize, ip: &str, mode: Mode) -> Guest {
    if mode == Mode::Vhost {
        let ns = &t.hvs[hv - 1].ns;
        let g = VhostGuest::start(ns, &vhost_sock(t, hv), &t.dir, name);
        // Both boot with the same MAC and address: the second takes its own.
        if hv == 2 {
            g.cmd(&format!("ip link set eth0 address {MAC_B}"));
        }
        g.cmd(&format!(
            "ip addr flush dev eth0 && ip addr add {ip}/24 dev eth0"
        ));
        return Guest::Vhost(g);
    }
    let mut args = vec![
        "--ns".to_string(),
        t.hvs[hv - 1].ns.clone(),
        "--ip".into(),
        format!("{ip}/24"),
    ];
    if mode == Mode::Bridge {
        args.extend(["--bridge".into(), "vmbr".into()]);
    }
    Guest::Ref(RefVm::start(name, &args))
}

fn run(mode: Mode) -> String {
    let (a_name, b_name) = match mode {
        Mode::Bridge => ("mwRb1", "mwRb2"),
        Mode::Attach => ("mwRa1", "mwRa2"),
        Mode::Vhost => ("rv1", "rv2"),
    };
    let layout: &[&[Attach]] = match mode {
        Mode::Bridge => &[&[Attach::Bridge], &[Attach::Bridge]],
        Mode::Attach | Mode::Vhost => &[&[Attach::External], &[Attach::External]],
    };
    let mut t = Topology::new("mwR", layout, 1000);
    if mode == Mode::Attach {
        for (hv, name) in [(1, a_name), (2, b_name)] {
            t.hvs[hv - 1].extra_config =
                format!("\n[[port]]\nname = \"guest\"\nattach = \"rv-t-{name}\"\n");
        }
    }
    if mode == Mode::Vhost {
        for hv in [1, 2] {
            t.hvs[hv - 1].extra_config = format!(
                "\n[[port]]\nname = \"guest\"\nvhost_user = \"{}\"\n",
                vhost_sock(&t, hv).display()
            );
        }
    }
    t.start_all();
    assert!(t.wait_routes(Duration::from_secs(60)), "{}", t.dump_logs());
    let a = boot(a_name, &t, 1, IP_A, mode);
    let b = boot(b_name, &t, 2, IP_B, mode);
    assert!(
        wait_until(Duration::from_secs(60), || a
            .try_cmd(&format!("ping -c 1 -W 2 {IP_B}"))
            .0),
        "{}: the guests never met\n{}",
        mode.name(),
        t.dump_logs()
    );
    b.cmd("iperf3 -s -D");
    std::thread::sleep(Duration::from_millis(500));
    let cpu0 = daemons_cpu(&t);
    let tcp = a.cmd(&format!("iperf3 -c {IP_B} -t 5"));
    let cpu = daemons_cpu(&t) - cpu0;
    let tcp_w = receiver(&tcp).unwrap_or_default();
    let tcp_mbit = mbits(&tcp_w);
    let gb = tcp_mbit * 5.0 / 8.0 / 1000.0;
    let udp = a.cmd(&format!("iperf3 -c {IP_B} -u -l 64 -b 0 -t 5"));
    let pps = udp_received(&receiver(&udp).unwrap_or_default()) / 5.0;
    let oversize: u64 = (1..=2)
        .map(|hv| {
            t.ctl(hv, "ports")
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|p| p["counters"]["rx_drop_oversize"].as_u64())
                        .sum::<u64>()
                })
                .unwrap_or(0)
        })
        .sum();
    let row = format!(
        "| {} | {tcp_mbit:.0} | {pps:.0} | {} | {oversize} |\n",
        mode.name(),
        if gb > 0.0 {
            format!("{:.1}", cpu / gb)
        } else {
            "-".into()
        }
    );
    drop(a);
    drop(b);
    row
}

fn main() {
    let mut md = String::from(
        "| attachment | TCP guest -> guest Mbit/s | UDP 64 B rx pps | meshwire CPU s/GB (both daemons) | oversize drops |\n|---|---|---|---|---|\n",
    );
    for mode in [Mode::Bridge, Mode::Attach, Mode::Vhost] {
        let row = run(mode);
        eprint!("{row}");
        let _ = write!(md, "{row}");
    }
    println!("\n{md}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-out");
    let _ = fs::create_dir_all(&dir);
    let _ = fs::write(dir.join("realvm.md"), &md);
}
