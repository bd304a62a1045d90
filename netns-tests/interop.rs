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

#[path = "interop/dat.rs"]
mod dat;
#[path = "interop/guest.rs"]
mod guest;
#[path = "interop/guest_policy.rs"]
mod guest_policy;
#[path = "interop/libvirt.rs"]
mod libvirt;
#[path = "interop/libvirt_vhost.rs"]
mod libvirt_vhost;
#[path = "interop/libvirtd.rs"]
mod libvirtd;
#[path = "interop/mcast.rs"]
mod mcast;
#[path = "interop/migrate.rs"]
mod migrate;
#[path = "interop/migrate_qemu.rs"]
mod migrate_qemu;
#[path = "interop/refvm.rs"]
mod refvm;
#[path = "interop/relay.rs"]
mod relay;
#[path = "interop/vhost.rs"]
mod vhost;
#[path = "interop/vhost_ctl.rs"]
mod vhost_ctl;
#[path = "interop/vhost_migrate.rs"]
mod vhost_migrate;
#[path = "interop/vhost_mq.rs"]
mod vhost_mq;

use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;
use refvm::{stat_from, RefVm};

const RV_UNDERLAY: &str = "198.18.0.100";
const RV_INNER: &str = "198.19.0.100";
const RV_BAT_IP4: &str = "198.19.1.100";
const RV_BAT_IP6: &str = "fd00:198:19:1::64";
/// gretap MAC = the kernel node's originator; bat0 MAC = its client.
const RV_ORIG: &str = "02:00:00:00:0a:01";
const RV_BAT_MAC: &str = "02:00:00:00:0a:00";
/// The kernel's bat0.10 and meshwire's VLAN 10 VM (step 5c).
const RV_VLAN_IP: &str = "198.19.10.100";
const VLAN_IP: &str = "198.19.10.12";
/// OGM interval on both sides: short, so that the test converges fast.
const OGM_MS: u64 = 250;

/// Pings run on a 2-core machine next to a TCG-emulated VM: retry for a
/// while rather than fail on one slow round trip.
fn retry(f: impl FnMut() -> bool) -> bool {
    wait_until(Duration::from_secs(15), f)
}

fn mesh_counter(t: &Topology, name: &str) -> u64 {
    t.ctl(1, "stats")["mesh"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no mesh counter {name}"))
}

fn find<'a>(list: &'a Value, key: &str, val: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|e| e[key] == val)
}

/// The `[[peer]]` section that peers a meshwire node with the kernel node.
fn kernel_peer_config(rv_pub: &str) -> String {
    format!(
        "\n[[peer]]\npublic_key = \"{rv_pub}\"\nendpoint = \"{RV_UNDERLAY}:51820\"\naddress = \"{RV_INNER}\"\npersistent_keepalive = 25\nmtu = 1382\n"
    )
}

/// `run-single.sh start` arguments for the kernel node on the topology's
/// underlay, with one WireGuard peer + gretap per (name, hypervisor).
fn kernel_node_args(t: &Topology, rv_priv: &str, peers: &[(&str, usize)]) -> Vec<String> {
    let ul = format!("{}-ul", t.prefix);
    let mut args: Vec<String> = [
        "--ns",
        &ul,
        "--bridge",
        "ulbr",
        "--ip",
        &format!("{RV_UNDERLAY}/24"),
        "--wgkey",
        rv_priv,
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
        // BLA would drop all broadcasts for 30 s after bat0 comes up.
        "--batopt",
        "bridge_loop_avoidance:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for &(name, hv) in peers {
        args.push("--peer".into());
        args.push(format!(
            "{name},{},198.18.0.{hv}:51820,198.19.0.{hv}",
            t.hvs[hv - 1].public_key
        ));
    }
    args
}

#[test]
fn kernel_node_and_meshwire_form_one_mesh() {
    let t0 = Instant::now();
    let mut t = Topology::new("mwI", &[&[Attach::TapNic, Attach::TapNic]], OGM_MS);
    // The kernel node's bat0 has MTU 1500 and fragments; so may our VM.
    t.opts.port_mtu = Some(1500);
    // Policies on (issue 11). vm1a's port carries more clients (a macvlan,
    // 400 more MACs, the migrating client): a policed uplink, no server
    // roles, rate limits. vm1b is a VM port in VLAN 10 (step 5c).
    t.port_config.push((
        "t-vm1a".into(),
        "dhcp_server = false\nrouter_advertisements = false\narp_nd_rate = 50\nbroadcast_rate = 500\n".into(),
    ));
    let vm_b = t.vm("vm1b").clone();
    t.port_config.push((
        "t-vm1b".into(),
        format!(
            "mac = \"{}\"\nipv4 = [\"{}\", \"{VLAN_IP}\"]\nipv6 = [\"{}\"]\nvlan = 10\n",
            vm_b.mac, vm_b.ip4, vm_b.ip6
        ),
    ));
    let (rv_priv, rv_pub) = genkey();
    t.hvs[0].extra_config = kernel_peer_config(&rv_pub);
    let mw_orig = t.originator_of(1);
    let vm = t.vm("vm1a").clone();
    t.start(1);
    let args = kernel_node_args(&t, &rv_priv, &[("U", 1)]);
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

    // 1b. batman ICMP both ways: `meshwire ctl ping` is answered by the
    // kernel, `batctl ping` by meshwire.
    let sock = t.socket(1);
    let out = sh(&[
        BIN,
        "ctl",
        "--socket",
        sock.to_str().unwrap(),
        "ping",
        RV_ORIG,
        "-c",
        "3",
        "-i",
        "200",
        "--json",
    ]);
    let p: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(p["received"], 3, "ctl ping to the kernel node: {p}");
    let (ok, out) = rv.try_cmd(&format!("batctl ping -c 2 {mw_orig}"));
    assert!(ok, "batctl ping to meshwire: {out}");

    // 2. ARP crosses from the kernel node: nothing was ever sent between
    // the two, so the kernel's request must reach the VM (which learns the
    // kernel's MAC from it) and the reply go back unicast. The kernel runs
    // the distributed ARP table and meshwire is its DHT candidate: the
    // request comes as DHT_GET, which meshwire (not knowing the address)
    // hands to its ports, and the kernel drops its held broadcast once the
    // reply taught it the address (`interop/dat.rs` shows the answers).
    let ping = |from_kernel: bool, ip: &str, size: u32| -> bool {
        if from_kernel {
            let p = if ip.contains(':') { "ping -6" } else { "ping" };
            rv.try_cmd(&format!("{p} -c 2 -W 2 -s {size} {ip}")).0
        } else {
            t.ping(
                &vm.name,
                ip,
                1,
                &["-s", &size.to_string(), "-M", "do", "-W", "3"],
            )
        }
    };
    let dat_get_rx = mesh_counter(&t, "dat_get_rx");
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
    assert!(
        mesh_counter(&t, "dat_get_rx") > dat_get_rx,
        "the kernel's ARP request did not come as a DHT_GET"
    );

    // ND from the kernel node: its NS reaches the VM.
    assert!(
        retry(|| ping(true, &vm.ip6, 56)),
        "kernel node -> VM {} (IPv6) failed\n{}",
        vm.ip6,
        t.dump_logs()
    );
    let n = ns_exec(&vm.ns, &["ip", "-6", "neigh", "show", RV_BAT_IP6]);
    assert!(n.contains(RV_BAT_MAC), "VM ND entry for the kernel: {n}");

    // 3. The other way: the VM forgets, asks by broadcast (ARP) and
    // multicast (ND); meshwire answers each itself when it knows the
    // kernel's address and MAC by now (ARP/ND suppression), or carries
    // it as a batman broadcast.
    ns_exec(&vm.ns, &["ip", "neigh", "flush", "dev", "eth0"]);
    ns_exec(&vm.ns, &["ip", "-6", "neigh", "flush", "dev", "eth0"]);
    let tx_bcast = mesh_counter(&t, "tx_bcast");
    let answered = |t: &Topology| -> u64 {
        let ports = t.ctl(1, "ports");
        let p = &find(&ports, "name", "t-vm1a").expect("port t-vm1a")["policy"];
        p["arp_answered"].as_u64().unwrap() + p["nd_answered"].as_u64().unwrap()
    };
    let answered_before = answered(&t);
    for ip in [RV_BAT_IP4, RV_BAT_IP6] {
        assert!(
            retry(|| ping(false, ip, 56)),
            "VM -> kernel node {ip} failed\n{}",
            t.dump_logs()
        );
    }
    assert!(
        mesh_counter(&t, "tx_bcast") - tx_bcast + answered(&t) - answered_before >= 2,
        "the VM's ARP and NS were neither carried nor answered"
    );
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
            retry(|| ping(false, ip, size)),
            "VM -> kernel {ip} -s {size} failed\n{}",
            t.dump_logs()
        );
    }
    for (ip, size) in [(&vm.ip4, 1472), (&vm.ip6, 1400)] {
        assert!(
            retry(|| ping(true, ip, size)),
            "kernel -> VM {ip} -s {size} failed\n{}",
            t.dump_logs()
        );
    }
    // Each of those packets is two fragments. At least: our 3 requests and
    // one reply per kernel size (2) = 10 fragments from us; the kernel's
    // 4 requests and 3 replies reassembled by us.
    assert!(
        mesh_counter(&t, "frag_sent") >= frag_sent + 10,
        "meshwire did not fragment for the 1382-byte link"
    );
    assert!(
        rv.stat("frag_rx") >= frag_rx + 10,
        "kernel took too few of our fragments"
    );
    assert!(mesh_counter(&t, "frag_reassembled") >= reassembled + 7);

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

    // 5b. A table far bigger than an OGM: 400 more clients behind meshwire
    // in one burst. However the burst splits over OGM intervals, some
    // commit holds more changes than an OGM carries (37), so the kernel sees
    // the TTVN jump without the diff, asks, and gets our full table (4.8 KB)
    // in batman fragments of its 1382-byte link.
    let k_resp = rv.stat("tt_response_rx");
    let frag_sent = mesh_counter(&t, "frag_sent");
    many_clients(&vm.ns, 400);
    let count = format!("batctl tg -H | grep ' 02:00:00:02:' | grep -c {mw_orig}");
    let ok = wait_until(Duration::from_secs(30), || {
        rv.try_cmd(&count).1.trim() == "400"
    });
    assert!(
        ok,
        "the kernel never learned meshwire's 400 new clients:\n{}",
        rv.cmd("batctl s | grep tt_")
    );
    assert!(
        rv.stat("tt_response_rx") > k_resp,
        "kernel got no TT response"
    );
    assert!(mesh_counter(&t, "frag_sent") >= frag_sent + 4);

    // 6. The tables, as an operator reads them.
    let tg = rv.cmd("batctl tg -H | grep -v ' 02:00:00:02:'");
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
    // Past the 3 s TT request timeout of any earlier request.
    std::thread::sleep(Duration::from_secs(4));
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

    migrate::migrate_both_ways(&t, &rv, &vm, &mw_orig);
    vlan_meets_kernel_bridge(&t, &rv, &vm_b, &mw_orig);

    eprintln!("--- kernel node: batctl o ---\n{o}\n--- batctl tg ---\n{tg}");
    eprintln!(
        "--- meshwire ctl originators ---\n{}\n--- meshwire ctl fdb (without the 400 02:00:00:02:*) ---\n{}",
        sh(&[
            BIN,
            "ctl",
            "--socket",
            t.socket(1).to_str().unwrap(),
            "originators"
        ]),
        sh(&[BIN, "ctl", "--socket", t.socket(1).to_str().unwrap(), "fdb"])
            .lines()
            .filter(|l| !l.starts_with("02:00:00:02:"))
            .collect::<Vec<_>>()
            .join("\n")
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

/// meshwire's VLAN 10 meets the kernel's: the kernel hypervisor's VM
/// bridge br0 (over bat0, made by the migration test) turns VLAN-aware and
/// its own address moves into VLAN 10, so its frames leave bat0 tagged 10
/// (the bridge registers VID 10 with batman, as `bat0.10` would; the
/// reference VM has no 8021q module). The kernel lists meshwire's VLAN 10
/// client with VID 10 and meshwire the kernel's bridge in VLAN 10, and
/// neither side keeps asking for tables (the per-VLAN CRCs agree).
fn vlan_meets_kernel_bridge(t: &Topology, rv: &RefVm, vm_b: &Vm, mw_orig: &str) {
    rv.cmd(&format!(
        "ip link set br0 type bridge vlan_filtering 1 && bridge vlan add dev bat0 vid 10 && \
         bridge vlan add dev br0 vid 10 pvid untagged self && ip addr add {RV_VLAN_IP}/24 dev br0"
    ));
    ns_exec(
        &vm_b.ns,
        &["ip", "addr", "add", &format!("{VLAN_IP}/24"), "dev", "eth0"],
    );
    assert!(
        wait_until(Duration::from_secs(30), || ns_try(
            &vm_b.ns,
            &["ping", "-c", "1", "-W", "1", RV_VLAN_IP]
        )),
        "VLAN 10 port -> the kernel's VLAN 10 failed\n{}",
        t.dump_logs()
    );
    assert!(
        rv.try_cmd(&format!("ping -c 2 -W 2 {VLAN_IP}")).0,
        "the kernel's VLAN 10 -> VLAN 10 port"
    );
    let tg = rv.cmd("batctl tg -H");
    assert!(
        tg.lines().any(|l| l.contains(&vm_b.mac)
            && l.split_whitespace().any(|w| w == "10")
            && l.contains(mw_orig)),
        "the kernel has no VLAN 10 entry for {}:\n{tg}",
        vm_b.mac
    );
    let fdb = t.ctl(1, "fdb");
    assert!(
        fdb.as_array()
            .unwrap()
            .iter()
            .any(|e| e["mac"] == "02:00:00:00:0a:05" && e["vlan"] == 10),
        "meshwire has no VLAN 10 entry for the kernel's bridge: {fdb}"
    );
    let ok = wait_until(Duration::from_secs(10), || {
        find(&t.ctl(1, "originators"), "originator", RV_ORIG)
            .is_some_and(|o| o["tt_crc_ok"] == true)
    });
    assert!(
        ok,
        "meshwire's copy of the kernel's VLAN 10 TT has the wrong CRC"
    );
    std::thread::sleep(Duration::from_secs(4));
    let k = rv.stat("tt_request_tx");
    let m = mesh_counter(t, "tt_requests_sent");
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        (
            rv.stat("tt_request_tx"),
            mesh_counter(t, "tt_requests_sent")
        ),
        (k, m),
        "TT requests (kernel, meshwire) kept coming with two VLANs"
    );
}

/// Sends one broadcast frame from each of `n` source MACs
/// 02:00:00:02:hi:lo on the VM's eth0 (AF_PACKET), so meshwire learns `n`
/// new clients at once.
fn many_clients(ns: &str, n: u16) {
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
         s.bind(('eth0', 0))\n\
         for i in range({n}):\n\
         \x20   src = bytes([2, 0, 0, 2, i >> 8, i & 255])\n\
         \x20   s.send(b'\\xff' * 6 + src + b'\\x88\\xb5' + bytes(46))\n"
    );
    ns_exec(ns, &["python3", "-c", &script]);
}
