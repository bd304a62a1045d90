//! Issue 3, kernel interop: a meshwire node and a node running the kernel
//! stack (wireguard + gretap + batman-adv 2022.3, booted by
//! `../shared/refvm`) form one mesh.
//!
//! ```text
//!   mwI-ul: bridge ulbr (underlay 198.18.0.0/24)
//!     |-- veth -- mwI-hv1: meshwire 198.18.0.1, inner 198.19.0.1
//!     |              port t-vm1a -> mwI-vm1a: eth0 198.19.1.11, fd00:198:19:1::b
//!     `-- TAP rv-t-mwI -- qemu "mwI": eth0 198.18.0.100, wg0 198.19.0.100,
//!                          gt-U (gretap to 198.19.0.1) in bat0 198.19.1.100,
//!                          fd00:198:19:1::64: bat0 is "the VM behind the kernel node"
//! ```
//!
//! The reference VM is built (`build.sh`, idempotent) into
//! `target/refvm` unless `MESHWIRE_RV_BUILD` names another build dir. If
//! it cannot be built or booted, the test fails and says why: it never skips.

#[path = "common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use meshwire::keys;
use serde_json::Value;

use common::*;

const RV_UNDERLAY: &str = "198.18.0.100";
const RV_INNER: &str = "198.19.0.100";
const RV_BAT_IP4: &str = "198.19.1.100";
const RV_BAT_IP6: &str = "fd00:198:19:1::64";
/// gretap MAC = the kernel node's originator; bat0 MAC = its client.
const RV_ORIG: &str = "02:00:00:00:0a:01";
const RV_BAT_MAC: &str = "02:00:00:00:0a:00";
/// OGM interval on both sides: short, so that the test converges fast.
const OGM_MS: u64 = 250;

fn refvm_dir() -> PathBuf {
    std::env::var_os("MESHWIRE_REFVM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/refvm"))
}

fn rv_build_dir() -> PathBuf {
    std::env::var_os("MESHWIRE_RV_BUILD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/refvm"))
}

/// One reference kernel node, stopped (qemu killed, TAP removed) on drop.
struct RefVm {
    /// run-single.sh's --name: at most 8 characters, distinct per test.
    name: &'static str,
    script: PathBuf,
    build: PathBuf,
    boot_s: f64,
}

impl RefVm {
    /// Builds the reference VM (idempotent) and boots it.
    fn start(name: &'static str, args: &[String]) -> RefVm {
        let dir = refvm_dir();
        let build = rv_build_dir();
        assert!(
            dir.join("run-single.sh").exists(),
            "reference VM scripts not found at {} (set MESHWIRE_REFVM): the interop test \
             cannot run without them",
            dir.display()
        );
        std::fs::create_dir_all(&build).expect("create the refvm build dir");
        let t = Instant::now();
        let out = Command::new("bash")
            .arg(dir.join("build.sh"))
            .env("RV_BUILD", &build)
            .output()
            .expect("run refvm build.sh");
        assert!(
            out.status.success(),
            "the reference VM could not be built (RV_BUILD={}): {}\n{}",
            build.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("refvm build.sh: {:.1}s", t.elapsed().as_secs_f64());
        let mut vm = RefVm {
            name,
            script: dir.join("run-single.sh"),
            build,
            boot_s: 0.0,
        };
        // A VM of a crashed earlier run would hold the name.
        vm.stop();
        let mut cmd = Command::new("bash");
        cmd.arg(&vm.script)
            .args(["start", "--name", name, "--timeout", "150"])
            .args(args)
            .env("RV_BUILD", &vm.build);
        let out = cmd.output().expect("run run-single.sh start");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && stdout.contains("RV-SINGLE"),
            "the reference VM did not boot: {stdout}\n{}\nconsole log tail:\n{}",
            String::from_utf8_lossy(&out.stderr),
            vm.console_tail()
        );
        vm.boot_s = stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix("boot_s="))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.0);
        eprintln!("{}", stdout.trim());
        vm
    }

    fn console_tail(&self) -> String {
        let log = self
            .build
            .join(format!("run/single-{0}/{0}.log", self.name));
        let s = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Runs a shell command on the VM's console; its output and success.
    fn try_cmd(&self, c: &str) -> (bool, String) {
        let out = Command::new("bash")
            .arg(&self.script)
            .args(["cmd", "--name", self.name, "--timeout", "60", c])
            .env("RV_BUILD", &self.build)
            .output()
            .expect("run run-single.sh cmd");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn cmd(&self, c: &str) -> String {
        let (ok, out) = self.try_cmd(c);
        assert!(ok, "on the kernel node, '{c}' failed:\n{out}");
        out
    }

    /// One counter of `batctl statistics`.
    fn stat(&self, name: &str) -> u64 {
        let s = self.cmd("batctl statistics");
        stat_from(&s, name)
    }

    fn stop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .args(["stop", "--name", self.name])
            .env("RV_BUILD", &self.build)
            .output();
    }
}

impl Drop for RefVm {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kernel node console (tail):\n{}", self.console_tail());
        }
        self.stop();
    }
}

fn stat_from(s: &str, name: &str) -> u64 {
    s.lines()
        .filter_map(|l| l.trim().split_once(": "))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in batctl statistics:\n{s}"))
}

fn mesh_counter(t: &Topology, name: &str) -> u64 {
    t.ctl(1, "stats")["mesh"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no mesh counter {name}"))
}

fn originator_of(t: &Topology) -> String {
    let pk = keys::decode_key(&t.hvs[0].public_key).unwrap();
    keys::originator_mac(&pk).to_string()
}

fn find<'a>(list: &'a Value, key: &str, val: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|e| e[key] == val)
}

#[test]
fn kernel_node_and_meshwire_form_one_mesh() {
    let t0 = Instant::now();
    let mut t = Topology::new("mwI", &[&[Attach::TapNic]], OGM_MS);
    // The kernel node's bat0 has MTU 1500 and fragments; so may our VM.
    t.port_mtu = Some(1500);
    let (rv_priv, rv_pub) = genkey();
    t.hvs[0].extra_config = format!(
        "\n[[peer]]\npublic_key = \"{rv_pub}\"\nendpoint = \"{RV_UNDERLAY}:51820\"\naddress = \"{RV_INNER}\"\npersistent_keepalive = 25\nmtu = 1382\n"
    );
    let mw_pub = t.hvs[0].public_key.clone();
    let mw_orig = originator_of(&t);
    let vm = t.vm("vm1a").clone();
    t.start(1);
    let ul = format!("{}-ul", t.prefix);
    let args: Vec<String> = [
        "--ns",
        &ul,
        "--bridge",
        "ulbr",
        "--ip",
        &format!("{RV_UNDERLAY}/24"),
        "--wgkey",
        &rv_priv,
        "--wgip",
        &format!("{RV_INNER}/24"),
        "--batip",
        &format!("{RV_BAT_IP4}/24"),
        "--batip6",
        &format!("{RV_BAT_IP6}/64"),
        "--peer",
        &format!("U,{mw_pub},198.18.0.1:51820,198.19.0.1"),
        "--gtmac",
        RV_ORIG,
        "--batmac",
        RV_BAT_MAC,
        "--ogm",
        &OGM_MS.to_string(),
        // BLA would drop all broadcasts for 30 s after bat0 comes up.
        "--batopt",
        "bridge_loop_avoidance:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let t_boot = Instant::now();
    let rv = RefVm::start("mwI", &args);
    let ready = Instant::now();
    let boot_total = t_boot.elapsed().as_secs_f64();

    // 1. Each side in the other's originator table.
    let ok = wait_until(Duration::from_secs(60), || {
        find(&t.ctl(1, "originators"), "originator", RV_ORIG)
            .is_some_and(|o| o["tq"].as_u64().unwrap_or(0) > 0)
    });
    assert!(
        ok,
        "the kernel node never became an originator of meshwire\n{}",
        t.dump_logs()
    );
    let conv_mw = ready.elapsed().as_secs_f64();
    let ok = wait_until(Duration::from_secs(60), || {
        rv.cmd("batctl o -H")
            .lines()
            .any(|l| l.contains(&mw_orig) && l.trim_start().starts_with('*'))
    });
    assert!(
        ok,
        "meshwire's originator {mw_orig} never became a route of the kernel node:\n{}\n{}",
        rv.cmd("batctl o; batctl n"),
        t.dump_logs()
    );
    let conv_rv = ready.elapsed().as_secs_f64();

    // 2. ARP crosses from the kernel node: nothing was ever sent between
    // the two, so the kernel's request must be broadcast to the VM (which
    // learns the kernel's MAC from it) and the reply unicast back.
    let ping = |from_kernel: bool, ip: &str, size: u32| -> bool {
        if from_kernel {
            let p = if ip.contains(':') { "ping -6" } else { "ping" };
            rv.try_cmd(&format!("{p} -c 2 -W 2 -s {size} {ip}")).0
        } else {
            t.ping(&vm.name, ip, 2, &["-s", &size.to_string(), "-M", "do"])
        }
    };
    let rx_bcast = mesh_counter(&t, "rx_bcast");
    let ok = wait_until(Duration::from_secs(30), || ping(true, &vm.ip4, 56));
    let first_ping = ready.elapsed().as_secs_f64();
    assert!(
        ok,
        "kernel node -> VM {} (IPv4) failed\n{}",
        vm.ip4,
        t.dump_logs()
    );
    let n = ns_exec(&vm.ns, &["ip", "neigh", "show", RV_BAT_IP4]);
    assert!(
        n.contains(RV_BAT_MAC),
        "the VM did not learn the kernel node's MAC from its ARP request: {n}"
    );
    let n = rv.cmd(&format!("ip neigh show {}", vm.ip4));
    assert!(n.contains(&vm.mac), "kernel ARP for the VM: {n}");
    assert!(mesh_counter(&t, "rx_bcast") > rx_bcast);

    // ND from the kernel node: its NS reaches the VM.
    assert!(
        ping(true, &vm.ip6, 56) || ping(true, &vm.ip6, 56),
        "kernel node -> VM {} (IPv6) failed\n{}",
        vm.ip6,
        t.dump_logs()
    );
    let n = ns_exec(&vm.ns, &["ip", "-6", "neigh", "show", RV_BAT_IP6]);
    assert!(n.contains(RV_BAT_MAC), "VM ND entry for the kernel: {n}");

    // 3. The other way: the VM forgets, asks by broadcast (ARP) and
    // multicast (ND), meshwire carries both as batman broadcasts.
    ns_exec(&vm.ns, &["ip", "neigh", "flush", "dev", "eth0"]);
    ns_exec(&vm.ns, &["ip", "-6", "neigh", "flush", "dev", "eth0"]);
    let tx_bcast = mesh_counter(&t, "tx_bcast");
    for ip in [RV_BAT_IP4, RV_BAT_IP6] {
        assert!(
            ping(false, ip, 56) || ping(false, ip, 56),
            "VM -> kernel node {ip} failed\n{}",
            t.dump_logs()
        );
    }
    assert!(mesh_counter(&t, "tx_bcast") >= tx_bcast + 2);
    let n = ns_exec(&vm.ns, &["ip", "neigh", "show", RV_BAT_IP4]);
    assert!(n.contains(RV_BAT_MAC), "VM ARP for the kernel: {n}");

    // 4. Frames bigger than the links: batman fragments both ways
    // (1472 + 28 = a full 1500-byte IPv4 packet; 1400 over IPv6).
    // 1340 + 28 + 14 + 10 = 1392: over the kernel's 1382-byte gretap MTU
    // (`[[peer]] mtu = 1382`), under meshwire's own 1402.
    let frag_rx = rv.stat("frag_rx");
    let reassembled = mesh_counter(&t, "frag_reassembled");
    let frag_sent = mesh_counter(&t, "frag_sent");
    for (ip, size) in [(RV_BAT_IP4, 1340), (RV_BAT_IP4, 1472), (RV_BAT_IP6, 1400)] {
        assert!(
            ping(false, ip, size) || ping(false, ip, size),
            "VM -> kernel {ip} -s {size} failed\n{}",
            t.dump_logs()
        );
    }
    for (ip, size) in [(&vm.ip4, 1472), (&vm.ip6, 1400)] {
        assert!(
            ping(true, ip, size) || ping(true, ip, size),
            "kernel -> VM {ip} -s {size} failed\n{}",
            t.dump_logs()
        );
    }
    assert!(
        mesh_counter(&t, "frag_sent") >= frag_sent + 12,
        "meshwire did not fragment for the 1382-byte link"
    );
    assert!(
        rv.stat("frag_rx") >= frag_rx + 12,
        "kernel took too few of our fragments"
    );
    assert!(mesh_counter(&t, "frag_reassembled") >= reassembled + 8);

    // 5. A TT change on each side, announced as OGM diffs: a second client
    // behind meshwire, a new multicast listener (IPv6 address) on the kernel.
    ns_exec(
        &vm.ns,
        &[
            "ip",
            "link",
            "add",
            "m1",
            "link",
            "eth0",
            "address",
            "02:00:00:01:01:77",
            "type",
            "macvlan",
            "mode",
            "bridge",
        ],
    );
    ns_exec(
        &vm.ns,
        &["ip", "addr", "add", "198.19.1.77/24", "dev", "m1"],
    );
    ns_exec(&vm.ns, &["ip", "link", "set", "m1", "up"]);
    rv.cmd("ip addr add fd00:198:19:1::65/64 dev bat0 nodad");
    // From m1 itself, so that its MAC (not eth0's) sources the frames.
    assert!(
        wait_until(Duration::from_secs(20), || ns_try(
            &vm.ns,
            &["ping", "-c", "1", "-W", "1", "-I", "m1", RV_BAT_IP4]
        )),
        "second VM client 198.19.1.77 -> kernel failed\n{}",
        t.dump_logs()
    );
    let ok = wait_until(Duration::from_secs(20), || {
        find(&t.ctl(1, "fdb"), "mac", "33:33:ff:00:00:65").is_some()
    });
    assert!(
        ok,
        "the kernel's new TT client never reached meshwire's fdb"
    );

    // 6. The tables, as an operator reads them.
    let tg = rv.cmd("batctl tg -H");
    for mac in [vm.mac.as_str(), "02:00:00:01:01:77"] {
        assert!(
            tg.lines().any(|l| l.contains(mac) && l.contains(&mw_orig)),
            "batctl tg on the kernel node does not list {mac} via {mw_orig}:\n{tg}"
        );
    }
    let o = rv.cmd("batctl o");
    let fdb = t.ctl(1, "fdb");
    let e = find(&fdb, "mac", RV_BAT_MAC).unwrap_or_else(|| panic!("{RV_BAT_MAC} not in fdb"));
    assert_eq!(e["location"], format!("originator {RV_ORIG}"), "{e}");
    let origs = t.ctl(1, "originators");
    let ko = find(&origs, "originator", RV_ORIG).expect("kernel originator");
    assert_eq!(ko["next_hop"], RV_ORIG, "{ko}");

    // 7. Settled: TT versions and CRCs agree, nobody keeps asking.
    let ok = wait_until(Duration::from_secs(10), || {
        find(&t.ctl(1, "originators"), "originator", RV_ORIG)
            .is_some_and(|o| o["tt_crc_ok"] == true)
    });
    assert!(ok, "meshwire's copy of the kernel's TT has the wrong CRC");
    std::thread::sleep(Duration::from_secs(2));
    let mw_req = mesh_counter(&t, "tt_requests_sent");
    let mw_ans = mesh_counter(&t, "tt_requests_answered");
    let mw_mismatch = mesh_counter(&t, "tt_crc_mismatch");
    let k = rv.cmd("batctl statistics");
    std::thread::sleep(Duration::from_secs(10));
    let k2 = rv.cmd("batctl statistics");
    let window = [
        (
            "meshwire tt_requests_sent",
            mw_req,
            mesh_counter(&t, "tt_requests_sent"),
        ),
        (
            "meshwire tt_requests_answered",
            mw_ans,
            mesh_counter(&t, "tt_requests_answered"),
        ),
        (
            "meshwire tt_crc_mismatch",
            mw_mismatch,
            mesh_counter(&t, "tt_crc_mismatch"),
        ),
        (
            "kernel tt_request_tx",
            stat_from(&k, "tt_request_tx"),
            stat_from(&k2, "tt_request_tx"),
        ),
        (
            "kernel tt_request_rx",
            stat_from(&k, "tt_request_rx"),
            stat_from(&k2, "tt_request_rx"),
        ),
    ];
    for (what, a, b) in window {
        assert_eq!(
            a, b,
            "{what} went from {a} to {b} in 10 s of a settled mesh"
        );
    }

    migrate_both_ways(&t, &rv, &vm, &mw_orig);

    eprintln!("--- kernel node: batctl o ---\n{o}\n--- batctl tg ---\n{tg}");
    eprintln!(
        "--- meshwire ctl originators ---\n{}\n--- meshwire ctl fdb ---\n{}",
        sh(&[
            BIN,
            "ctl",
            "--socket",
            t.socket(1).to_str().unwrap(),
            "originators"
        ]),
        sh(&[BIN, "ctl", "--socket", t.socket(1).to_str().unwrap(), "fdb"])
    );
    let st = t.ctl(1, "stats");
    let m = &st["mesh"];
    eprintln!(
        "--- meshwire mesh counters ---\nrx_ogm={} tx_ogm={} ogm_echo={} rx_bcast={} tx_bcast={} \
         frag_sent={} frag_reassembled={} tt_requests_sent={} tt_requests_answered={} \
         tt_responses_received={} tt_crc_mismatch={} tt_changes_applied={} malformed={} \
         unknown_type={} tvlv_unknown={} dat_dropped={}",
        m["rx_ogm"],
        m["tx_ogm"],
        m["ogm_echo"],
        m["rx_bcast"],
        m["tx_bcast"],
        m["frag_sent"],
        m["frag_reassembled"],
        m["tt_requests_sent"],
        m["tt_requests_answered"],
        m["tt_responses_received"],
        m["tt_crc_mismatch"],
        m["tt_changes_applied"],
        m["malformed"],
        m["unknown_type"],
        m["tvlv_unknown"],
        m["dat_dropped"]
    );
    eprintln!(
        "--- kernel tt statistics ---\n{}",
        k2.lines()
            .filter(|l| l.contains("tt_"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "TIMINGS boot_s={:.1} (run-single {:.1}) meshwire_sees_kernel_after_ready={conv_mw:.1}s \
         kernel_sees_meshwire_after_ready={conv_rv:.1}s first_ping_after_ready={first_ping:.1}s total={:.1}s",
        boot_total,
        rv.boot_s,
        t0.elapsed().as_secs_f64()
    );
    drop(rv);
}

/// Two meshwire nodes that are not peered, joined only through a kernel
/// node with one gretap to each: OGMs, TT, broadcasts and unicast cross
/// two batman hops with the kernel as relay. Towards hv2 the kernel's
/// neighbour MAC (gt-U2, ..:0a:02) is not its originator (gt-U1, ..:0a:01,
/// the primary interface): meshwire meets a multi-interface kernel node.
#[test]
fn kernel_node_relays_between_two_meshwire_nodes() {
    let t0 = Instant::now();
    let opts = Opts {
        links: Some(Vec::new()),
        ..Opts::default()
    };
    let mut t = Topology::with_opts("mwJ", &[&[Attach::TapNic], &[Attach::TapNic]], OGM_MS, opts);
    t.port_mtu = Some(1500);
    let (rv_priv, rv_pub) = genkey();
    for hv in &mut t.hvs {
        hv.extra_config = format!(
            "\n[[peer]]\npublic_key = \"{rv_pub}\"\nendpoint = \"{RV_UNDERLAY}:51820\"\naddress = \"{RV_INNER}\"\npersistent_keepalive = 25\nmtu = 1382\n"
        );
    }
    let origs: Vec<String> = (0..2)
        .map(|i| {
            let pk = keys::decode_key(&t.hvs[i].public_key).unwrap();
            keys::originator_mac(&pk).to_string()
        })
        .collect();
    t.start(1);
    t.start(2);
    let ul = format!("{}-ul", t.prefix);
    let mut args: Vec<String> = [
        "--ns",
        &ul,
        "--bridge",
        "ulbr",
        "--ip",
        &format!("{RV_UNDERLAY}/24"),
        "--wgkey",
        &rv_priv,
        "--wgip",
        &format!("{RV_INNER}/24"),
        "--batip",
        &format!("{RV_BAT_IP4}/24"),
        "--batip6",
        &format!("{RV_BAT_IP6}/64"),
        "--gtmac",
        RV_ORIG,
        "--batmac",
        RV_BAT_MAC,
        "--ogm",
        &OGM_MS.to_string(),
        "--batopt",
        "bridge_loop_avoidance:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for hv in 1..=2 {
        args.push("--peer".into());
        args.push(format!(
            "U{hv},{},198.18.0.{hv}:51820,198.19.0.{hv}",
            t.hvs[hv - 1].public_key
        ));
    }
    let rv = RefVm::start("mwJ", &args);
    let ready = Instant::now();
    // gt-U1 is the primary interface (originator), gt-U2 gets MAC + 1.
    let rv_if = ["02:00:00:00:0a:01", "02:00:00:00:0a:02"];

    // Each meshwire node reaches the other through the kernel's interface
    // on its own link.
    for (hv, other) in [(1usize, 2usize), (2, 1)] {
        let ok = wait_until(Duration::from_secs(60), || {
            find(&t.ctl(hv, "originators"), "originator", &origs[other - 1])
                .is_some_and(|o| o["next_hop"] == rv_if[hv - 1])
        });
        assert!(
            ok,
            "hv{hv} has no route to hv{other} via the kernel node ({}): {}\n{}",
            rv_if[hv - 1],
            t.ctl(hv, "originators"),
            t.dump_logs()
        );
        let k = find(&t.ctl(hv, "originators"), "originator", RV_ORIG).cloned();
        assert!(
            k.as_ref().is_some_and(|k| k["next_hop"] == rv_if[hv - 1]),
            "hv{hv}: kernel originator {RV_ORIG} not via {}: {k:?}",
            rv_if[hv - 1]
        );
    }
    let converged = ready.elapsed().as_secs_f64();
    let o = rv.cmd("batctl o -H");
    for orig in &origs {
        assert!(o.contains(orig.as_str()), "batctl o lacks {orig}:\n{o}");
    }

    // VM to VM over two batman hops: ARP/ND broadcasts, then unicast, both
    // families, both directions; and each VM to the kernel node's bat0.
    let (a, b) = (t.vm("vm1a").clone(), t.vm("vm2a").clone());
    let ok = wait_until(Duration::from_secs(30), || t.ping(&a.name, &b.ip4, 1, &[]));
    assert!(
        ok,
        "vm1a -> vm2a over the kernel relay failed\n{}",
        t.dump_logs()
    );
    let first_ping = ready.elapsed().as_secs_f64();
    let mut failed = Vec::new();
    for (from, to) in [(&a, &b), (&b, &a)] {
        for ip in [&to.ip4, &to.ip6] {
            if !(t.ping(&from.name, ip, 2, &[]) || t.ping(&from.name, ip, 3, &[])) {
                failed.push(format!("{} -> {ip}", from.name));
            }
        }
        // 1472: fragmented by meshwire, forwarded as fragments by the kernel.
        if !(t.ping(&from.name, &to.ip4, 2, &["-s", "1472"])
            || t.ping(&from.name, &to.ip4, 2, &["-s", "1472"]))
        {
            failed.push(format!("{} -> {} -s 1472", from.name, to.ip4));
        }
        for ip in [RV_BAT_IP4, RV_BAT_IP6] {
            if !(t.ping(&from.name, ip, 2, &[]) || t.ping(&from.name, ip, 3, &[])) {
                failed.push(format!("{} -> {ip}", from.name));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "unreachable: {failed:?}\n{}",
        t.dump_logs()
    );
    let n = ns_exec(&a.ns, &["ip", "neigh", "show", &b.ip4]);
    assert!(n.contains(&b.mac), "vm1a ARP for vm2a: {n}");

    // TT through the relay: each node's FDB has the other's VM at its
    // originator; the kernel's global table has both VMs.
    for (hv, vm, other) in [(1, &b, 2), (2, &a, 1)] {
        let fdb = t.ctl(hv, "fdb");
        let e = find(&fdb, "mac", &vm.mac)
            .unwrap_or_else(|| panic!("hv{hv} fdb lacks {}: {fdb}", vm.mac));
        assert_eq!(
            e["location"],
            format!("originator {}", origs[other - 1]),
            "{e}"
        );
    }
    let tg = rv.cmd("batctl tg -H");
    for (vm, orig) in [(&a, &origs[0]), (&b, &origs[1])] {
        assert!(
            tg.lines()
                .any(|l| l.contains(&vm.mac) && l.contains(orig.as_str())),
            "batctl tg lacks {} via {orig}:\n{tg}",
            vm.mac
        );
    }

    // Settled: no TT requests anywhere for 10 s.
    std::thread::sleep(Duration::from_secs(2));
    let count = |hv: usize| {
        let st = t.ctl(hv, "stats");
        (
            st["mesh"]["tt_requests_sent"].as_u64().unwrap_or(0),
            st["mesh"]["tt_crc_mismatch"].as_u64().unwrap_or(0),
        )
    };
    let before = (count(1), count(2), rv.stat("tt_request_tx"));
    std::thread::sleep(Duration::from_secs(10));
    let after = (count(1), count(2), rv.stat("tt_request_tx"));
    assert_eq!(
        before, after,
        "TT requests/CRC mismatches in a settled mesh ((hv1), (hv2), kernel)"
    );
    eprintln!(
        "--- relay: kernel batctl o ---\n{}\n--- batctl tg ---\n{tg}\n--- hv1 ctl originators ---\n{}",
        rv.cmd("batctl o"),
        sh(&[BIN, "ctl", "--socket", t.socket(1).to_str().unwrap(), "originators"])
    );
    eprintln!(
        "TIMINGS relay: boot_s={:.1} routes_both_ways_after_ready={converged:.1}s \
         first_vm_ping_after_ready={first_ping:.1}s total={:.1}s",
        rv.boot_s,
        t0.elapsed().as_secs_f64()
    );
    drop(rv);
}

/// Live migration across the two stacks, with ROAM adverts both ways.
/// The client 02:00:00:01:01:77 (198.19.1.77, macvlan m1 behind meshwire)
/// moves to the kernel node (bridge br0 over bat0, the way a kernel
/// hypervisor bridges its VMs) and back.
fn migrate_both_ways(t: &Topology, rv: &RefVm, vm: &Vm, mw_orig: &str) {
    const MAC: &str = "02:00:00:01:01:77";
    let roam_rx = mesh_counter(t, "roam_received");
    let roam_tx = mesh_counter(t, "roam_sent");
    let k_tx = rv.stat("tt_roam_adv_tx");
    let k_rx = rv.stat("tt_roam_adv_rx");

    // To the kernel node. The client only sends unicast there (static
    // neighbour, no IPv6), so meshwire learns of the move only from the
    // kernel's ROAM advert: its FDB must follow it, or the VM's reply goes
    // to the port where the client used to be.
    ns_exec(&vm.ns, &["ip", "link", "del", "m1"]);
    rv.cmd(&format!(
        "ip link add br0 type bridge && echo 1 > /proc/sys/net/ipv6/conf/br0/disable_ipv6 && \
         ip link set br0 address {MAC} && ip link set bat0 master br0 && ip link set br0 up && \
         ip addr add 198.19.1.77/24 dev br0 && \
         ip neigh replace {} lladdr {} dev br0 nud permanent",
        vm.ip4, vm.mac
    ));
    let ok = wait_until(Duration::from_secs(20), || {
        rv.try_cmd(&format!("ping -c 1 -W 1 -I br0 {}", vm.ip4)).0
    });
    assert!(
        ok,
        "client migrated to the kernel node cannot reach the VM\n{}",
        t.dump_logs()
    );
    assert!(
        rv.stat("tt_roam_adv_tx") > k_tx,
        "kernel sent no ROAM advert"
    );
    assert!(mesh_counter(t, "roam_received") > roam_rx);
    let fdb = t.ctl(1, "fdb");
    let e = find(&fdb, "mac", MAC).unwrap_or_else(|| panic!("{MAC} not in fdb: {fdb}"));
    assert_eq!(e["location"], format!("originator {RV_ORIG}"), "{e}");

    // And back: the kernel node's bridge gets another MAC (the client left
    // it), the client reappears behind meshwire and speaks first.
    rv.cmd(
        "ip link set br0 address 02:00:00:00:0a:05 && ip addr del 198.19.1.77/24 dev br0 && \
         ip addr add 198.19.1.78/24 dev br0",
    );
    ns_exec(
        &vm.ns,
        &[
            "ip", "link", "add", "m1", "link", "eth0", "address", MAC, "type", "macvlan", "mode",
            "bridge",
        ],
    );
    ns_exec(
        &vm.ns,
        &["ip", "addr", "add", "198.19.1.77/24", "dev", "m1"],
    );
    ns_exec(&vm.ns, &["ip", "link", "set", "m1", "up"]);
    let ok = wait_until(Duration::from_secs(20), || {
        ns_try(
            &vm.ns,
            &["ping", "-c", "1", "-W", "1", "-I", "m1", "198.19.1.78"],
        )
    });
    assert!(
        ok,
        "client back behind meshwire cannot reach the kernel node"
    );
    assert!(
        mesh_counter(t, "roam_sent") > roam_tx,
        "meshwire sent no ROAM advert"
    );
    assert!(
        rv.stat("tt_roam_adv_rx") > k_rx,
        "kernel got no ROAM advert"
    );
    let ok = wait_until(Duration::from_secs(10), || {
        rv.cmd("batctl tg -H")
            .lines()
            .any(|l| l.contains(MAC) && l.contains(mw_orig))
    });
    assert!(
        ok,
        "kernel's global table never moved {MAC} back to meshwire"
    );
    assert!(
        rv.try_cmd("ping -c 2 -W 1 198.19.1.77").0,
        "kernel -> returned client"
    );
    let ok = wait_until(Duration::from_secs(10), || {
        find(&t.ctl(1, "originators"), "originator", RV_ORIG)
            .is_some_and(|o| o["tt_crc_ok"] == true)
    });
    assert!(ok, "TT CRC disagrees after the migrations");
}
