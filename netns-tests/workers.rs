//! Issue 5, multi-core: nodes with several dataplane workers (and one with
//! a single worker) in one mesh. Peers are dealt out over the workers and
//! their flows' frames follow them through the TAP queues, each flow stays
//! in order, the per-worker counters add up to the ports' counters, and
//! ports added at runtime get a queue per worker.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// hv1 (2 workers): a TAP-NIC VM and a bridge-uplink VM; hv2 (1 worker)
/// and hv3 (3 workers): a TAP-NIC VM each.
const LAYOUT: &[&[Attach]] = &[
    &[Attach::TapNic, Attach::Bridge],
    &[Attach::TapNic],
    &[Attach::TapNic],
];

fn iperf3(t: &Topology, from: &str, to: &str, args: &[&str]) -> Value {
    let server_ns = t.vm(to).ns.clone();
    let mut server = Command::new("ip")
        .args(["netns", "exec", &server_ns, "iperf3", "-s", "-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 server");
    std::thread::sleep(Duration::from_millis(500));
    let ip = t.vm(to).ip4.clone();
    let mut cmd = vec!["iperf3", "-c", ip.as_str(), "-J"];
    cmd.extend_from_slice(args);
    let out = ns_exec(&t.vm(from).ns, &cmd);
    let _ = server.kill();
    let _ = server.wait();
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("iperf3 json: {e}: {out}"))
}

fn workers(t: &Topology, hv: usize) -> Vec<Value> {
    t.ctl(hv, "stats")["workers"]
        .as_array()
        .cloned()
        .expect("stats.workers")
}

fn sum(ws: &[Value], key: &str) -> u64 {
    ws.iter().map(|w| w[key].as_u64().unwrap_or(0)).sum()
}

fn field(ws: &[Value], w: usize, key: &str) -> u64 {
    ws.get(w).and_then(|v| v[key].as_u64()).unwrap_or(0)
}

/// TCP for 3 s from `from` to `to`; returns what each of hv1's workers did
/// meanwhile: (datagrams read, port frames read) per worker.
fn hv1_work_during(t: &Topology, from: &str, to: &str) -> Vec<(u64, u64)> {
    let before = workers(t, 1);
    let v = iperf3(t, from, to, &["-t", "3"]);
    let bytes = v["end"]["sum_received"]["bytes"].as_f64().unwrap_or(0.0);
    assert!(bytes > 1e6, "{from} -> {to} moved only {bytes} bytes");
    // Workers other than 0 publish every 100 ms.
    std::thread::sleep(Duration::from_millis(300));
    let after = workers(t, 1);
    (0..after.len())
        .map(|w| {
            (
                field(&after, w, "tunnel_datagrams") - field(&before, w, "tunnel_datagrams"),
                field(&after, w, "port_frames") - field(&before, w, "port_frames"),
            )
        })
        .collect()
}

#[test]
fn peers_and_their_flows_spread_over_workers_in_order() {
    let opts = Opts {
        workers: vec![2, 1, 3],
        ..Opts::default()
    };
    let mut t = Topology::with_opts("mwW", LAYOUT, 500, opts);
    t.start_all();
    for (a, b) in [("vm1a", "vm2a"), ("vm2a", "vm3a"), ("vm3a", "vm1b")] {
        let ip = t.vm(b).ip4.clone();
        assert!(
            t.ping_until(a, &ip, Duration::from_secs(45)),
            "{a} never reached {b}\n{}",
            t.dump_logs()
        );
    }
    assert_eq!(workers(&t, 1).len(), 2);
    assert_eq!(workers(&t, 2).len(), 1);
    assert_eq!(workers(&t, 3).len(), 3);

    // hv1 lists hv2 as peer 0 and hv3 as peer 1, so with two workers hv2's
    // datagrams reach worker 0 and hv3's worker 1 (steer.rs). The frames
    // VMs send back on those flows follow: the TAP queues the kernel picks
    // for a flow's frames are those its return traffic was written to.
    let w = hv1_work_during(&t, "vm2a", "vm1a");
    assert!(
        w[0].0 > 1000 && w[0].1 > 100,
        "hv2's flow not on worker 0: {w:?}"
    );
    assert!(w[1].0 < w[0].0 / 10, "hv2's datagrams spilled: {w:?}");
    let w = hv1_work_during(&t, "vm3a", "vm1b");
    assert!(
        w[1].0 > 1000 && w[1].1 > 100,
        "hv3's flow not on worker 1: {w:?}"
    );
    assert!(w[0].0 < w[1].0 / 10, "hv3's datagrams spilled: {w:?}");

    // Four UDP flows through multi-worker nodes: none reordered (a flow is
    // read by one worker and leaves in that worker's batch order). -R: the
    // VM on hv1 receives, so its iperf3 reports the order it saw.
    let v = iperf3(
        &t,
        "vm1b",
        "vm3a",
        &["-u", "-b", "40M", "-l", "1000", "-t", "3", "-P", "4", "-R"],
    );
    let udp = &v["end"]["sum"];
    let packets = udp["packets"].as_u64().unwrap_or(0);
    assert!(packets > 1000, "UDP: {udp}");
    let streams = v["end"]["streams"].as_array().cloned().unwrap_or_default();
    assert_eq!(streams.len(), 4, "{v}");
    for st in &streams {
        let ooo = st["udp"]["out_of_order"].as_u64();
        assert_eq!(ooo, Some(0), "UDP stream reordered: {}", st["udp"]);
    }

    // The ports' counters are the sum over every worker's queue.
    std::thread::sleep(Duration::from_millis(300));
    let ws = workers(&t, 1);
    let ports = t.ctl(1, "ports");
    let port_rx: u64 = ports
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["rx_frames"].as_u64().unwrap_or(0))
        .sum();
    let worker_rx = sum(&ws, "port_frames");
    assert!(
        port_rx.abs_diff(worker_rx) <= 20,
        "ports rx {port_rx} vs workers {worker_rx}: {ports}"
    );

    // A port added at runtime gets one queue per worker (the kernel lists
    // one rx queue per attached fd); removing it closes all of them.
    let sock = t.socket(3);
    let sock = sock.to_str().unwrap();
    let ns = t.hvs[2].ns.clone();
    let out = sh(&[BIN, "ctl", "--socket", sock, "port", "add", "t-mq"]);
    assert!(out.contains("added"), "{out}");
    let queues = ns_exec(&ns, &["ls", "/sys/class/net/t-mq/queues"]);
    let rx_queues = queues
        .split_whitespace()
        .filter(|q| q.starts_with("rx-"))
        .count();
    assert_eq!(rx_queues, 3, "queues of t-mq: {queues}");
    let out = sh(&[BIN, "ctl", "--socket", sock, "port", "del", "t-mq"]);
    assert!(out.contains("removed"), "{out}");
    assert!(
        !ns_try(&ns, &["ip", "link", "show", "dev", "t-mq"]),
        "TAP outlived ctl port del"
    );
}
