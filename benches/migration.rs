//! Live-migration outage, measured on the real topology of the netns tests:
//! a VM moves between hv1 and hv2 (two TAPs, one up at a time) while a VM on
//! hv3 pings it every 10 ms. Per case, N moves back and forth; the outage of
//! a move is the packets lost around it times the ping interval.
//!
//! `scripts/bench-migration [MOVES]` runs it (root; real daemons).

#[path = "../netns-tests/common/mod.rs"]
mod common;

use std::fs;
use std::time::Duration;

use common::migration::*;
use common::*;

const PING_INTERVAL_MS: u64 = 10;

fn main() {
    let moves: usize = std::env::var("MOVES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let ogm_ms: u64 = std::env::var("OGM_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    eprintln!("migration bench: {moves} moves per case, OGM interval {ogm_ms} ms, ping every {PING_INTERVAL_MS} ms");
    let mut t = Topology::new("mwBM", &[&[], &[], &[Attach::TapNic]], ogm_ms);
    t.start_all();
    for hv in [1, 2] {
        ctl_ok(&t, hv, &["port", "add", &format!("t-m{hv}")]);
    }
    let vm_ns = format!("{}-{VM_NS_SUFFIX}", t.prefix);
    sh(&["ip", "netns", "add", &vm_ns]);
    let _guard = NsGuard(vm_ns.clone());
    plumb_migrating_vm(&t, &vm_ns);
    assert!(
        t.wait_routes(Duration::from_secs(120)),
        "routes never converged"
    );
    assert!(t.ping_until("vm3a", VM_IP, Duration::from_secs(30)));

    let mut rows = Vec::new();
    let mut side = 1;
    for how in [
        Stimulus::GratuitousArp,
        Stimulus::Rarp,
        Stimulus::CtlAnnounce,
        Stimulus::OrdinaryFrame,
    ] {
        let interval = format!("{}", PING_INTERVAL_MS as f64 / 1000.0);
        let stream = Stream::start(&t, &interval);
        assert!(
            stream.resumes(50, Duration::from_secs(10)),
            "stream never started"
        );
        let mut before = Vec::with_capacity(moves);
        for i in 0..moves {
            before.push(last_seq(&stream));
            side = 3 - side;
            migrate(&t, &vm_ns, side, how);
            eprint!("\r{how:?}: move {}/{moves}", i + 1);
            // Let the stream settle on the new side before the next move.
            assert!(
                stream.resumes(20, Duration::from_secs(10)),
                "{how:?}: no recovery"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        eprintln!();
        let seqs = received_seqs(&stream);
        let mut outages: Vec<u64> = before
            .iter()
            .map(|&s0| {
                let next = seqs.iter().copied().find(|&s| s > s0).unwrap_or(s0 + 1);
                (next - s0 - 1) * PING_INTERVAL_MS
            })
            .collect();
        outages.sort_unstable();
        rows.push((how, outages));
        drop(stream);
    }

    let mut md = String::from(
        "| case | moves | median outage ms | p99 outage ms | max ms |\n|---|---|---|---|---|\n",
    );
    for (how, o) in &rows {
        let p = |q: f64| o[((q * o.len() as f64).ceil() as usize).clamp(1, o.len()) - 1];
        md += &format!(
            "| {} | {} | {} | {} | {} |\n",
            describe(*how),
            o.len(),
            p(0.5),
            p(0.99),
            o.last().unwrap()
        );
    }
    println!("\n{md}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-out");
    let _ = fs::create_dir_all(&out);
    let _ = fs::write(out.join("migration.md"), &md);
}

fn describe(how: Stimulus) -> &'static str {
    match how {
        Stimulus::GratuitousArp => "(a) gratuitous ARP from the VM",
        Stimulus::Rarp => "(b) RARP, as qemu sends",
        Stimulus::CtlAnnounce => "(c) `meshwire ctl announce` on the new node",
        Stimulus::OrdinaryFrame => "(d) the VM's next ordinary frame",
    }
}

fn received_seqs(s: &Stream) -> Vec<u64> {
    let text = fs::read_to_string(&s.out).unwrap_or_default();
    let mut v: Vec<u64> = text
        .lines()
        .filter_map(|l| l.split("icmp_seq=").nth(1))
        .filter_map(|r| r.split(' ').next())
        .filter_map(|n| n.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

fn last_seq(s: &Stream) -> u64 {
    received_seqs(s).last().copied().unwrap_or(0)
}
