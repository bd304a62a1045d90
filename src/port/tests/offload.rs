//! Offloads against the real kernel: two of our TAPs in two namespaces and
//! a forwarding loop between them (super-frames read from one, segmented,
//! coalesced again and written to the other). A real TCP transfer between
//! the namespaces must complete with its data intact, with offloads on and
//! off, and the reads per MB must show what the offloads buy.

use std::io;
use std::os::fd::RawFd;
use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

use super::make_persistent;
use super::segment::{refix_checksums, super_frame, Spec};
use crate::port::testnet::{tap_in_netns, unique_name, Netns};
use crate::port::*;

/// Sends `bytes` from a seeded PRNG and prints their SHA-256.
pub(super) const CLIENT: &str = r#"
import hashlib, random, socket, sys, time
host, n = sys.argv[1], int(sys.argv[2])
data = random.Random(5).randbytes(n)
for _ in range(100):
    try:
        s = socket.create_connection((host, 5201), timeout=5); break
    except OSError:
        time.sleep(0.05)
s.settimeout(None)  # a loaded machine may stall the loop for seconds
s.sendall(data); s.shutdown(socket.SHUT_WR); s.recv(1); s.close()
print(hashlib.sha256(data).hexdigest())
"#;

/// Receives until EOF and prints the length and SHA-256.
pub(super) const SERVER: &str = r#"
import hashlib, socket, sys
l = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], 5201)); l.listen(1)
c, _ = l.accept(); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 20)
    if not b: break
    h.update(b); n += len(b)
c.close()
print(n, h.hexdigest())
"#;

/// What went through the loop.
#[derive(Debug, Default, Clone, Copy)]
struct Run {
    /// Sender side port (data arrives there from the client's kernel).
    pub a: PortCounters,
    /// Receiver side port.
    pub b: PortCounters,
    pub secs: f64,
}

fn poll2(a: RawFd, b: RawFd, ms: i32) {
    let mut p = [crate::sys::fd::pollin(a), crate::sys::fd::pollin(b)];
    let _ = crate::sys::fd::poll(&mut p, ms);
}

/// Forwards between ports `a` and `b` until `done` says so or `limit`.
/// How the loop moves frames: the batch API or the one-frame one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Batch,
    /// `recv` + `send`, as the dataplane did before the batch API.
    OneByOne,
}

fn forward(p: &mut Pair, mode: Mode, limit: Duration, mut done: impl FnMut() -> bool) {
    let (ports, a, b) = (&mut p.ports, p.a, p.b);
    let fa = ports.get(a).unwrap().dev.fd();
    let fb = ports.get(b).unwrap().dev.fd();
    let mut rx = PortRx::new();
    let mut buf = vec![0u8; max_frame_len(1500) + 1];
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && !done() {
        poll2(fa, fb, 10);
        for (from, to) in [(a, b), (b, a)] {
            if mode == Mode::OneByOne {
                for _ in 0..256 {
                    match ports.recv(from, &mut buf) {
                        Ok(Some(n)) => {
                            ports.send(to, &buf[..n]);
                        }
                        Ok(None) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("recv: {e}"),
                    }
                }
                continue;
            }
            for _ in 0..8 {
                match ports.recv_batch(from, &mut rx) {
                    Ok(_) => {
                        while let Some(f) = rx.next_frame() {
                            ports.send_gro(to, f);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("recv_batch: {e}"),
                }
            }
        }
        ports.flush();
    }
}

pub(super) fn spawn_py(ns: &Netns, script: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &ns.0, "python3", "-c", script])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

pub(super) fn finished(c: &mut Child) -> bool {
    matches!(c.try_wait(), Ok(Some(_)))
}

pub(super) fn output(c: Child) -> String {
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "python failed");
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

#[derive(Clone, Copy)]
enum Net {
    V4,
    V6,
}

/// Two namespaces, each with one of our TAPs (forwarded by the test loop).
struct Pair {
    // Declared first: the TAP fds close before the namespaces go.
    ports: Ports,
    a: PortId,
    b: PortId,
    nsa: Netns,
    nsb: Netns,
    ip_b: &'static str,
}

fn pair(offload: bool, net: Net) -> Pair {
    let base = unique_name();
    let (na, nb) = (format!("{base}a"), format!("{base}b"));
    let nsa = Netns::new(format!("{base}-nsa"));
    let nsb = Netns::new(format!("{base}-nsb"));
    let mut ports = Ports::new();
    let opts = TapOptions {
        offload,
        multi_queue: false,
    };
    let a = ports.open_with(&na, 1500, opts).expect("open a");
    let b = ports.open_with(&nb, 1500, opts).expect("open b");
    assert_eq!(ports.get(a).unwrap().dev.offloads().tso, offload);
    let (ip_a, ip_b) = match net {
        Net::V4 => ("198.19.77.1", "198.19.77.2"),
        Net::V6 => ("fd00:77::1", "fd00:77::2"),
    };
    for (ns, dev, ip) in [(&nsa, &na, ip_a), (&nsb, &nb, ip_b)] {
        let ok = Command::new("ip")
            .args(["link", "set", dev, "netns", &ns.0])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&["link", "set", dev, "up"]);
        match net {
            Net::V6 => ns.ip(&["addr", "add", &format!("{ip}/64"), "dev", dev, "nodad"]),
            Net::V4 => ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", dev]),
        }
    }
    Pair {
        ports,
        a,
        b,
        nsa,
        nsb,
        ip_b,
    }
}

/// Runs `client` in A and `server` in B while the loop forwards; returns
/// their outputs.
fn run(
    p: &mut Pair,
    mode: Mode,
    server: (&str, &[&str]),
    client: (&str, &[&str]),
) -> (String, String, f64) {
    let mut server = spawn_py(&p.nsb, server.0, server.1);
    let mut client = spawn_py(&p.nsa, client.0, client.1);
    let t0 = Instant::now();
    forward(p, mode, Duration::from_secs(240), || {
        finished(&mut client) && finished(&mut server)
    });
    let secs = t0.elapsed().as_secs_f64();
    if !finished(&mut client) {
        let _ = client.kill();
    }
    if !finished(&mut server) {
        let _ = server.kill();
    }
    (output(client), output(server), secs)
}

/// One TCP transfer of `bytes` from namespace A to B through our loop.
fn transfer(offload: bool, net: Net, bytes: usize) -> Run {
    transfer_with(offload, net, bytes, Mode::Batch)
}

fn transfer_with(offload: bool, net: Net, bytes: usize, mode: Mode) -> Run {
    let mut p = pair(offload, net);
    let n = bytes.to_string();
    let ip_b = p.ip_b;
    let (sent, got, secs) = run(&mut p, mode, (SERVER, &[ip_b]), (CLIENT, &[ip_b, &n]));
    assert_eq!(got, format!("{bytes} {sent}"), "data through the loop");
    Run {
        a: p.ports.get(p.a).unwrap().counters,
        b: p.ports.get(p.b).unwrap().counters,
        secs,
    }
}

/// Sends 20 UDP GSO buffers of 40 x 1200 bytes (UDP_SEGMENT); prints the
/// SHA-256 of every datagram's payload in order.
const UDP_CLIENT: &str = r#"
import hashlib, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_UDP, 103, 1200)  # UDP_SEGMENT
# Until the server answers: on a loaded machine it may bind late.
s.settimeout(0.2)
for _ in range(300):
    s.sendto(b"hello", (sys.argv[1], 5202))
    try:
        if s.recv(16) == b"ok":
            break
    except socket.timeout:
        pass
s.settimeout(None)
h = hashlib.sha256()
for k in range(20):
    buf = bytes((i * 7 + k) % 251 for i in range(40 * 1200))
    s.sendto(buf, (sys.argv[1], 5202)); h.update(buf)
    time.sleep(0.01)
print(h.hexdigest())
"#;

/// Answers the client's hellos (it sends only once the server is bound),
/// then receives 800 datagrams of 1200 bytes (or times out) and prints
/// count and SHA-256 of the concatenation.
const UDP_SERVER: &str = r#"
import hashlib, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((sys.argv[1], 5202)); s.settimeout(30)
h = hashlib.sha256(); n = 0
try:
    while n < 800:
        b, peer = s.recvfrom(65536)
        if b == b"hello":
            s.sendto(b"ok", peer); continue
        assert len(b) == 1200, len(b)
        h.update(b); n += 1
except socket.timeout:
    pass
print(n, h.hexdigest())
"#;

/// USO: the kernel hands over UDP_L4 super-frames (40 datagrams each); cut
/// by us, every datagram arrives with a valid checksum (the receiving
/// kernel drops bad ones) and in order.
#[test]
fn udp_gso_super_frames_are_cut_into_datagrams() {
    let mut p = pair(true, Net::V4);
    if !p.ports.get(p.a).unwrap().dev.offloads().uso {
        panic!("this kernel (>= 6.2 per the research notes) should take USO");
    }
    let ip_b = p.ip_b;
    let (sent, got, _) = run(
        &mut p,
        Mode::Batch,
        (UDP_SERVER, &[ip_b]),
        (UDP_CLIENT, &[ip_b]),
    );
    assert_eq!(got, format!("800 {sent}"));
    let a = p.ports.get(p.a).unwrap().counters;
    assert!(a.rx_gso >= 20, "{a:?}");
}

fn per_mb(n: u64, bytes: usize) -> f64 {
    n as f64 / (bytes as f64 / 1e6)
}

/// 50 MB with offloads and 20 MB without: both intact; with offloads the
/// kernel hands over super-frames (many frames per read), we write
/// coalesced ones, and reads per MB drop accordingly.
#[test]
fn tcp_transfer_through_two_taps_with_and_without_offload() {
    let on_bytes = 50_000_000;
    let on = transfer(true, Net::V4, on_bytes);
    let off_bytes = 20_000_000;
    let off = transfer(false, Net::V4, off_bytes);
    let (r_on, r_off) = (
        per_mb(on.a.rx_reads, on_bytes),
        per_mb(off.a.rx_reads, off_bytes),
    );
    eprintln!(
        "offload on: {:.1} reads/MB, {} super-frames -> {} frames, {} GRO writes, {:.2}s; \
         off: {:.1} reads/MB, {:.2}s",
        r_on, on.a.rx_gso, on.a.rx_frames, on.b.tx_gro, on.secs, r_off, off.secs
    );
    assert!(on.a.rx_gso > 100, "{:?}", on.a);
    assert!(on.b.tx_gro > 100, "{:?}", on.b);
    assert_eq!(off.a.rx_gso + off.b.tx_gro, 0);
    // ~690 full frames per MB: a plain TAP needs a read for each.
    assert!(r_off > 600.0, "{r_off}");
    assert!(r_on * 4.0 < r_off, "on {r_on} vs off {r_off}");
    for c in [on.a, on.b, off.a, off.b] {
        assert_eq!(
            c.rx_drop_bad_vnet + c.rx_drop_bad_gso + c.rx_drop_bad_headers + c.rx_drop_bad_csum,
            0,
            "{c:?}"
        );
    }
}

/// TSO6 and coalescing over IPv6. (Tagged super-frames are covered by the
/// unit tests only: this kernel has neither the 8021q module nor bridge
/// VLAN filtering to make a namespace emit them.)
#[test]
fn tcp_over_ipv6_with_offload() {
    let r = transfer(true, Net::V6, 10_000_000);
    assert!(r.a.rx_gso > 10, "{:?}", r.a);
    assert!(r.b.tx_gro > 10, "{:?}", r.b);
}

/// The one-frame API keeps working on an offload port: `recv` hands out
/// the segments of a super-frame one by one, `send` writes plain frames.
#[test]
fn one_frame_api_on_an_offload_port() {
    let r = transfer_with(true, Net::V4, 10_000_000, Mode::OneByOne);
    assert!(r.a.rx_gso > 10, "{:?}", r.a);
    assert!(r.a.rx_frames > 10 * r.a.rx_gso, "{:?}", r.a);
    assert_eq!(r.b.tx_gro, 0);
}

/// A persistent TAP an operator made without IFF_VNET_HDR: attaching with
/// offloads switches the header on (the flags follow the opener), and
/// frames cross both ways.
#[test]
fn persistent_plain_tap_attached_with_offload() {
    let name = unique_name();
    make_persistent(&name, true);
    let mut ports = Ports::new();
    let r = ports.open(&name, 1500);
    let id = match r {
        Ok(id) => id,
        Err(e) => {
            make_persistent(&name, false);
            panic!("attach: {e}");
        }
    };
    let off = ports.get(id).unwrap().dev.offloads();
    let info = ports.info();
    drop(ports);
    make_persistent(&name, false);
    assert!(off.vnet_hdr && off.csum && off.tso, "{off:?}");
    assert_eq!(info[0].offloads, off);
}

/// Prints (length, ethertype) of the first N frames the kernel side of
/// `dev` receives that are not IPv6 chatter.
const SNIFFER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0)); s.settimeout(5)
print("ready", flush=True)
n = int(sys.argv[2]); out = []
while len(out) < n:
    f, a = s.recvfrom(70000)
    if a[2] == socket.PACKET_OUTGOING or f[12:14] == b"\x86\xdd":
        continue
    out.append("%d:%s" % (len(f), f[12:14].hex()))
print(" ".join(out))
"#;

/// What `send_gro` hands the kernel: three in-order segments become one
/// packet (the kernel sees one 3-segment skb), also with a second flow's
/// segments interleaved (coalesced side by side), and a frame of another
/// kind after them is written after them, never before.
#[test]
fn send_gro_writes_one_packet_and_keeps_order() {
    let (read, _) = super_frame(&Spec::tcp4(3000, 1000));
    let mut rx = PortRx::with_reads(1);
    let mut c = PortCounters::default();
    assert_eq!(rx.load(&read, true, &mut c, 1518), 3);
    let mut segs = Vec::new();
    rx.for_each_frame(|f| segs.push(f.to_vec()));
    // Flow 2: another source port; interleave the two.
    let flow2: Vec<Vec<u8>> = segs
        .iter()
        .map(|f| {
            let mut f = f.clone();
            f[35] ^= 1;
            refix_checksums(&mut f);
            f
        })
        .collect();
    let segs: Vec<Vec<u8>> = segs
        .into_iter()
        .zip(flow2)
        .flat_map(|(a, b)| [a, b])
        .collect();

    let (name, ns, mut ports, id) = tap_in_netns(1500);
    ns.ip(&["link", "set", &name, "up"]);
    let mut sniffer = Command::new("ip")
        .args(["netns", "exec", &ns.0, "python3", "-c", SNIFFER, &name, "3"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    use std::io::BufRead;
    let mut out = std::io::BufReader::new(sniffer.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");

    for s in &segs {
        assert!(ports.send_gro(id, s));
    }
    // Nothing written yet: all six are held.
    assert_eq!(ports.get(id).unwrap().counters.tx_writes, 0);
    let mut arp = vec![0u8; 60];
    arp[..6].fill(0xff);
    arp[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert!(ports.send_gro(id, &arp));
    assert_eq!(
        ports.flush(),
        0,
        "the ARP frame already flushed the TCP one"
    );
    let c = ports.get(id).unwrap().counters;
    assert_eq!((c.tx_writes, c.tx_gro, c.tx_frames), (3, 2, 7), "{c:?}");

    line.clear();
    out.read_line(&mut line).unwrap();
    let _ = sniffer.wait();
    let tcp_len = 66 + 3000;
    assert_eq!(
        line.trim(),
        format!("{tcp_len}:0800 {tcp_len}:0800 60:0806")
    );
}

/// More flows than slots: the oldest held flow is written to make room,
/// nothing is lost, and flows that stay within the pool still coalesce.
#[test]
fn gro_pool_evicts_the_oldest_flow() {
    let (read, _) = super_frame(&Spec::tcp4(2000, 1000));
    let mut rx = PortRx::with_reads(1);
    let mut c = PortCounters::default();
    rx.load(&read, true, &mut c, 1518);
    let mut base = Vec::new();
    rx.for_each_frame(|f| base.push(f.to_vec()));
    let flows = crate::port::tx::GRO_SLOTS + 4;
    let flow = |k: usize, i: usize| {
        let mut f = base[i].clone();
        f[35] = k as u8; // source port low byte
        refix_checksums(&mut f);
        f
    };
    let (name, ns, mut ports, id) = tap_in_netns(1500);
    ns.ip(&["link", "set", &name, "up"]);
    // Flows 0..GRO_SLOTS take every slot; the rest evict 0..4 (one segment
    // each); the second segments of flows 4.. merge.
    for k in 0..flows {
        assert!(ports.send_gro(id, &flow(k, 0)));
    }
    for k in 4..flows {
        assert!(ports.send_gro(id, &flow(k, 1)));
    }
    ports.flush();
    let c = ports.get(id).unwrap().counters;
    assert_eq!(c.tx_frames, (2 * flows - 4) as u64, "{c:?}");
    // Flows 4.. all end with two segments; 0..4 went out alone.
    assert_eq!(c.tx_gro, (flows - 4) as u64, "{c:?}");
    assert_eq!(c.tx_writes, flows as u64, "{c:?}");
    assert_eq!(c.tx_drop_busy + c.tx_errors, 0);
}
