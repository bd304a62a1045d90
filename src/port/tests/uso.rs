//! USO against the real kernel: datagrams written with `send_gro` into a
//! TAP whose netdev sits in a fresh namespace (the VM), where a UDP socket
//! must receive exactly what was sent, in order, while the port shows
//! fewer writes than datagrams. The kernel's own UDP segmentation is what
//! cuts our super-frames there, so this checks our headers against it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};

use super::gro_udp::{dgram, payload, Dg};
use super::segment::{super_frame, Spec};
use crate::port::testnet::{unique_name, Netns};
use crate::port::*;

/// Binds UDP 5001 on argv[1], says "ready", then prints "sport:hex" of
/// each datagram until argv[2] came (and a short while more, to catch
/// extra ones) or nothing comes for 3 s.
const RECEIVER: &str = r#"
import socket, sys
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 1 << 23)  # SO_RCVBUFFORCE
s.bind((sys.argv[1], 5001)); s.settimeout(3)
print("ready", flush=True)
n = int(sys.argv[2]); out = []
try:
    while True:
        b, a = s.recvfrom(65536)
        out.append("%d:%s" % (a[1], b.hex()))
        if len(out) >= n:
            s.settimeout(0.3)
except socket.timeout:
    pass
print(" ".join(out))
"#;

/// The VM side: our TAP's netdev in its own namespace with the address
/// the crafted datagrams go to, and the MAC they are sent to.
struct Vm {
    // Declared first: the TAP fd closes before the namespace goes.
    ports: Ports,
    id: PortId,
    ns: Netns,
    ip: &'static str,
}

fn vm(offload: bool, v4: bool) -> Vm {
    let name = unique_name();
    let ns = Netns::new(format!("{name}-ns"));
    let mut ports = Ports::new();
    let opts = TapOptions {
        offload,
        multi_queue: false,
    };
    let id = ports.open_with(&name, 1500, opts).expect("open TAP");
    assert!(ports.set_udp_coalescing(id, true));
    let ok = Command::new("ip")
        .args(["link", "set", &name, "netns", &ns.0])
        .status()
        .unwrap()
        .success();
    assert!(ok, "ip link set {name} netns {}", ns.0);
    ns.ip(&["link", "set", "lo", "up"]);
    ns.ip(&["link", "set", &name, "address", "02:00:00:00:00:02"]);
    ns.ip(&["link", "set", &name, "up"]);
    let ip = if v4 {
        ns.ip(&["addr", "add", "198.19.8.2/24", "dev", &name]);
        "198.19.8.2"
    } else {
        ns.ip(&["addr", "add", "fd00:0:0:8::2/64", "dev", &name, "nodad"]);
        "fd00:0:0:8::2"
    };
    Vm { ports, id, ns, ip }
}

struct Receiver {
    child: Child,
    out: BufReader<ChildStdout>,
}

fn receiver(v: &Vm, expect: usize) -> Receiver {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &v.ns.0, "python3", "-c", RECEIVER])
        .args([v.ip, &expect.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    Receiver { child, out }
}

impl Receiver {
    /// (source port, payload) of every datagram, in arrival order.
    fn datagrams(mut self) -> Vec<(u16, Vec<u8>)> {
        let mut s = String::new();
        self.out.read_to_string(&mut s).unwrap();
        assert!(self.child.wait().unwrap().success(), "receiver failed");
        s.split_whitespace()
            .map(|d| {
                let (port, hex) = d.split_once(':').unwrap();
                let bytes = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                    .collect();
                (port.parse().unwrap(), bytes)
            })
            .collect()
    }
}

/// The namespace's `Udp:` counters from /proc/net/snmp.
fn udp_snmp(ns: &Netns) -> HashMap<String, u64> {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.0, "cat", "/proc/net/snmp"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().unwrap(), udp.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .skip(1)
        .map(|(n, v)| (n.to_owned(), v.parse().unwrap()))
        .collect()
}

/// `n` datagrams of one flow, `size` bytes each but the last (`last`).
fn flow(d: Dg, n: usize, size: usize, last: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|k| {
            let d = Dg {
                id: d.id.wrapping_add(k as u16),
                ..d
            };
            let len = if k + 1 == n { last } else { size };
            dgram(&d, &payload(len, k + usize::from(d.sport)))
        })
        .collect()
}

/// Source port and payload of an untagged frame built by `dgram`, read
/// by hand: it may be one the coalescer refuses.
fn port_and_payload(f: &[u8]) -> (u16, Vec<u8>) {
    let l4 = if f[12..14] == [0x08, 0x00] {
        14 + usize::from(f[14] & 0x0f) * 4
    } else {
        14 + 40
    };
    let len = usize::from(u16::from_be_bytes([f[l4 + 4], f[l4 + 5]]));
    (
        u16::from_be_bytes([f[l4], f[l4 + 1]]),
        f[l4 + 8..l4 + len].to_vec(),
    )
}

fn send_all(v: &mut Vm, frames: &[Vec<u8>]) -> PortCounters {
    for f in frames {
        assert!(v.ports.send_gro(v.id, f));
    }
    v.ports.flush();
    v.ports.get(v.id).unwrap().counters
}

fn expect_in_order(got: &[(u16, Vec<u8>)], frames: &[&Vec<u8>]) {
    let want: Vec<(u16, Vec<u8>)> = frames.iter().map(|f| port_and_payload(f)).collect();
    assert_eq!(got.len(), want.len(), "datagrams received");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "datagram {i}");
    }
}

/// The benchmark's shape: 64-byte frames (18-byte payload), 200 of them
/// with a short last one: 4 writes instead of 200, and the socket gets all
/// 200 intact and in order.
#[test]
fn small_datagrams_become_few_writes_and_arrive_intact() {
    let mut v = vm(true, true);
    assert!(
        v.ports.get(v.id).unwrap().dev.offloads().uso,
        "kernel 6.x takes USO"
    );
    let frames = flow(Dg::v4(), 200, 18, 5);
    assert_eq!(frames[0].len(), 60);
    let r = receiver(&v, 200);
    let c = send_all(&mut v, &frames);
    eprintln!("200 datagrams of 18 bytes: {c:?}");
    assert_eq!((c.tx_frames, c.tx_writes), (200, 4), "{c:?}");
    assert_eq!((c.tx_gro, c.tx_uso), (4, 4), "{c:?}");
    assert_eq!(c.tx_drop_busy + c.tx_errors, 0);
    let got = r.datagrams();
    expect_in_order(&got, &frames.iter().collect::<Vec<_>>());
    let snmp = udp_snmp(&v.ns);
    assert_eq!(snmp["InErrors"] + snmp["InCsumErrors"], 0, "{snmp:?}");
}

/// Full-size and mid-size datagrams over IPv4 and IPv6, DF set (IDs free):
/// the 64 KB limit cuts super-frames (44 x 1472) before the 64-segment one.
#[test]
fn large_datagrams_over_ipv4_and_ipv6() {
    for (v4, size, n) in [(true, 1472, 100), (false, 1452, 100), (false, 300, 130)] {
        let mut v = vm(true, v4);
        let d = Dg {
            v4,
            df: true,
            id: 0,
            ..Dg::v4()
        };
        let frames = flow(d, n, size, size);
        let r = receiver(&v, n);
        let c = send_all(&mut v, &frames);
        let hdr = if v4 { 28 } else { 48 };
        let per = gro_udp::MAX_SEGMENTS.min((65_535 - hdr) / size);
        assert_eq!(c.tx_writes as usize, n.div_ceil(per), "{c:?}");
        assert_eq!(c.tx_frames as usize, n);
        expect_in_order(&r.datagrams(), &frames.iter().collect::<Vec<_>>());
    }
}

/// Two flows interleaved, each with a short last datagram, then a datagram
/// without checksum (legal on IPv4, never merged) in the middle: the held
/// flows are written before it, each flow's order is kept, nothing is
/// lost or added.
#[test]
fn interleaved_flows_and_a_checksumless_datagram_keep_order() {
    let mut v = vm(true, true);
    let a = flow(Dg::v4(), 30, 300, 100);
    let b = flow(
        Dg {
            sport: 40001,
            id: 0x100,
            ..Dg::v4()
        },
        30,
        300,
        120,
    );
    let mut z = dgram(
        &Dg {
            sport: 40002,
            ..Dg::v4()
        },
        &payload(50, 9),
    );
    z[34 + 6..34 + 8].fill(0);
    assert!(gro_udp::classify(&z).is_none());
    // A0 B0 A1 B1 ... A9 B9, Z, A10 B10 ... A29 B29.
    let mut order: Vec<&Vec<u8>> = Vec::new();
    for k in 0..30 {
        if k == 10 {
            order.push(&z);
        }
        order.push(&a[k]);
        order.push(&b[k]);
    }
    let r = receiver(&v, 61);
    for f in &order {
        assert!(v.ports.send_gro(v.id, f));
    }
    v.ports.flush();
    let c = v.ports.get(v.id).unwrap().counters;
    // A0-9, B0-9, Z, A10-29, B10-29.
    assert_eq!((c.tx_writes, c.tx_gro, c.tx_frames), (5, 4, 61), "{c:?}");
    // What the writes delivered: held flows go out flow by flow.
    let mut want: Vec<&Vec<u8>> = Vec::new();
    want.extend(&a[..10]);
    want.extend(&b[..10]);
    want.push(&z);
    want.extend(&a[10..]);
    want.extend(&b[10..]);
    expect_in_order(&r.datagrams(), &want);
}

/// A datagram whose checksum is wrong is never merged (the kernel would
/// trust NEEDS_CSUM and deliver it): it is written alone, between the
/// super-frames before and after it, and the receiving kernel drops it as a
/// checksum error; every other datagram arrives.
#[test]
fn bad_checksum_is_written_alone_and_dropped_by_the_receiver() {
    let mut v = vm(true, true);
    let mut frames = flow(Dg::v4(), 20, 200, 200);
    frames[9][60] ^= 0x55;
    assert!(gro_udp::classify(&frames[9]).is_none());
    let before = udp_snmp(&v.ns);
    let r = receiver(&v, 19);
    let c = send_all(&mut v, &frames);
    assert_eq!((c.tx_writes, c.tx_gro, c.tx_frames), (3, 2, 20), "{c:?}");
    let good: Vec<&Vec<u8>> = frames
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 9)
        .map(|(_, f)| f)
        .collect();
    expect_in_order(&r.datagrams(), &good);
    let after = udp_snmp(&v.ns);
    assert_eq!(
        after["InCsumErrors"] - before["InCsumErrors"],
        1,
        "{after:?}"
    );
}

/// Without offloads nothing changes: one write per datagram.
#[test]
fn without_offloads_every_datagram_is_one_write() {
    let mut v = vm(false, true);
    assert!(!v.ports.get(v.id).unwrap().dev.offloads().uso);
    let frames = flow(Dg::v4(), 20, 100, 100);
    let r = receiver(&v, 20);
    let c = send_all(&mut v, &frames);
    assert_eq!((c.tx_writes, c.tx_gro, c.tx_frames), (20, 0, 20), "{c:?}");
    expect_in_order(&r.datagrams(), &frames.iter().collect::<Vec<_>>());
}

#[test]
fn coalescing_off_by_default_leaves_one_write_per_datagram() {
    let mut v = vm(true, true);
    assert!(v.ports.get(v.id).unwrap().dev.offloads().uso);
    // What a port gets unless the config asks: no UDP super-frames.
    assert!(v.ports.set_udp_coalescing(v.id, false));
    let frames = flow(Dg::v4(), 20, 100, 100);
    let r = receiver(&v, 20);
    let c = send_all(&mut v, &frames);
    assert_eq!((c.tx_writes, c.tx_uso, c.tx_frames), (20, 0, 20), "{c:?}");
    expect_in_order(&r.datagrams(), &frames.iter().collect::<Vec<_>>());
}

/// The namespace as a router between two of our TAPs: `a` with offloads
/// (we write super-frames into it), `b` plain (no checksum or GSO offload,
/// so the kernel must cut what it forwards there and compute every
/// checksum itself, from the partial sum we wrote).
struct Router {
    ports: Ports,
    a: PortId,
    b: PortId,
    _ns: Netns,
}

fn router(v4: bool) -> Router {
    let base = unique_name();
    let ns = Netns::new(format!("{base}-ns"));
    let (na, nb) = (format!("{base}a"), format!("{base}b"));
    let mut ports = Ports::new();
    let a = ports.open(&na, 1500).expect("open a");
    assert!(ports.set_udp_coalescing(a, true));
    let plain = TapOptions {
        offload: false,
        multi_queue: false,
    };
    let b = ports.open_with(&nb, 1500, plain).expect("open b");
    for dev in [&na, &nb] {
        let ok = Command::new("ip")
            .args(["link", "set", dev, "netns", &ns.0])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    ns.ip(&["link", "set", &na, "address", "02:00:00:00:00:02"]);
    for dev in [&na, &nb] {
        ns.ip(&["link", "set", dev, "up"]);
    }
    if v4 {
        ns.exec(&["sysctl", "-w", "net.ipv4.ip_forward=1"]);
        ns.ip(&["addr", "add", "198.19.8.2/24", "dev", &na]);
        ns.ip(&["addr", "add", "198.19.9.2/24", "dev", &nb]);
    } else {
        ns.exec(&["sysctl", "-w", "net.ipv6.conf.all.forwarding=1"]);
        ns.ip(&["addr", "add", "fd00:0:0:8::2/64", "dev", &na, "nodad"]);
        ns.ip(&["addr", "add", "fd00:0:0:9::2/64", "dev", &nb, "nodad"]);
    }
    let (dst, mac) = if v4 {
        ("198.19.9.1", "02:00:00:00:00:09")
    } else {
        ("fd00:0:0:9::1", "02:00:00:00:00:09")
    };
    ns.ip(&[
        "neigh",
        "add",
        dst,
        "lladdr",
        mac,
        "dev",
        &nb,
        "nud",
        "permanent",
    ]);
    Router {
        ports,
        a,
        b,
        _ns: ns,
    }
}

/// Every UDP frame to port 5001 that comes out of plain port `id` within
/// 3 s, until `n` came.
fn read_udp(ports: &mut Ports, id: PortId, n: usize) -> Vec<Vec<u8>> {
    let fd = ports.get(id).unwrap().dev.fd();
    let mut buf = vec![0u8; max_frame_len(1500) + 1];
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while got.len() < n && std::time::Instant::now() < deadline {
        let _ = crate::sys::fd::poll(&mut [crate::sys::fd::pollin(fd)], 50);
        while let Ok(r) = ports.recv(id, &mut buf) {
            let Some(len) = r else { continue };
            let f = &buf[..len];
            let l4 = match f[12..14] {
                [0x08, 0x00] if f.get(23) == Some(&17) => 14 + usize::from(f[14] & 0x0f) * 4,
                [0x86, 0xdd] if f.get(20) == Some(&17) => 54,
                _ => continue,
            };
            if f.get(l4 + 2..l4 + 4) == Some(&5001u16.to_be_bytes()[..]) {
                got.push(f.to_vec());
            }
        }
    }
    got
}

/// The real check of our partial checksum and of the IDs: the namespace
/// forwards our super-frames to a port without offloads, so the kernel
/// cuts them and completes every checksum from the sum we wrote. What
/// comes out must be the datagrams that went in, each with a correct IP
/// and UDP checksum (verified by `classify`), the same IPv4 ID, one hop
/// less.
#[test]
fn kernel_cuts_our_super_frames_into_datagrams_with_valid_checksums() {
    for v4 in [true, false] {
        let mut r = router(v4);
        let d = Dg {
            v4,
            far: true,
            ..Dg::v4()
        };
        let frames = flow(d, 100, 700, 333);
        for f in &frames {
            assert!(r.ports.send_gro(r.a, f));
        }
        r.ports.flush();
        let c = r.ports.get(r.a).unwrap().counters;
        assert_eq!((c.tx_writes, c.tx_uso, c.tx_frames), (2, 2, 100), "{c:?}");
        let out = read_udp(&mut r.ports, r.b, frames.len());
        assert_eq!(out.len(), frames.len(), "v4 {v4}");
        for (i, (o, f)) in out.iter().zip(&frames).enumerate() {
            let s = gro_udp::classify(o).unwrap_or_else(|| panic!("datagram {i} invalid"));
            let (_, want) = port_and_payload(f);
            assert_eq!(s.payload(o), &want[..], "datagram {i}");
            if v4 {
                assert_eq!(o[18..20], f[18..20], "IPv4 ID of datagram {i}");
                assert_eq!(o[22], f[22] - 1, "TTL");
            } else {
                assert_eq!(o[21], f[21] - 1, "hop limit");
            }
        }
    }
}

/// TCP and UDP flows to one port share the pool: coalesced side by side,
/// and a slot that held one protocol is reused for the other (its buffer
/// handed over) when the next batch starts with the other one first.
#[test]
fn tcp_and_udp_flows_share_the_pool() {
    let (read, _) = super_frame(&Spec::tcp4(3000, 1000));
    let mut rx = PortRx::with_reads(1);
    let mut c = PortCounters::default();
    assert_eq!(rx.load(&read, true, &mut c, 1518), 3);
    let mut tcp = Vec::new();
    rx.for_each_frame(|f| tcp.push(f.to_vec()));
    let udp = flow(Dg::v4(), 6, 200, 200);
    let mut v = vm(true, true);
    let r = receiver(&v, 6);
    // Batch 1: T0 U0 T1 U1 T2 U2 -> slot 0 TCP, slot 1 UDP.
    for k in 0..3 {
        assert!(v.ports.send_gro(v.id, &tcp[k]));
        assert!(v.ports.send_gro(v.id, &udp[k]));
    }
    assert_eq!(v.ports.flush(), 2);
    // Batch 2: U3 U4 U5 first, then TCP again: both slots change protocol.
    for f in &udp[3..] {
        assert!(v.ports.send_gro(v.id, f));
    }
    for f in &tcp {
        assert!(v.ports.send_gro(v.id, f));
    }
    assert_eq!(v.ports.flush(), 2);
    let c = v.ports.get(v.id).unwrap().counters;
    assert_eq!((c.tx_writes, c.tx_gro, c.tx_uso), (4, 4, 2), "{c:?}");
    assert_eq!(c.tx_frames, 12);
    expect_in_order(&r.datagrams(), &udp.iter().collect::<Vec<_>>());
}
