//! Issue 3: VMs keep MTU 1500 over a 1500-byte underlay. Unicast frames
//! that do not fit a link travel as batman-adv fragments; broadcast frames
//! as inner-IP fragments inside the tunnel (what a kernel gretap does);
//! the underlay itself never fragments.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

fn underlay_fragments(t: &Topology) -> u64 {
    // IP fragments created by the hypervisors' own stacks (the underlay),
    // IPv4 and IPv6.
    t.hvs
        .iter()
        .map(|h| {
            let snmp = ns_exec(&h.ns, &["cat", "/proc/net/snmp"]);
            let mut lines = snmp.lines().filter(|l| l.starts_with("Ip:"));
            let v4 = match (lines.next(), lines.next()) {
                (Some(names), Some(vals)) => names
                    .split_whitespace()
                    .zip(vals.split_whitespace())
                    .find(|(n, _)| *n == "FragCreates")
                    .and_then(|(_, v)| v.parse::<u64>().ok())
                    .unwrap_or(0),
                _ => 0,
            };
            let snmp6 = ns_exec(&h.ns, &["cat", "/proc/net/snmp6"]);
            let v6 = snmp6
                .lines()
                .filter_map(|l| l.split_once(char::is_whitespace))
                .find(|(n, _)| *n == "Ip6FragCreates")
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            v4 + v6
        })
        .sum()
}

#[test]
fn vm_mtu_1500_over_a_1500_byte_underlay() {
    mtu_1500("mwU", false);
}

/// The same over an IPv6 underlay with IPv6 inner headers: the broadcasts'
/// inner fragments carry an IPv6 fragment header.
#[test]
fn vm_mtu_1500_over_a_1500_byte_ipv6_underlay() {
    mtu_1500("mwV", true);
}

fn mtu_1500(prefix: &str, v6: bool) {
    let opts = Opts {
        port_mtu: Some(1500),
        v6,
        ..Opts::default()
    };
    let layout: &[&[Attach]] = &[&[Attach::TapNic], &[Attach::TapNic], &[Attach::TapNic]];
    let mut t = Topology::with_opts(prefix, layout, 300, opts);
    t.start_all();
    for vm in &t.vms {
        ns_exec(&vm.ns, &["ip", "link", "set", "dev", "eth0", "mtu", "1500"]);
    }
    assert!(t.wait_routes(Duration::from_secs(60)));
    let ip2 = t.vm("vm2a").ip4.clone();
    assert!(t.ping_until("vm1a", &ip2, Duration::from_secs(20)));
    let frags_before = underlay_fragments(&t);

    // Full-size DF pings, both families.
    assert!(
        t.ping("vm1a", &ip2, 5, &["-M", "do", "-s", "1472"]),
        "1500-byte DF ping failed\n{}",
        t.dump_logs()
    );
    let ip6 = t.vm("vm3a").ip6.clone();
    assert!(
        t.ping("vm1a", &ip6, 5, &["-M", "do", "-s", "1452"]),
        "1500-byte IPv6 ping"
    );

    // TCP with full-size segments.
    let server_ns = t.vm("vm2a").ns.clone();
    let mut server = Command::new("ip")
        .args(["netns", "exec", &server_ns, "iperf3", "-s", "-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let out = ns_exec(&t.vm("vm1a").ns, &["iperf3", "-c", &ip2, "-t", "3", "-J"]);
    let _ = server.kill();
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["end"]["sum_received"]["bytes"].as_f64().unwrap_or(0.0) > 1e6,
        "{out}"
    );
    eprintln!(
        "iperf3 vm1a -> vm2a, VM MTU 1500 over a 1500-byte underlay (v6 {v6}): {:.1} Mbit/s, {} retransmits",
        v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            / 1e6,
        v["end"]["sum_sent"]["retransmits"]
    );
    let before = tunnel_sums(&t);

    // A 1472-byte UDP broadcast arrives whole at every other VM.
    for vm in ["vm2a", "vm3a"] {
        let ns = t.vm(vm).ns.clone();
        let dir = t.dir.clone();
        let got = dir.join(format!("bcast-{vm}.bin"));
        let script = format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',9999))\ns.settimeout(10)\nd,_=s.recvfrom(65535)\nopen('{}','wb').write(d)\n",
            got.display()
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, "python3", "-c", &script])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let send = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_BROADCAST,1)\ns.sendto(bytes(range(256))*5+bytes(192),('198.19.1.255',9999))\n";
        ns_exec(&t.vm("vm1a").ns, &["python3", "-c", send]);
        let st = child.wait_with_output().unwrap();
        assert!(
            st.status.success(),
            "{vm}: no broadcast within 10 s\n{}",
            t.dump_logs()
        );
        let data = std::fs::read(&got).unwrap();
        assert_eq!(data.len(), 1472, "{vm} got {} bytes", data.len());
        assert_eq!(&data[..256], &(0..=255u8).collect::<Vec<_>>()[..]);
    }

    assert_eq!(
        underlay_fragments(&t),
        frags_before,
        "the underlay fragmented IP packets"
    );
    // The broadcasts crossed as inner IP fragments, reassembled whole, and
    // nothing was refused for size or dropped in reassembly.
    let after = tunnel_sums(&t);
    let grew = |k: &str| after[k] - before[k];
    eprintln!("tunnel counters during the broadcasts: {:?}", {
        let mut d: Vec<_> = COUNTERS.iter().map(|k| (*k, grew(k))).collect();
        d.retain(|(_, v)| *v > 0);
        d
    });
    assert!(grew("tx_fragmented_frames") >= 2, "{after:?}");
    assert!(grew("rx_reassembled") >= 2, "{after:?}");
    assert_eq!(after["tx_too_big"], 0, "{after:?}");
    for k in [
        "reasm_timeouts",
        "reasm_overlaps",
        "reasm_malformed",
        "reasm_oversize",
        "reasm_evicted",
    ] {
        assert_eq!(after[k], 0, "{k}: {after:?}");
    }
}

const COUNTERS: &[&str] = &[
    "tx_fragmented_frames",
    "tx_inner_fragments",
    "tx_too_big",
    "rx_inner_fragments",
    "rx_reassembled",
    "reasm_timeouts",
    "reasm_duplicates",
    "reasm_overlaps",
    "reasm_malformed",
    "reasm_oversize",
    "reasm_evicted",
];

/// The tunnel counters above, summed over every hypervisor.
fn tunnel_sums(t: &Topology) -> std::collections::BTreeMap<&'static str, u64> {
    let mut sums = std::collections::BTreeMap::new();
    for hv in 1..=t.hvs.len() {
        let stats = t.ctl(hv, "stats");
        for k in COUNTERS {
            let v = stats["tunnel"][*k]
                .as_u64()
                .unwrap_or_else(|| panic!("no tunnel.{k} in {stats}"));
            *sums.entry(*k).or_insert(0) += v;
        }
    }
    sums
}

/// Prints the MSS the server side of one TCP connection sends with
/// (TCP_MAXSEG), after the client's SYN crossed the mesh.
const MSS_SERVER: &str = r#"
import socket, sys
l = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], 5301)); l.listen(1); l.settimeout(30)
c, _ = l.accept()
print(c.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG))
c.close()
"#;

const MSS_CLIENT: &str = r#"
import socket, sys, time
for _ in range(200):
    try:
        s = socket.create_connection((sys.argv[1], 5301), timeout=2); break
    except OSError:
        time.sleep(0.05)
s.close()
"#;

/// Issue 10: with the default config (port MTU 1500, no `mtu` key) a TCP
/// SYN crossing a port has its MSS clamped, so the far side sends segments
/// that cross every link whole: no batman fragments for TCP data.
#[test]
fn default_mtu_1500_and_tcp_mss_clamped_to_the_link() {
    let layout: &[&[Attach]] = &[&[Attach::TapNic], &[Attach::TapNic]];
    let mut t = Topology::new("mwS", layout, 300);
    t.start_all();
    let (a, b) = (t.vm("vm1a").clone(), t.vm("vm2a").clone());
    assert!(
        t.ping_until("vm1a", &b.ip4, Duration::from_secs(45)),
        "no route\n{}",
        t.dump_logs()
    );
    // A DF 1472-byte ping: a full 1500-byte packet crosses.
    assert!(t.ping("vm1a", &b.ip4, 2, &["-M", "do", "-s", "1472"]));
    for (ip_a, ip_b, clamp) in [(&a.ip4, &b.ip4, 1378 - 40), (&a.ip6, &b.ip6, 1378 - 60)] {
        let server = Command::new("ip")
            .args(["netns", "exec", &b.ns, "python3", "-c", MSS_SERVER, ip_b])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let ok = Command::new("ip")
            .args(["netns", "exec", &a.ns, "python3", "-c", MSS_CLIENT, ip_b])
            .status()
            .unwrap()
            .success();
        assert!(ok, "connect {ip_a} -> {ip_b}");
        let out = server.wait_with_output().unwrap();
        let mss: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        // Unclamped it would be 1448 / 1428 (1500 minus headers and the
        // timestamp option); the clamp is an upper bound (options take more).
        assert!(
            mss > 0 && mss <= clamp,
            "server MSS {mss} over {ip_b}, clamp {clamp}"
        );
    }
    let clamped = t.ctl(1, "stats")["hooks"]["mss_clamped"]
        .as_u64()
        .unwrap_or(0)
        + t.ctl(2, "stats")["hooks"]["mss_clamped"]
            .as_u64()
            .unwrap_or(0);
    assert!(clamped >= 2, "no SYN was clamped");
}
