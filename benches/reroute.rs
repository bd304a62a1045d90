//! Rerouting time on the netns triangle: the hv1-hv2 underlay path is cut
//! while vm1a pings vm2a every 10 ms; measured are the outage (packets lost
//! times the interval), the time until hv1 routes via hv3, and after
//! healing the time until the direct path is back, for the default and a
//! short originator interval.
//!
//! `scripts/bench-reroute` runs it (root; real daemons).

#[path = "../netns-tests/common/mod.rs"]
mod common;

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const PING_INTERVAL_MS: u64 = 10;

/// Time until `f` holds, polled every 20 ms, or None after `limit`.
fn time_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn secs(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.2}", d.as_secs_f64()))
        .unwrap_or_else(|| "never".into())
}

fn main() {
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut md = String::from(
        "| originator interval | run | outage ms (lost x 10 ms) | cut -> route via hv3 s | heal -> direct route s |\n|---|---|---|---|---|\n",
    );
    for ogm_ms in [1000u64, 200] {
        let layout: &[&[Attach]] = &[&[Attach::TapNic], &[Attach::TapNic], &[Attach::TapNic]];
        let mut t = Topology::new("mwBR", layout, ogm_ms);
        t.start_all();
        assert!(t.wait_routes(Duration::from_secs(120)), "no routes");
        let direct = t.hardif_of(2, 1);
        let via3 = t.hardif_of(3, 1);
        for run in 1..=reps {
            // Healthy and direct before each run.
            assert!(
                wait_until(Duration::from_secs(180), || t.next_hop(1, 2)
                    == Some(direct.clone())),
                "not direct before run {run}"
            );
            let out = t.dir.join(format!("reroute-{ogm_ms}-{run}.txt"));
            let f = fs::File::create(&out).unwrap();
            let mut ping = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &t.vm("vm1a").ns,
                    "ping",
                    "-n",
                    "-i",
                    "0.01",
                    &t.vm("vm2a").ip4,
                ])
                .stdout(f)
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_secs(1));
            t.cut_path(1, 2, true);
            let rerouted = time_until(Duration::from_secs(120), || {
                t.next_hop(1, 2) == Some(via3.clone())
            });
            std::thread::sleep(Duration::from_secs(2));
            t.cut_path(1, 2, false);
            let back = time_until(Duration::from_secs(300), || {
                t.next_hop(1, 2) == Some(direct.clone())
            });
            std::thread::sleep(Duration::from_secs(1));
            let _ = ping.kill();
            let _ = ping.wait();
            let text = fs::read_to_string(&out).unwrap_or_default();
            let mut seqs: Vec<u64> = text
                .lines()
                .filter_map(|l| l.split("icmp_seq=").nth(1))
                .filter_map(|r| r.split(' ').next())
                .filter_map(|n| n.parse().ok())
                .collect();
            seqs.sort_unstable();
            let lost: u64 = seqs.windows(2).map(|w| w[1] - w[0] - 1).sum();
            let row = format!(
                "| {ogm_ms} ms | {run} | {} | {} | {} |\n",
                lost * PING_INTERVAL_MS,
                secs(rerouted),
                secs(back)
            );
            eprint!("{row}");
            md += &row;
        }
    }
    println!("\n{md}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-out");
    let _ = fs::create_dir_all(&dir);
    let _ = fs::write(dir.join("reroute.md"), &md);
}
