//! `meshwire ctl reload [--dry-run]` and SIGHUP (issue 14), as `wg
//! syncconf`: a reload that removes a peer and adds a port, and one that
//! adds the peer back and removes the port, are applied while a 10 ms
//! ping and an iperf3 stream between two untouched VMs run (no ping
//! lost); the removed peer's VM stays reachable through the third node;
//! the peer added back gets its direct route again. What a
//! reload cannot apply (the listen port) is named as needing a restart,
//! logged, and left as it runs. A broken file is refused with the field
//! named, and nothing changes.

use std::fs;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

fn reload(t: &Topology, dry: bool) -> Result<Value, String> {
    let sock = t.socket(1);
    let mut args = vec![BIN, "ctl", "--socket", sock.to_str().unwrap(), "reload"];
    if dry {
        args.push("--dry-run");
    }
    args.push("--json");
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("meshwire ctl reload");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
}

fn port_names(t: &Topology) -> Vec<String> {
    t.ctl(1, "ports")
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect()
}

fn list(v: &Value, k: &str) -> Vec<String> {
    v[k].as_array()
        .unwrap_or_else(|| panic!("no {k} in {v}"))
        .iter()
        .filter_map(|x| x.as_str().map(String::from))
        .collect()
}

/// A 100/s ping from `ns` to `ip` that spans a reload: `-c` with a deadline
/// waits for the reply to the last echo (a bare `-w` exits with it still in
/// flight and counts it lost), and a thread reads the output as it comes
/// (a full pipe would block ping itself and show a gap that is the test's).
struct Pinger {
    child: std::process::Child,
    out: std::thread::JoinHandle<String>,
}

impl Pinger {
    fn start(ns: &str, ip: &str, count: u32) -> Pinger {
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-n", "-i", "0.01", "-W", "2"])
            .args([
                "-c",
                &count.to_string(),
                "-w",
                &(count / 20).to_string(),
                ip,
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
            s
        });
        Pinger { child, out }
    }

    fn output(mut self) -> String {
        let _ = self.child.wait();
        self.out.join().unwrap()
    }
}

#[test]
fn reload_applies_ports_and_names_what_needs_a_restart() {
    let mut t = Topology::new(
        "mwRl",
        &[&[Attach::TapNic], &[Attach::TapNic], &[Attach::TapNic]],
        500,
    );
    t.start_all();
    assert!(t.wait_routes(Duration::from_secs(30)), "{}", t.dump_logs());
    let far = t.vm("vm3a").ip4.clone();
    assert!(t.ping_until("vm1a", &far, Duration::from_secs(30)));

    // Nothing changed: an empty plan.
    let p = reload(&t, true).unwrap();
    assert_eq!(p["applied"], false);
    for k in [
        "ports_added",
        "ports_removed",
        "policies_changed",
        "needs_restart",
    ] {
        assert!(list(&p, k).is_empty(), "{k}: {p}");
    }

    // hv3's peer leaves the file, a port comes, the listen port changes.
    let path = t.config_path(1);
    let orig = fs::read_to_string(&path).unwrap();
    let pk3 = t.hvs[2].public_key.clone();
    let start = orig.find(&format!("public_key = \"{pk3}\"")).unwrap();
    let block_start = orig[..start].rfind("[[peer]]").unwrap();
    let block_end = orig[start..]
        .find("\n[")
        .map_or(orig.len(), |i| start + i + 1);
    let mut edited = format!("{}{}", &orig[..block_start], &orig[block_end..]);
    edited = edited.replacen("listen_port = 51820", "listen_port = 51821", 1);
    edited += "\n[[port]]\nname = \"t-new\"\n";
    fs::write(&path, &edited).unwrap();

    let p = reload(&t, true).unwrap();
    assert_eq!(p["applied"], false, "{p}");
    assert_eq!(list(&p, "ports_added"), ["t-new"], "{p}");
    assert_eq!(list(&p, "peers_removed"), vec![pk3.clone()], "{p}");
    assert_eq!(list(&p, "needs_restart"), ["node.listen_port"], "{p}");
    assert!(
        !port_names(&t).contains(&"t-new".to_string()),
        "dry run applied"
    );

    // Untouched: vm1a <-> vm2a (hv1-hv2), a 20 ms ping and iperf3 TCP
    // across the reloads.
    let (vm1, vm2) = (t.vm("vm1a").clone(), t.vm("vm2a").clone());
    let pinger = Pinger::start(&vm1.ns, &vm2.ip4, 2500);
    let mut server = std::process::Command::new("ip")
        .args(["netns", "exec", &vm2.ns, "iperf3", "-s", "-1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let client = std::process::Command::new("ip")
        .args([
            "netns", "exec", &vm1.ns, "iperf3", "-c", &vm2.ip4, "-t", "20",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));

    let p = reload(&t, false).unwrap();
    assert_eq!(p["applied"], true, "{p}");
    assert!(wait_until(Duration::from_secs(10), || port_names(&t)
        .contains(&"t-new".to_string())));
    let log = t.log(1);
    assert!(
        log.contains("needs a restart (not applied)") && log.contains("node.listen_port"),
        "{log}"
    );
    // hv3 is no peer of hv1 now: its VM is reached through hv2.
    let peers = t.ctl(1, "peers").to_string();
    assert!(!peers.contains(&pk3), "{peers}");
    let via2 = t.hardif_of(2, 1);
    assert!(
        wait_until(Duration::from_secs(30), || t.next_hop(1, 3).as_deref()
            == Some(via2.as_str())),
        "hv1 -> hv3 not through hv2: {:?}",
        t.next_hop(1, 3)
    );
    assert!(t.ping_until("vm1a", &far, Duration::from_secs(30)));
    // The next reload has nothing left but what needs a restart.
    let p = reload(&t, true).unwrap();
    assert_eq!(list(&p, "needs_restart"), ["node.listen_port"], "{p}");
    assert!(list(&p, "ports_added").is_empty(), "{p}");
    assert!(list(&p, "peers_removed").is_empty(), "{p}");

    // A broken file: refused, the field named, nothing changes.
    fs::write(
        &path,
        edited.replacen("listen_port = 51821", "listen_port = \"x\"", 1),
    )
    .unwrap();
    let e = reload(&t, false).unwrap_err();
    assert!(e.contains("listen_port"), "{e}");
    assert!(port_names(&t).contains(&"t-new".to_string()));

    // Back to the first file (the human plan): hv3 is a peer again, the
    // route to it direct again.
    fs::write(&path, &orig).unwrap();
    let sock = t.socket(1);
    let human = sh(&[BIN, "ctl", "--socket", sock.to_str().unwrap(), "reload"]);
    assert!(
        human.contains("applied")
            && human.contains("ports removed: t-new")
            && human.contains(&format!("peers added: {pk3}")),
        "{human}"
    );
    assert!(wait_until(Duration::from_secs(10), || !port_names(&t)
        .contains(&"t-new".to_string())));
    let direct = t.hardif_of(3, 1);
    assert!(
        wait_until(Duration::from_secs(60), || t.next_hop(1, 3).as_deref()
            == Some(direct.as_str())),
        "hv1 -> hv3 not direct again: {:?}\n{}",
        t.next_hop(1, 3),
        t.dump_logs()
    );
    assert!(t.ping_until("vm1a", &far, Duration::from_secs(30)));
    let out = pinger.output();
    assert!(
        out.contains(" 0% packet loss"),
        "pings lost across the reload:\n{out}"
    );
    let out = client.wait_with_output().unwrap();
    let _ = server.wait();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("receiver"), "iperf3 across the reload:\n{out}");
}

/// `ctl peer del|add|set` (like `wg set`): hv1 and hv3 drop each other and
/// reach each other through hv2; added back with their endpoints they are
/// direct again; a changed keepalive replaces only that peer; bad keys
/// and fields are refused with the field named.
#[test]
fn ctl_peer_changes_the_running_peers() {
    let mut t = Topology::new(
        "mwRp",
        &[&[Attach::TapNic], &[Attach::TapNic], &[Attach::TapNic]],
        500,
    );
    t.start_all();
    assert!(t.wait_routes(Duration::from_secs(30)), "{}", t.dump_logs());
    let peer = |hv: usize, args: &[&str]| -> Result<Value, String> {
        let sock = t.socket(hv);
        let out = std::process::Command::new(BIN)
            .args(["ctl", "--socket", sock.to_str().unwrap(), "peer"])
            .args(args)
            .arg("--json")
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
    };
    let (pk1, pk2, pk3) = (
        t.hvs[0].public_key.clone(),
        t.hvs[1].public_key.clone(),
        t.hvs[2].public_key.clone(),
    );
    let far = t.vm("vm3a").ip4.clone();

    let p = peer(1, &["del", &pk3]).unwrap();
    assert_eq!(list(&p, "peers_removed"), vec![pk3.clone()], "{p}");
    peer(3, &["del", &pk1]).unwrap();
    let via2 = t.hardif_of(2, 1);
    assert!(
        wait_until(Duration::from_secs(30), || t.next_hop(1, 3).as_deref()
            == Some(via2.as_str())),
        "hv1 -> hv3 not through hv2: {:?}",
        t.next_hop(1, 3)
    );
    assert!(t.ping_until("vm1a", &far, Duration::from_secs(30)));

    let ep3 = t.endpoint(3);
    let in3 = t.inner(3);
    let p = peer(1, &["add", &pk3, "--endpoint", &ep3, "--address", &in3]).unwrap();
    assert_eq!(list(&p, "peers_added"), vec![pk3.clone()], "{p}");
    let (ep1, in1) = (t.endpoint(1), t.inner(1));
    peer(3, &["add", &pk1, "--endpoint", &ep1, "--address", &in1]).unwrap();
    let direct = t.hardif_of(3, 1);
    assert!(
        wait_until(Duration::from_secs(60), || t.next_hop(1, 3).as_deref()
            == Some(direct.as_str())),
        "hv1 -> hv3 not direct again: {:?}\n{}",
        t.next_hop(1, 3),
        t.dump_logs()
    );

    let p = peer(1, &["set", &pk2, "--persistent-keepalive", "10"]).unwrap();
    assert_eq!(list(&p, "peers_changed"), vec![pk2.clone()], "{p}");
    let vm2 = t.vm("vm2a").ip4.clone();
    assert!(t.ping_until("vm1a", &vm2, Duration::from_secs(30)));

    let e = peer(1, &["add", &pk3, "--address", &in3]).unwrap_err();
    assert!(e.contains("exists"), "{e}");
    let e = peer(1, &["add", "not-a-key", "--address", "198.19.0.9"]).unwrap_err();
    assert!(e.contains("PUBLIC_KEY"), "{e}");
    let (_, fresh) = genkey();
    let e = peer(
        1,
        &[
            "add",
            &fresh,
            "--endpoint",
            "nowhere",
            "--address",
            "198.19.0.9",
        ],
    )
    .unwrap_err();
    assert!(e.contains("endpoint"), "{e}");
    let e = peer(1, &["del", &fresh]).unwrap_err();
    assert!(e.contains("no peer"), "{e}");
}

/// The case in one reload: hv1's file gains a peer (hv3), loses
/// another (hv4) and gains a port, while vm1a and vm2a (their link
/// untouched) ping every 10 ms and stream iperf3: no ping lost; hv1 then
/// reaches hv3 directly and hv4 through the others.
#[test]
fn one_reload_adds_a_peer_removes_another_and_adds_a_port() {
    let all_but = |skip: (usize, usize)| -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        for a in 1..=4 {
            for b in (a + 1)..=4 {
                if (a, b) != skip {
                    v.push((a, b));
                }
            }
        }
        v
    };
    let opts = Opts {
        links: Some(all_but((1, 3))),
        ..Opts::default()
    };
    let vm: &[Attach] = &[Attach::TapNic];
    let mut t = Topology::with_opts("mwR1", &[vm, vm, vm, vm], 500, opts);
    t.start_all();
    assert!(t.wait_routes(Duration::from_secs(60)), "{}", t.dump_logs());
    let (vm1, vm2) = (t.vm("vm1a").clone(), t.vm("vm2a").clone());
    let pinger = Pinger::start(&vm1.ns, &vm2.ip4, 1200);
    let mut server = std::process::Command::new("ip")
        .args(["netns", "exec", &vm2.ns, "iperf3", "-s", "-1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let client = std::process::Command::new("ip")
        .args([
            "netns", "exec", &vm1.ns, "iperf3", "-c", &vm2.ip4, "-t", "8",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));

    // hv1: + hv3, - hv4, + a port; hv3 takes hv1 in too.
    t.opts.links = Some(all_but((1, 4)));
    t.write_config(1);
    t.write_config(3);
    let path = t.config_path(1);
    let text = fs::read_to_string(&path).unwrap() + "\n[[port]]\nname = \"t-new\"\n";
    fs::write(&path, text).unwrap();
    let (pk3, pk4) = (t.hvs[2].public_key.clone(), t.hvs[3].public_key.clone());
    let p = reload(&t, false).unwrap();
    assert_eq!(list(&p, "peers_added"), vec![pk3], "{p}");
    assert_eq!(list(&p, "peers_removed"), vec![pk4], "{p}");
    assert_eq!(list(&p, "ports_added"), ["t-new"], "{p}");
    assert!(list(&p, "needs_restart").is_empty(), "{p}");
    let pid3 = t.hvs[2].daemon.as_ref().unwrap().id().to_string();
    sh(&["kill", "-HUP", &pid3]);

    let direct3 = t.hardif_of(3, 1);
    assert!(
        wait_until(Duration::from_secs(60), || t.next_hop(1, 3).as_deref()
            == Some(direct3.as_str())),
        "hv1 -> hv3 not direct: {:?}\n{}",
        t.next_hop(1, 3),
        t.dump_logs()
    );
    let direct4 = t.hardif_of(4, 1);
    assert!(
        wait_until(Duration::from_secs(60), || t
            .next_hop(1, 4)
            .is_some_and(|h| h != direct4)),
        "hv1 -> hv4 still direct: {:?}",
        t.next_hop(1, 4)
    );
    let (ip3, ip4) = (t.vm("vm3a").ip4.clone(), t.vm("vm4a").ip4.clone());
    assert!(t.ping_until("vm1a", &ip3, Duration::from_secs(30)));
    assert!(t.ping_until("vm1a", &ip4, Duration::from_secs(30)));

    let out = pinger.output();
    assert!(
        out.contains(" 0% packet loss"),
        "pings lost across the reload:\n{out}"
    );
    let out = client.wait_with_output().unwrap();
    let _ = server.wait();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("receiver"), "iperf3 across the reload:\n{out}");
}

/// A vhost-user port's socket access: added by a reload with its group and
/// mode, both changed by the next reload on the open port (the file is not
/// replaced: a connected qemu would stay).
#[test]
fn reload_gives_a_vhost_user_socket_its_group_and_mode() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut t = Topology::new("mwRv", &[&[Attach::TapNic]], 500);
    t.start_all();
    let sock = t.dir.join("vhost/vu.sock");
    let stat = || {
        let m = fs::symlink_metadata(&sock).expect("the socket file");
        (m.permissions().mode() & 0o777, m.gid(), m.ino())
    };
    let path = t.config_path(1);
    let orig = fs::read_to_string(&path).unwrap();
    let port = |group: u32, mode: &str| {
        format!(
            "{orig}\n[[port]]\nname = \"vu\"\nvhost_user = \"{}\"\nvhost_user_group = {group}\nvhost_user_mode = \"{mode}\"\n",
            sock.display()
        )
    };
    fs::write(&path, port(4242, "0640")).unwrap();
    let p = reload(&t, false).unwrap();
    assert_eq!(list(&p, "ports_added"), ["vu"], "{p}");
    let (mode, gid, ino) = stat();
    assert_eq!((mode, gid), (0o640, 4242));

    fs::write(&path, port(4343, "0600")).unwrap();
    let p = reload(&t, false).unwrap();
    assert!(list(&p, "needs_restart").is_empty(), "{p}");
    assert_eq!(stat(), (0o600, 4343, ino), "{}", t.log(1));
}
