//! The scale harness, in process: N `Mesh` instances on a simulated clock
//! (`meshwire::mesh::sim`), for N up to 500, in full and partial meshes,
//! each run twice: with the kernel's relay rules (what a kernel batman-adv
//! mesh of the same shape sends) and with meshwire's scoped relaying. It
//! reports per node and second of simulated time the control packets and
//! bytes sent, the CPU time the node's mesh code took (thread CPU clock),
//! table sizes, the datagrams one VM broadcast costs, and convergence in
//! simulated time: a link dies (the daemon's 5 s dead-peer rule included),
//! a VM moves, a node joins.
//!
//! `scripts/bench-scale` runs it. Environment: SCALE_N (default
//! "3,10,50,100,250,500"; 3 is the baseline), SCALE_TOPO (default "full,sites,ring,random"),
//! SCALE_MODES (default "kernel,scoped"; also "echo"), SCALE_KERNEL_MAX
//! (largest N run with kernel rules, default 250: beyond, the N² relaying
//! makes the simulation itself take many minutes).

use std::fmt::Write as _;
use std::time::Duration;

use meshwire::mesh::sim::{orig_mac, SimNet, TxStats};
use meshwire::mesh::{MeshConfig, RelayMode};
use meshwire::wire::MacAddr;

const STEP: Duration = Duration::from_millis(10);
/// Per-datagram overhead on the underlay for a batman packet: Ethernet in
/// GRE (14 + 4), inner IPv4 (20), WireGuard data (16 + 16 tag), UDP (8),
/// outer IPv4 (20); padding to 16 not counted.
const WIRE_OVERHEAD: u64 = 98;
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[derive(Clone, Copy, PartialEq)]
enum Topo {
    Full,
    /// Two full-mesh sites of N/2 joined by 3 links.
    Sites,
    Ring,
    /// A full mesh with 2 % of the links dead from the start.
    Random,
}

impl Topo {
    fn name(self) -> &'static str {
        match self {
            Topo::Full => "full",
            Topo::Sites => "sites",
            Topo::Ring => "ring",
            Topo::Random => "random",
        }
    }
}

#[derive(Default, Clone)]
struct Row {
    topo: &'static str,
    n: usize,
    mode: &'static str,
    pkts: f64,
    bytes: f64,
    wire_mbit: f64,
    cpu_us: f64,
    origs: f64,
    tt: f64,
    bcast: u64,
    converge: Option<f64>,
    reroute: Option<f64>,
    moved: Option<f64>,
    joined: Option<f64>,
}

fn cfg(i: usize, mode: RelayMode) -> MeshConfig {
    MeshConfig {
        relay: mode,
        ..MeshConfig::new(orig_mac(i))
    }
}

fn vm_mac(i: usize) -> MacAddr {
    let [_, _, hi, lo] = (i as u32 + 1).to_be_bytes();
    MacAddr([2, 0xee, 0, 0, hi, lo])
}

fn build(topo: Topo, n: usize, mode: RelayMode) -> SimNet {
    let mut s = SimNet::new(n, |i| cfg(i, mode));
    s.peer_timeout = Some(PEER_TIMEOUT);
    s.cpu_clock = Some(thread_cpu_ns);
    s.keep_delivered = false;
    match topo {
        Topo::Full => s.full_mesh(n),
        Topo::Random => {
            let mut rng = 0x2545_f491_4f6c_dd1du64;
            for x in 0..n {
                for y in (x + 1)..n {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    s.link(x, y);
                    if rng % 50 == 0 && y != x + 1 {
                        s.set_link(x, y, false);
                    }
                }
            }
        }
        Topo::Sites => {
            let h = n / 2;
            for x in 0..n {
                for y in (x + 1)..n {
                    if (x < h) == (y < h) {
                        s.link(x, y);
                    }
                }
            }
            for k in 0..3.min(h) {
                s.link(k, h + k);
            }
        }
        Topo::Ring => {
            for x in 0..n {
                s.link(x, (x + 1) % n);
            }
        }
    }
    for i in 0..n {
        s.nodes[i].tt_local_add(vm_mac(i), 0);
    }
    s
}

/// Every node routes to every other and knows its VM where it lives.
fn converged(s: &SimNet, nodes: &[usize]) -> bool {
    nodes.iter().all(|&x| {
        nodes.iter().all(|&y| {
            x == y
                || (s.next_hop(x, y).is_some()
                    && s.nodes[x].tt_global_lookup(vm_mac(y), 0) == Some(orig_mac(y)))
        })
    })
}

/// Runs until `f` holds, checking every 100 ms of simulated time.
fn until(s: &mut SimNet, limit: Duration, mut f: impl FnMut(&SimNet) -> bool) -> Option<f64> {
    let t0 = s.now;
    loop {
        let t = s.now.saturating_duration_since(t0);
        if f(s) {
            return Some(t.as_secs_f64());
        }
        if t >= limit {
            return None;
        }
        s.run(Duration::from_millis(100), STEP);
    }
}

fn frame(src: MacAddr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x06]);
    f.extend_from_slice(&[0u8; 28]);
    f
}

fn measure(topo: Topo, n: usize, mode: RelayMode, mode_name: &'static str) -> Row {
    let mut s = build(topo, n, mode);
    let all: Vec<usize> = (0..n).collect();
    let mut row = Row {
        topo: topo.name(),
        n,
        mode: mode_name,
        ..Row::default()
    };
    row.converge = until(&mut s, Duration::from_secs(60), |s| converged(s, &all));
    // settle (scope views agree a couple of intervals after routes exist)
    s.run(Duration::from_secs(4), STEP);
    let before = s.total();
    let window = Duration::from_secs(5);
    s.run(window, STEP);
    let after = s.total();
    let d =
        |f: fn(&TxStats) -> u64| (f(&after) - f(&before)) as f64 / n as f64 / window.as_secs_f64();
    row.pkts = d(|t| t.packets());
    row.bytes = d(|t| t.bytes());
    row.wire_mbit = (row.bytes + row.pkts * WIRE_OVERHEAD as f64) * 8.0 / 1e6;
    row.cpu_us = d(|t| t.cpu_ns) / 1000.0;
    row.origs = s.nodes.iter().map(|m| m.originators().len()).sum::<usize>() as f64 / n as f64;
    row.tt = s
        .nodes
        .iter()
        .map(|m| m.tt_global_entries().len())
        .sum::<usize>() as f64
        / n as f64;
    row.bcast = s.broadcast(n - 1, &frame(vm_mac(n - 1)));
    // A link dies: both ends route around it (the daemon resets a link
    // silent for 5 s; then relays carry the two-hop route).
    let (a, b) = match topo {
        Topo::Sites => (1, 2),
        _ => (0, 1),
    };
    if s.has_link(a, b) && topo != Topo::Ring {
        s.set_link(a, b, false);
        row.reroute = until(&mut s, Duration::from_secs(60), |s| {
            s.next_hop(a, b).is_some_and(|h| h != b) && s.next_hop(b, a).is_some_and(|h| h != a)
        });
        s.set_link(a, b, true);
    }
    // A VM moves from node 2 to node 3 (1 to 2 in a mesh of 3, the
    // baseline): time until every node sends to its new node.
    let (from, to) = if n >= 4 { (2, 3) } else { (n - 2, n - 1) };
    let vm = vm_mac(from);
    s.nodes[from].tt_local_del(vm, 0);
    let mut out = Vec::new();
    s.nodes[to].tt_local_add_announce(vm, 0, &mut out);
    s.run_outputs(to, out);
    row.moved = until(&mut s, Duration::from_secs(30), |s| {
        (0..s.nodes.len())
            .all(|x| x == to || s.nodes[x].tt_global_lookup(vm, 0) == Some(orig_mac(to)))
    });
    // A node joins with links to the nodes it would have in this shape.
    if topo == Topo::Full {
        let j = s.add_node(cfg(n, mode));
        for x in 0..n {
            s.link(x, j);
        }
        s.nodes[j].tt_local_add(vm_mac(j), 0);
        row.joined = until(&mut s, Duration::from_secs(60), |s| {
            (0..n).all(|x| {
                s.next_hop(x, j).is_some()
                    && s.next_hop(j, x).is_some()
                    && s.nodes[x].tt_global_lookup(vm_mac(j), 0) == Some(orig_mac(j))
            })
        });
    }
    row
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

fn table(rows: &[Row]) -> String {
    let mut md = String::from(
        "| shape | N | relay | pkts/s/node | bytes/s/node | wire Mbit/s/node | CPU µs/s/node | originators | TT entries | 1 bcast datagrams | converge s | reroute s | VM move s | join s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.0} | {:.0} | {:.3} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
            r.topo,
            r.n,
            r.mode,
            r.pkts,
            r.bytes,
            r.wire_mbit,
            r.cpu_us,
            r.origs,
            r.tt,
            r.bcast,
            opt(r.converge),
            opt(r.reroute),
            opt(r.moved),
            opt(r.joined)
        );
    }
    md
}

/// Packets per node per second against N (full mesh), log scale, one
/// line per relay mode.
fn chart(rows: &[Row]) -> String {
    let full: Vec<&Row> = rows.iter().filter(|r| r.topo == "full").collect();
    let max = full.iter().map(|r| r.pkts).fold(1.0f64, f64::max);
    let width = 60.0;
    let mut out = String::from(
        "packets sent per node per second, full mesh (log scale; k = kernel rules, s = scoped, e = echo-only)\n",
    );
    for r in &full {
        let bar = ((r.pkts.max(1.0).ln() / max.ln()) * width).round() as usize;
        let c = r.mode.chars().next().unwrap_or('?');
        let _ = writeln!(
            out,
            "N={:<4} {} |{:<60}| {:.0}",
            r.n,
            c,
            c.to_string().repeat(bar),
            r.pkts
        );
    }
    out
}

fn main() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.into());
    let ns: Vec<usize> = env("SCALE_N", "3,10,50,100,250,500")
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    let topos: Vec<Topo> = env("SCALE_TOPO", "full,sites,ring,random")
        .split(',')
        .filter_map(|t| match t.trim() {
            "full" => Some(Topo::Full),
            "sites" => Some(Topo::Sites),
            "ring" => Some(Topo::Ring),
            "random" => Some(Topo::Random),
            _ => None,
        })
        .collect();
    let modes: Vec<(RelayMode, &'static str)> = env("SCALE_MODES", "kernel,scoped")
        .split(',')
        .filter_map(|m| match m.trim() {
            "kernel" => Some((RelayMode::Kernel, "kernel")),
            "scoped" => Some((RelayMode::Scoped, "scoped")),
            "echo" => Some((RelayMode::EchoOnly, "echo-only")),
            _ => None,
        })
        .collect();
    let kernel_max: usize = env("SCALE_KERNEL_MAX", "250").parse().unwrap_or(250);
    let mut rows = Vec::new();
    for &topo in &topos {
        for &n in &ns {
            // partial shapes are run from 10 to 250: their cost is their
            // full-mesh parts', and 3 nodes (the baseline) have no shape
            if topo != Topo::Full && !(10..=250).contains(&n) {
                continue;
            }
            for &(mode, name) in &modes {
                if mode != RelayMode::Scoped && n > kernel_max {
                    continue;
                }
                let t0 = std::time::Instant::now();
                let r = measure(topo, n, mode, name);
                eprintln!(
                    "{} N={} {}: {:.0} pkts/s/node ({:.0} s to simulate)",
                    r.topo,
                    r.n,
                    r.mode,
                    r.pkts,
                    t0.elapsed().as_secs_f64()
                );
                rows.push(r);
            }
        }
    }
    let md = table(&rows);
    let ch = chart(&rows);
    println!("\n{md}\n{ch}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-out");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("scale.md"), format!("{md}\n```\n{ch}```\n"));
}
