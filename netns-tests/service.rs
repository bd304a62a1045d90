//! Running as a service (issue 14): the Prometheus endpoint scraped and
//! parsed by `promtool` against a live mesh, systemd's notify protocol
//! read from a real datagram socket, and the daemon run as an ordinary
//! user holding CAP_NET_ADMIN only.

use std::collections::HashMap;
use std::fs;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const METRICS: &str = "\n[metrics]\nlisten = \"127.0.0.1:9588\"\n";

/// `GET /metrics` inside hypervisor `hv`'s namespace.
fn scrape(t: &Topology, hv: usize) -> String {
    ns_exec(
        &t.hvs[hv - 1].ns,
        &[
            "curl",
            "-sSf",
            "--max-time",
            "20",
            "http://127.0.0.1:9588/metrics",
        ],
    )
}

/// Checks the text with Prometheus' own parser and linter.
fn promtool_check(text: &str, dir: &std::path::Path) {
    let f = dir.join("scrape.prom");
    fs::write(&f, text).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", f.display()))
        .output()
        .expect("promtool (Debian package prometheus) must be installed");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sample lines as `name{labels}` -> value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn get(s: &HashMap<String, f64>, key: &str) -> f64 {
    *s.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {:?}", s.keys().collect::<Vec<_>>()))
}

fn port_bytes(t: &Topology, hv: usize, port: &str, key: &str) -> u64 {
    t.ctl(hv, "ports")
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == port)
        .unwrap_or_else(|| panic!("no port {port}"))[key]
        .as_u64()
        .unwrap()
}

#[test]
fn service_metrics_scraped_and_checked() {
    let mut t = Topology::new("met", &[&[Attach::TapNic], &[Attach::TapNic]], 1000);
    for h in &mut t.hvs {
        h.extra_config = METRICS.into();
    }
    t.start_all();
    let ip2 = t.vm("vm2a").ip4.clone();
    assert!(
        t.ping_until("vm1a", &ip2, Duration::from_secs(60)),
        "no traffic\n{}",
        t.dump_logs()
    );
    assert!(wait_until(Duration::from_secs(60), || {
        t.ctl(1, "peers")
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["link_up"] == true)
    }));

    // The scrape shows a copy taken each second: wait for one taken after
    // the link came up.
    let mut text = String::new();
    let fresh = wait_until(Duration::from_secs(30), || {
        text = scrape(&t, 1);
        samples(&text).get("meshwire_peers_up") == Some(&1.0)
    });
    assert!(fresh, "peers_up never 1:\n{text}");
    promtool_check(&text, &t.dir);
    let s = samples(&text);
    let peers = t.ctl(1, "peers");
    let peers = peers.as_array().unwrap();
    let up = peers.iter().filter(|p| p["link_up"] == true).count();
    assert_eq!(get(&s, "meshwire_peers"), peers.len() as f64);
    assert_eq!(get(&s, "meshwire_peers_up"), up as f64);
    assert_eq!(up, 1);
    let key = peers[0]["public_key"].as_str().unwrap();
    let plabels = format!("{{peer=\"{key}\",address=\"{}\"}}", t.inner(2));
    assert_eq!(get(&s, &format!("meshwire_peer_link_up{plabels}")), 1.0);
    assert_eq!(
        get(&s, "meshwire_ports"),
        t.ctl(1, "ports").as_array().unwrap().len() as f64
    );
    assert_eq!(
        get(&s, "meshwire_originators"),
        t.ctl(1, "originators").as_array().unwrap().len() as f64
    );
    assert!(get(&s, "meshwire_ogm_sent_total") > 0.0);
    assert!(get(&s, "meshwire_ogm_received_total") > 0.0);
    assert!(
        get(&s, "meshwire_fdb_entries") >= 1.0,
        "vm1a's MAC at least"
    );

    // Traffic makes the counters grow, and a scrape shows what `ctl`
    // showed before it (once the next copy is taken), never more than
    // `ctl` shows after it.
    let port = "t-vm1a";
    let plabel = format!("{{port=\"{port}\"}}");
    let rx_key = format!("meshwire_port_rx_bytes_total{plabel}");
    let peer_tx_key = format!("meshwire_peer_tx_bytes_total{plabels}");
    let rx0 = get(&s, &rx_key);
    let ptx0 = get(&s, &peer_tx_key);
    assert!(t.ping("vm1a", &ip2, 20, &["-s", "1000"]), "pings lost");
    let before = port_bytes(&t, 1, port, "rx_bytes");
    assert!(before as f64 >= rx0 + 20.0 * 1000.0);
    let mut last = String::new();
    let caught_up = wait_until(Duration::from_secs(30), || {
        last = scrape(&t, 1);
        get(&samples(&last), &rx_key) >= before as f64
    });
    assert!(
        caught_up,
        "the scrape never reached ctl's count {before}:\n{last}"
    );
    let after = port_bytes(&t, 1, port, "rx_bytes");
    let s = samples(&last);
    assert!(get(&s, &rx_key) <= after as f64);
    assert!(get(&s, &peer_tx_key) >= ptx0 + 20.0 * 1000.0);
    assert!(get(&s, "meshwire_snapshot_age_seconds") < 60.0);
    // Worker 0 holds the node for every timer round at least.
    assert!(get(&s, "meshwire_worker_node_held_seconds_total{worker=\"0\"}") > 0.0);
    assert!(get(&s, "meshwire_worker_node_locks_total{worker=\"0\"}") > 0.0);
    promtool_check(&last, &t.dir);

    // Every metric the Grafana dashboard queries is in a live scrape,
    // `meshwire_stat` series by their section and name too.
    let dash: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/grafana/meshwire.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dash, &mut exprs);
    assert!(!exprs.is_empty());
    for e in &exprs {
        for word in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("meshwire_") {
                assert!(
                    last.contains(&format!("\n{word}")),
                    "{word} (in {e}) not in a live scrape"
                );
            }
        }
        if let Some(i) = e.find("section=\"") {
            let sec = e[i + 9..].split('"').next().unwrap();
            let name = e[i..]
                .split("name=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let series = format!("meshwire_stat{{section=\"{sec}\",name=\"{name}\"}}");
            assert!(
                last.contains(&series),
                "{series} (in {e}) not in a live scrape"
            );
        }
    }

    // The endpoint refuses what it does not serve, and goes on serving.
    let ns = t.hvs[0].ns.clone();
    let code = ns_exec(
        &ns,
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
            "-X",
            "POST",
            "http://127.0.0.1:9588/metrics",
        ],
    );
    assert_eq!(code.trim(), "405");
    assert!(scrape(&t, 1).contains("meshwire_peers_up 1\n"));
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match v {
                    serde_json::Value::String(e) if k == "expr" => out.push(e.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// Reads datagrams until one holds `what` (each message is one datagram).
fn wait_message(sock: &UnixDatagram, what: &str, seen: &mut Vec<String>) -> String {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < Duration::from_secs(120) {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let m = String::from_utf8_lossy(&buf[..n]).to_string();
                seen.push(m.clone());
                if m.lines().any(|l| l == what) {
                    return m;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("notify socket: {e}"),
        }
    }
    panic!("no {what} within 120 s; got {seen:?}");
}

#[test]
fn service_notify_ready_watchdog_reload_stopping() {
    let mut t = Topology::new("ntf", &[&[Attach::TapNic], &[Attach::TapNic]], 1000);
    t.hvs[0].extra_config = METRICS.into();
    t.write_config(1);
    let path = t.hvs[0].dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let log = fs::File::create(t.hvs[0].dir.join("daemon.log")).unwrap();
    let ns = t.hvs[0].ns.clone();
    let child = Command::new("ip")
        .args(["netns", "exec", &ns, BIN, "run", "--config"])
        .arg(t.config_path(1))
        .env("RUST_LOG", "info")
        .env("NOTIFY_SOCKET", &path)
        // Pings every 0.5 s.
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    t.hvs[0].daemon = Some(child);
    let mut seen = Vec::new();
    let ready = wait_message(&sock, "READY=1", &mut seen);
    assert_eq!(seen.len(), 1, "READY=1 is the first message: {seen:?}");
    assert!(ready.contains("STATUS="), "{ready}");
    // Everything is up by the time READY=1 is sent: the port's TAP, the
    // UDP socket, the control socket, the metrics endpoint.
    assert!(
        ns_try(&ns, &["ip", "link", "show", "t-vm1a"]),
        "no TAP at READY"
    );
    let udp = ns_exec(&ns, &["ss", "-Hlun", "sport", "=", ":51820"]);
    assert!(!udp.trim().is_empty(), "no UDP socket at READY");
    let sockp = t.socket(1);
    assert!(try_sh(&[
        BIN,
        "ctl",
        "--socket",
        sockp.to_str().unwrap(),
        "ports"
    ]));
    let m = ns_exec(
        &ns,
        &[
            "curl",
            "-sSf",
            "--max-time",
            "20",
            "http://127.0.0.1:9588/metrics",
        ],
    );
    assert!(m.contains("meshwire_ports 1\n"), "{m}");

    wait_message(&sock, "WATCHDOG=1", &mut seen);
    wait_message(&sock, "WATCHDOG=1", &mut seen);

    sh(&["kill", "-HUP", &pid]);
    let r = wait_message(&sock, "RELOADING=1", &mut seen);
    assert!(r.contains("MONOTONIC_USEC="), "{r}");
    wait_message(&sock, "READY=1", &mut seen);

    let st = t.stop(1, false).expect("daemon ran");
    assert!(st.success(), "{st:?}\n{}", t.log(1));
    wait_message(&sock, "STOPPING=1", &mut seen);
}

#[test]
fn service_runs_as_nobody_with_net_admin_only() {
    let mut t = Topology::new(
        "usr",
        &[&[Attach::TapNic], &[Attach::TapNic, Attach::Bridge]],
        1000,
    );
    run_as_nobody(&mut t, "net_admin");
    t.start_all();
    for h in &t.hvs {
        let pid = h.daemon.as_ref().unwrap().id();
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        assert!(
            status.contains("\nUid:\t65534\t65534\t65534\t65534\n"),
            "{status}"
        );
        assert!(status.contains("\nCapEff:\t0000000000001000\n"), "{status}");
        assert!(status.contains("\nCapBnd:\t0000000000001000\n"), "{status}");
    }
    for (a, b) in [("vm1a", "vm2a"), ("vm1a", "vm2b"), ("vm2b", "vm1a")] {
        let ip4 = t.vm(b).ip4.clone();
        let ip6 = t.vm(b).ip6.clone();
        assert!(
            t.ping_until(a, &ip4, Duration::from_secs(60)),
            "{a} -> {b}\n{}",
            t.dump_logs()
        );
        assert!(t.ping(a, &ip4, 5, &[]), "{a} -> {b}");
        assert!(
            t.ping_until(a, &ip6, Duration::from_secs(60)),
            "{a} -> {b} v6"
        );
        // A full-size IPv4 packet (batman fragments on the link).
        assert!(
            t.ping(a, &ip4, 3, &["-M", "do", "-s", "1472"]),
            "{a} -> {b} 1500 B"
        );
    }
    // TCP through the offloads (vnet headers, TSO super-frames both ways).
    let server_ns = t.vm("vm2a").ns.clone();
    let mut server = Command::new("ip")
        .args(["netns", "exec", &server_ns, "iperf3", "-s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 server");
    let ip2 = t.vm("vm2a").ip4.clone();
    let vm1 = t.vm("vm1a").ns.clone();
    let mut out = String::new();
    let moved = wait_until(Duration::from_secs(60), || {
        let o = Command::new("ip")
            .args(["netns", "exec", &vm1, "iperf3", "-c", &ip2, "-t", "2", "-J"])
            .output()
            .unwrap();
        out = String::from_utf8_lossy(&o.stdout).to_string();
        // iperf3 -J can exit 0 with {"error": "unable to connect"}: the
        // server was not listening yet. That is a retry, not a result.
        o.status.success() && !out.contains("\"error\"")
    });
    let _ = server.kill();
    let _ = server.wait();
    assert!(moved, "iperf3: {out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("iperf3 json");
    let bytes = v["end"]["sum_received"]["bytes"].as_f64().unwrap_or(0.0);
    assert!(bytes > 1e6, "iperf3 moved only {bytes} bytes: {out}");

    // Ports at runtime need nothing more.
    let sockp = t.socket(1);
    sh(&[
        BIN,
        "ctl",
        "--socket",
        sockp.to_str().unwrap(),
        "port",
        "add",
        "extra1",
    ]);
    assert!(ns_try(&t.hvs[0].ns, &["ip", "link", "show", "extra1"]));
    // Attaching to a VM's TAP is an AF_PACKET socket: CAP_NET_RAW, which
    // this daemon lacks. It is refused, saying so.
    let ns1 = t.hvs[0].ns.clone();
    ns_exec(
        &ns1,
        &["ip", "tuntap", "add", "dev", "vnetx", "mode", "tap"],
    );
    ns_exec(&ns1, &["ip", "link", "set", "vnetx", "up"]);
    let out = Command::new(BIN)
        .args([
            "ctl",
            "--socket",
            sockp.to_str().unwrap(),
            "port",
            "add",
            "att1",
            "--attach",
            "vnetx",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "attach without CAP_NET_RAW succeeded"
    );
    assert!(err.contains("CAP_NET_RAW"), "{err}");
    for i in 1..=2 {
        let st = t.stop(i, false).expect("ran");
        assert!(st.success(), "hv{i}: {st:?}\n{}", t.log(i));
    }
}

/// Makes `t`'s daemons run as `nobody` holding only `caps` (setpriv's
/// names, comma-separated).
fn run_as_nobody(t: &mut Topology, caps: &str) {
    // A tun node as udev makes it on a stock host (0666), bound over
    // /dev/net/tun inside the daemon's own mount namespace (`ip netns
    // exec` gives it one), so this machine's device stays as it is.
    let tun = t.dir.join("tun");
    sh(&[
        "mknod",
        "-m",
        "0666",
        tun.to_str().unwrap(),
        "c",
        "10",
        "200",
    ]);
    for h in &t.hvs {
        // The control socket is made in this directory (as in
        // /run/meshwire, systemd's RuntimeDirectory= owned by the user).
        sh(&["chown", "65534:65534", h.dir.to_str().unwrap()]);
    }
    let plus: Vec<String> = caps.split(',').map(|c| format!("+{c}")).collect();
    let plus = plus.join(",");
    t.opts.wrap = vec![
        "sh".into(),
        "-c".into(),
        format!(
            "mount --bind {} /dev/net/tun && exec \"$0\" \"$@\"",
            tun.display()
        ),
        "setpriv".into(),
        "--reuid=65534".into(),
        "--regid=65534".into(),
        "--clear-groups".into(),
        format!("--inh-caps=-all,{plus}"),
        format!("--ambient-caps=-all,{plus}"),
        format!("--bounding-set=-all,{plus}"),
        "--no-new-privs".into(),
    ];
}

#[test]
fn service_attach_as_nobody_with_net_raw() {
    // vm1a behind a TAP "qemu" holds, attached to by hv1's daemon, which
    // runs as nobody with CAP_NET_ADMIN and CAP_NET_RAW.
    let mut t = Topology::new("raw", &[&[Attach::External], &[Attach::TapNic]], 1000);
    t.hvs[0].extra_config = "\n[[port]]\nname = \"vm1\"\nattach = \"vnet7\"\n".into();
    run_as_nobody(&mut t, "net_admin,net_raw");
    t.start_all();
    let pid = t.hvs[0].daemon.as_ref().unwrap().id();
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    // CAP_NET_ADMIN (12) and CAP_NET_RAW (13).
    assert!(status.contains("\nCapEff:\t0000000000003000\n"), "{status}");
    let vm = t.vm("vm1a").clone();
    let mut qemu = crate::attach::start_qemu(&t, 1, &vm, "vnet7");
    let far = t.vm("vm2a").ip4.clone();
    let ok = t.ping_until("vm1a", &far, Duration::from_secs(60));
    let ok6 = ok && t.ping("vm1a", &t.vm("vm2a").ip6.clone(), 3, &[]);
    let _ = qemu.kill();
    let _ = qemu.wait();
    assert!(ok, "the attached VM never reached vm2a\n{}", t.dump_logs());
    assert!(ok6, "IPv6 from the attached VM");
    let ports = t.ctl(1, "ports");
    let p = ports
        .as_array()
        .and_then(|l| l.iter().find(|p| p["name"] == "vm1"))
        .unwrap_or_else(|| panic!("{ports}"))
        .clone();
    assert_eq!(p["device"], "vnet7", "{p}");
    assert!(p["rx_frames"].as_u64().unwrap_or(0) > 0, "{p}");
    for i in 1..=2 {
        let st = t.stop(i, false).expect("ran");
        assert!(st.success(), "hv{i}: {st:?}\n{}", t.log(i));
    }
}
