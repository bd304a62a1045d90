//! `meshwire ctl tt`, `translate`, `graph`, `log-level`, `ping` and `traceroute` (issue 14) against a running
//! mesh of three nodes, checked against the topology: each VM is a local
//! client where it lives and a global one at its node's originator
//! elsewhere; translate names the port or the originator; the graph has an
//! edge to each neighbour, and after a cut the far node hangs behind the
//! neighbour that relays it.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

fn ctl_args(t: &Topology, hv: usize, args: &[&str]) -> String {
    let sock = t.socket(hv);
    let mut a = vec![BIN, "ctl", "--socket", sock.to_str().unwrap()];
    a.extend_from_slice(args);
    sh(&a)
}

fn translate(t: &Topology, hv: usize, mac: &str) -> Value {
    let out = ctl_args(t, hv, &["translate", mac, "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("translate {mac}: {e}: {out}"))
}

fn has(list: &Value, f: impl Fn(&Value) -> bool) -> bool {
    list.as_array().is_some_and(|l| l.iter().any(f))
}

#[test]
fn tt_translate_and_graph_match_the_topology() {
    let mut t = Topology::new(
        "mwCm",
        &[&[Attach::TapNic], &[Attach::TapNic], &[Attach::TapNic]],
        250,
    );
    t.start_all();
    assert!(t.wait_routes(Duration::from_secs(30)), "{}", t.dump_logs());
    let vms: Vec<Vm> = ["vm1a", "vm2a", "vm3a"]
        .iter()
        .map(|n| t.vm(n).clone())
        .collect();
    // Every VM speaks, so every node announces its VM.
    for a in &vms {
        for b in &vms {
            if a.name != b.name {
                assert!(t.ping_until(&a.name, &b.ip4, Duration::from_secs(30)));
            }
        }
    }

    // tt: local here, global at the right originator elsewhere.
    let settled = wait_until(Duration::from_secs(30), || {
        (1..=3).all(|hv| {
            let tt = t.ctl(hv, "tt");
            vms.iter().all(|vm| {
                if vm.hv == hv {
                    has(&tt["local"], |e| e["mac"] == vm.mac.as_str())
                } else {
                    let o = t.originator_of(vm.hv);
                    has(&tt["global"], |e| {
                        e["mac"] == vm.mac.as_str() && e["originator"] == o.as_str()
                    })
                }
            })
        })
    });
    assert!(
        settled,
        "tt does not match the topology: {}",
        t.ctl(1, "tt")
    );
    assert_eq!(t.ctl(1, "tt")["originator"], t.originator_of(1).as_str());
    let human = ctl_args(&t, 1, &["tt"]);
    assert!(
        human.contains("global:") && human.contains(&vms[1].mac),
        "{human}"
    );

    // translate: our port, another node's originator, nobody.
    let here = translate(&t, 1, &vms[0].mac);
    assert_eq!(here["served_by"], "port t-vm1a", "{here}");
    let there = translate(&t, 1, &vms[1].mac);
    assert_eq!(there["originator"], t.originator_of(2).as_str(), "{there}");
    assert_eq!(there["next_hop"], t.hardif_of(2, 1).as_str(), "{there}");
    let nobody = translate(&t, 1, "02:00:00:77:77:77");
    assert_eq!(nobody["served_by"], Value::Null, "{nobody}");
    assert!(ctl_args(&t, 1, &["translate", &vms[2].mac]).contains("-> originator"));
    // A bad VLAN is refused before it reaches the daemon.
    let sock = t.socket(1);
    assert!(!try_sh(&[
        BIN,
        "ctl",
        "--socket",
        sock.to_str().unwrap(),
        "translate",
        &vms[1].mac,
        "--vlan",
        "5000"
    ]));

    // graph: this node, an edge to each neighbour.
    let me = t.originator_of(1);
    let dot = t.ctl(1, "graph")["dot"].as_str().unwrap_or("").to_string();
    assert!(dot.starts_with("digraph meshwire {"), "{dot}");
    for hv in [2, 3] {
        let edge = format!("\"{me}\" -> \"{}\"", t.hardif_of(hv, 1));
        assert!(dot.contains(&edge), "no edge to hv{hv}: {dot}");
    }

    // After a cut of 1-2, hv2 hangs behind hv3 in hv1's graph.
    t.cut_path(1, 2, true);
    let via3 = t.hardif_of(3, 1);
    let relayed = format!("\"{via3}\" -> \"{}\"", t.originator_of(2));
    assert!(
        wait_until(Duration::from_secs(60), || t.ctl(1, "graph")["dot"]
            .as_str()
            .is_some_and(|d| d.contains(&relayed))),
        "hv2 never showed behind hv3: {}",
        t.ctl(1, "graph")["dot"]
    );
    let human = ctl_args(&t, 1, &["graph"]);
    assert!(human.contains(&relayed), "{human}");
}

/// `ctl log-level`: shows the filter, changes it while the daemon runs
/// (debug lines appear, then stop again), and refuses a bad one.
#[test]
fn log_level_changes_the_running_filter() {
    let mut t = Topology::new("mwCl", &[&[Attach::TapNic]], 1000);
    t.start_all();
    let level = |args: &[&str]| -> Value {
        let mut a = vec!["log-level"];
        a.extend_from_slice(args);
        a.push("--json");
        let out = ctl_args(&t, 1, &a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    assert_eq!(level(&[])["filter"], "info");
    // Every control request logs how long it held the node, at debug.
    let held = |t: &Topology| t.log(1).matches("control: node held").count();
    t.ctl(1, "stats");
    assert_eq!(held(&t), 0, "debug lines at info");
    assert_eq!(
        level(&["info,meshwire=debug"])["filter"],
        "info,meshwire=debug"
    );
    t.ctl(1, "stats");
    assert!(
        wait_until(Duration::from_secs(10), || held(&t) > 0),
        "no debug line after the change:\n{}",
        t.log(1)
    );
    assert!(t.log(1).contains("log filter changed"));
    assert_eq!(level(&["warn"])["filter"], "warn");
    let before = held(&t);
    t.ctl(1, "stats");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(held(&t), before, "debug lines after going back to warn");
    // A bad filter is refused by ctl itself, and the daemon keeps its own.
    let sock = t.socket(1);
    assert!(!try_sh(&[
        BIN,
        "ctl",
        "--socket",
        sock.to_str().unwrap(),
        "log-level",
        "meshwire=loud"
    ]));
    assert_eq!(level(&[])["filter"], "warn");
}

/// `ctl ping` and `ctl traceroute` over batman ICMP on a line of three
/// nodes (1 - 2 - 3): node 3 answers through node 2, the traceroute names
/// node 2 then node 3, a VM's MAC is pinged at its node, and an unknown
/// MAC is refused.
#[test]
fn ping_and_traceroute_over_batman_icmp() {
    let opts = Opts {
        links: Some(vec![(1, 2), (2, 3)]),
        ..Opts::default()
    };
    let mut t = Topology::with_opts(
        "mwCp",
        &[&[Attach::TapNic], &[Attach::TapNic], &[Attach::TapNic]],
        250,
        opts,
    );
    t.start_all();
    assert!(t.wait_routes(Duration::from_secs(60)), "{}", t.dump_logs());
    let (o2, o3) = (t.originator_of(2), t.originator_of(3));
    let json = |args: &[&str]| -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = ctl_args(&t, 1, &a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    };

    let p = json(&["ping", &o3, "-c", "3", "-i", "100"]);
    assert_eq!(p["transmitted"], 3, "{p}");
    assert_eq!(p["received"], 3, "{p}");
    let human = ctl_args(&t, 1, &["ping", &o2, "-c", "1"]);
    assert!(
        human.contains(&format!("20 bytes from {o2}")) && human.contains(" 0% packet loss"),
        "{human}"
    );

    let tr = json(&["traceroute", &o3]);
    let hops = tr["hops"].as_array().expect("hops");
    assert_eq!(hops.len(), 2, "{tr}");
    assert_eq!(hops[0]["from"], o2.as_str(), "{tr}");
    assert_eq!(hops[1]["from"], o3.as_str(), "{tr}");

    // A VM's MAC: pinged at the node that serves it (once its node
    // announced it: it has spoken).
    let vm3 = t.vm("vm3a").clone();
    let ip1 = t.vm("vm1a").ip4.clone();
    assert!(t.ping_until("vm3a", &ip1, Duration::from_secs(30)));
    assert!(wait_until(Duration::from_secs(20), || {
        json(&["ping", &vm3.mac, "-c", "1"])["received"] == 1
    }));
    let sock = t.socket(1);
    assert!(!try_sh(&[
        BIN,
        "ctl",
        "--socket",
        sock.to_str().unwrap(),
        "ping",
        "02:00:00:77:77:77",
        "-c",
        "1"
    ]));
    let c = t.ctl(1, "stats")["mesh"].clone();
    assert!(c["icmp_probes_sent"].as_u64().unwrap_or(0) >= 7, "{c}");
    assert!(c["icmp_answers_received"].as_u64().unwrap_or(0) >= 6, "{c}");
}

/// `ctl event` follows a running node: a MAC moving between two of its
/// ports, a peer whose path is cut going down, and the route to it moving
/// to the node that relays it, each one JSON line.
#[test]
fn event_follows_moves_peers_and_routes() {
    let mut t = Topology::new(
        "mwCe",
        &[
            &[Attach::TapNic, Attach::TapNic],
            &[Attach::TapNic],
            &[Attach::TapNic],
        ],
        250,
    );
    t.start_all();
    assert!(t.wait_routes(Duration::from_secs(30)), "{}", t.dump_logs());
    let (a, b) = (t.vm("vm1a").clone(), t.vm("vm1b").clone());
    assert!(t.ping_until("vm1a", &b.ip4, Duration::from_secs(30)));

    let sock = t.socket(1);
    let mut child = std::process::Command::new(BIN)
        .args(["ctl", "--socket", sock.to_str().unwrap(), "event", "--json"])
        .args(["--seconds", "120"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ctl event");
    let stdout = child.stdout.take().unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str::<Value>(&l) {
                sink.lock().unwrap().push(v);
            }
        }
    });
    std::thread::sleep(Duration::from_secs(1));

    // vm1a's MAC speaks from vm1b's port: a move between two ports.
    let raw = crate::common::raw::RawSock::open(&b.ns, "eth0");
    let mac: meshwire::wire::MacAddr = a.mac.parse().unwrap();
    let mut f = vec![0xff; 6];
    f.extend_from_slice(mac.as_bytes());
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(&[0u8; 46]);
    assert!(raw.send(&f));
    // The path to hv2 is cut: its peer goes down, its route moves to hv3.
    t.cut_path(1, 2, true);
    let o2 = t.originator_of(2);
    let via3 = t.hardif_of(3, 1);
    let seen = |f: &dyn Fn(&Value) -> bool| lines.lock().unwrap().iter().any(f);
    let all = wait_until(Duration::from_secs(60), || {
        seen(&|e| {
            e["kind"] == "move"
                && e["mac"] == a.mac.as_str()
                && e["from"] == "port t-vm1a"
                && e["to"] == "port t-vm1b"
        }) && seen(&|e| e["kind"] == "peer_down")
            && seen(&|e| {
                e["kind"] == "route" && e["originator"] == o2.as_str() && e["to"] == via3.as_str()
            })
    });
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    let got = lines.lock().unwrap().clone();
    assert!(all, "events: {got:?}\n{}", t.log(1));
    // Numbered in order, without gaps.
    let seqs: Vec<u64> = got.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}
