//! The scale harness with real daemons (issue 15): N meshwire processes in
//! network namespaces, a full mesh, one worker each, with scoped relaying
//! and with `relay = "kernel"`. Per daemon and second, from `ctl stats`:
//! OGM and broadcast datagrams and bytes sent; from /proc: CPU time and
//! RSS; from `ctl originators`: table size; and the time until every
//! daemon routes to every other, and what one VM broadcast costs.
//!
//! `scripts/bench-scale` runs it (root). SCALE_DAEMONS (default "12,30").

#[path = "../netns-tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::fs;
use std::time::{Duration, Instant};

use common::*;

fn pid(t: &Topology, hv: usize) -> u32 {
    t.hvs[hv - 1].daemon.as_ref().map_or(0, |c| c.id())
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn mesh(t: &Topology, hv: usize, key: &str) -> u64 {
    t.ctl(hv, "stats")["mesh"][key].as_u64().unwrap_or(0)
}

fn sum(t: &Topology, n: usize, key: &str) -> u64 {
    (1..=n).map(|hv| mesh(t, hv, key)).sum()
}

fn run(n: usize, relay: &str) -> String {
    let vm: &[Attach] = &[Attach::TapNic];
    let layout: Vec<&[Attach]> = (0..n).map(|i| if i == 0 { vm } else { &[] }).collect();
    let opts = Opts {
        workers: vec![1; n],
        mesh_extra: format!("relay = \"{relay}\"\n"),
        ..Opts::default()
    };
    let mut t = Topology::with_opts("mwSD", &layout, 1000, opts);
    let t0 = Instant::now();
    t.start_all();
    let started = t0.elapsed().as_secs_f64();
    ns_exec(
        &t.vm("vm1a").ns,
        &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
    );
    let converged = t
        .wait_routes(Duration::from_secs(300))
        .then(|| t0.elapsed().as_secs_f64() - started);
    std::thread::sleep(Duration::from_secs(5));
    // Steady state over 10 s.
    let window = 10.0;
    let ticks0: Vec<u64> = (1..=n).map(|hv| cpu_ticks(pid(&t, hv))).collect();
    let (p0, b0) = (sum(&t, n, "tx_ogm_packets"), sum(&t, n, "tx_ogm_bytes"));
    std::thread::sleep(Duration::from_secs_f64(window));
    let ticks1: Vec<u64> = (1..=n).map(|hv| cpu_ticks(pid(&t, hv))).collect();
    let (p1, b1) = (sum(&t, n, "tx_ogm_packets"), sum(&t, n, "tx_ogm_bytes"));
    let hz = 100.0; // USER_HZ
    let cpu_ms: f64 = ticks1
        .iter()
        .zip(&ticks0)
        .map(|(a, b)| (a - b) as f64 / hz * 1000.0)
        .sum::<f64>()
        / n as f64
        / window;
    let rss: f64 = (1..=n).map(|hv| rss_kib(pid(&t, hv)) as f64).sum::<f64>() / n as f64;
    let origs = t.ctl(1, "originators").as_array().map_or(0, |a| a.len());
    let bc0 = sum(&t, n, "tx_bcast_packets");
    let _ = ns_try(
        &t.vm("vm1a").ns,
        &["ping", "-n", "-b", "-c", "1", "-W", "1", "198.19.1.255"],
    );
    std::thread::sleep(Duration::from_secs(1));
    let bcast = sum(&t, n, "tx_bcast_packets") - bc0;
    let per = |v: u64| v as f64 / n as f64 / window;
    format!(
        "| {n} | {relay} | {:.0} | {:.0} | {:.1} | {:.0} | {origs} | {bcast} | {} |\n",
        per(p1 - p0),
        per(b1 - b0),
        cpu_ms,
        rss,
        converged.map_or("never".into(), |c| format!("{c:.1}"))
    )
}

fn main() {
    let ns: Vec<usize> = std::env::var("SCALE_DAEMONS")
        .unwrap_or_else(|_| "12,30".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let mut md = String::from(
        "| daemons | relay | OGM pkts/s/daemon | OGM bytes/s/daemon | CPU ms/s/daemon | RSS KiB/daemon | originators (hv1) | 1 bcast datagrams | all routes s |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for &n in &ns {
        for relay in ["kernel", "scoped"] {
            let row = run(n, relay);
            eprint!("{row}");
            let _ = write!(md, "{row}");
        }
    }
    println!("\n{md}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-out");
    let _ = fs::create_dir_all(&dir);
    let _ = fs::write(dir.join("scale-daemons.md"), &md);
}
