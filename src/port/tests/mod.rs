//! TAP tests against the real kernel (they need root and /dev/net/tun).
//!
//! Every device is named `mwt-<pid>-<n>` and removed at the end; the only
//! addressed traffic runs in a namespace the test creates and deletes.

mod attach;
mod attach_ring;
mod attach_tx;
mod gro_udp;
mod offload;
mod segment;
mod uso;

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::*;
use crate::port::testnet::{tap_in_netns, unique_name};
use crate::sys;
use crate::wire::arp;
use crate::wire::ethernet::{ethertype, Frame};
use crate::wire::MacAddr;

/// IEEE "local experimental" ethertype: nothing in the kernel answers it.
const TEST_ETHERTYPE: u16 = 0x88b5;

fn sys(name: &str, file: &str) -> Option<String> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/{file}"))
        .ok()
        .map(|s| s.trim().to_owned())
}

fn exists(name: &str) -> bool {
    Path::new(&format!("/sys/class/net/{name}")).exists()
}

/// Waits (bounded) for a device to appear or disappear.
fn wait_exists(name: &str, want: bool) -> bool {
    for _ in 0..100 {
        if exists(name) == want {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Frame `seq` of `len` bytes (at least 18): 02:00:00:00:00:01 to
/// 02:00:00:00:00:02 (as `gro_udp::dgram`), the local-experimental
/// EtherType (nothing in a namespace answers it), the sequence number
/// first, then bytes that follow from it, so a frame that arrives cut,
/// mixed up or out of order shows.
fn seq_frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&TEST_ETHERTYPE.to_be_bytes());
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[18..].iter_mut().enumerate() {
        *b = (seq as usize + i) as u8;
    }
    f
}

fn test_frame(len: usize, marker: u8) -> Vec<u8> {
    let mut b = vec![marker; len];
    let mut f = Frame::new_unchecked(&mut b[..]);
    f.set_dst_addr("02:00:00:00:fa:02".parse().unwrap());
    f.set_src_addr("02:00:00:00:fa:01".parse().unwrap());
    f.set_ethertype(TEST_ETHERTYPE);
    b
}

/// A raw AF_PACKET socket bound to `ifindex`: the kernel side of the TAP.
fn packet_socket(ifindex: u32) -> OwnedFd {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    let sock = sys::socket::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto))
        .expect("AF_PACKET socket");
    sys::socket::bind_packet(&sock, ifindex, proto).expect("bind");
    sock
}

fn poll_in(fd: RawFd, ms: i32) -> bool {
    sys::fd::poll(&mut [sys::fd::pollin(fd)], ms).is_ok_and(|n| n > 0)
}

/// Receives frames on `fd` until `want` matches one, for at most 3 s.
fn recv_matching(fd: &OwnedFd, want: impl Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        if !poll_in(fd.as_raw_fd(), 100) {
            continue;
        }
        if let Ok(n) = sys::fd::recv(fd, &mut buf, libc::MSG_DONTWAIT) {
            if want(&buf[..n]) {
                return Some(buf[..n].to_vec());
            }
        }
    }
    None
}

/// Reads from a port until `want` matches, ignoring the kernel's own IPv6
/// chatter (router solicitations, MLD) on a fresh link; bounded to 3 s.
fn port_recv_matching(
    ports: &mut Ports,
    id: PortId,
    want: impl Fn(&[u8]) -> bool,
) -> Option<Vec<u8>> {
    let fd = ports.get(id).unwrap().dev.fd();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        if !poll_in(fd, 100) {
            continue;
        }
        if let Ok(Some(n)) = ports.recv(id, &mut buf) {
            if want(&buf[..n]) {
                return Some(buf[..n].to_vec());
            }
        }
    }
    None
}

fn send_raw(fd: &OwnedFd, frame: &[u8]) -> io::Result<usize> {
    sys::fd::send(fd, frame, 0)
}

fn set_mtu(name: &str, mtu: u16) {
    let ok = Command::new("ip")
        .args(["link", "set", name, "mtu", &mtu.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn open_creates_configured_device_and_close_removes_it() {
    let name = unique_name();
    let tap = Tap::open(&name, 1400).expect("open");
    assert!(tap.created());
    assert_eq!(tap.name(), name);
    assert!(exists(&name));
    assert_eq!(sys(&name, "mtu").as_deref(), Some("1400"));
    // tun_flags: IFF_TAP | IFF_NO_PI, and not persistent (IFF_PERSIST 0x800).
    assert_eq!(sys(&name, "tun_flags").as_deref(), Some("0x1002"));
    let flags = u32::from_str_radix(sys(&name, "flags").unwrap().trim_start_matches("0x"), 16);
    assert_eq!(flags.unwrap() & libc::IFF_UP as u32, libc::IFF_UP as u32);
    assert_eq!(
        sys(&name, "ifindex").and_then(|s| s.parse().ok()),
        tap.ifindex()
    );
    drop(tap);
    assert!(wait_exists(&name, false), "{name} survived its fd");
}

#[test]
fn rejects_bad_names() {
    for n in ["", "a/b", "0123456789abcdef", "has space"] {
        let e = Tap::open(n, 1400).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{n:?}");
    }
}

#[test]
fn frames_cross_in_both_directions_byte_identical() {
    let name = unique_name();
    let mut ports = Ports::new();
    let id = ports.open(&name, 1500).expect("open");
    let ifindex = ports.get(id).unwrap().dev.ifindex().unwrap();
    let sock = packet_socket(ifindex);

    // Ours -> kernel: a full-size frame (MTU + header).
    let out = test_frame(1514, 0xa5);
    assert!(ports.send(id, &out));
    let seen = recv_matching(&sock, |f| f == &out[..]);
    assert!(seen.is_some(), "kernel never saw our frame");

    // Kernel -> ours.
    let inj = test_frame(60, 0x5a);
    assert_eq!(send_raw(&sock, &inj).unwrap(), inj.len());
    let got = port_recv_matching(&mut ports, id, |f| {
        Frame::new_unchecked(f).ethertype() == TEST_ETHERTYPE
    });
    assert_eq!(got.as_deref(), Some(&inj[..]));

    let c = ports.get(id).unwrap().counters;
    assert_eq!(c.tx_frames, 1);
    assert_eq!(c.tx_bytes, 1514);
    assert!(c.rx_frames >= 1 && c.rx_bytes >= 60);
    let info = ports.info();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].name, name);
    assert_eq!(info[0].ifindex, Some(ifindex));
    let json = serde_json::to_string(&info).unwrap();
    assert!(json.contains("\"tx_frames\":1"), "{json}");
    drop(ports.remove(id));
    assert!(wait_exists(&name, false));
}

#[test]
fn size_limits_drop_and_count() {
    let name = unique_name();
    let mut ports = Ports::new();
    let id = ports.open(&name, 1400).expect("open");
    let ifindex = ports.get(id).unwrap().dev.ifindex().unwrap();
    let sock = packet_socket(ifindex);

    assert!(!ports.send(id, &[0u8; 13]));
    assert!(!ports.send(id, &test_frame(max_frame_len(1400) + 1, 1)));
    assert!(ports.send(id, &test_frame(max_frame_len(1400), 1)));
    let c = ports.get(id).unwrap().counters;
    assert_eq!(
        (c.tx_drop_short, c.tx_drop_oversize, c.tx_frames),
        (1, 1, 1)
    );

    // An operator raises the kernel-side MTU behind our back: frames beyond
    // what we configured must be dropped and counted, not passed on.
    set_mtu(&name, 1600);
    let big = test_frame(1600 + 14, 0x77);
    assert_eq!(send_raw(&sock, &big).unwrap(), big.len());
    let ok = test_frame(100, 0x78);
    assert_eq!(send_raw(&sock, &ok).unwrap(), ok.len());
    let got = port_recv_matching(&mut ports, id, |f| f == &ok[..]);
    assert!(got.is_some());
    let c = ports.get(id).unwrap().counters;
    assert_eq!(c.rx_drop_oversize, 1);

    // A buffer too small for a frame is also an oversize drop, never a cut frame.
    assert_eq!(send_raw(&sock, &ok).unwrap(), ok.len());
    let mut small = [0u8; 50];
    let deadline = Instant::now() + Duration::from_secs(3);
    let fd = ports.get(id).unwrap().dev.fd();
    while ports.get(id).unwrap().counters.rx_drop_oversize < 2 && Instant::now() < deadline {
        if poll_in(fd, 100) {
            let _ = ports.recv(id, &mut small);
        }
    }
    assert_eq!(ports.get(id).unwrap().counters.rx_drop_oversize, 2);

    assert!(!ports.send(id + 1, &ok));
    assert_eq!(ports.counters().unknown_port, 1);
    assert_eq!(
        ports.open(&name, 1400).unwrap_err().kind(),
        io::ErrorKind::AlreadyExists
    );
}

/// Creates a persistent TAP the way an operator's `ip tuntap add` would.
pub(super) fn make_persistent(name: &str, persist: bool) {
    make_persistent_kind(name, libc::IFF_TAP, persist)
}

fn make_persistent_kind(name: &str, kind: libc::c_int, persist: bool) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .unwrap();
    let mut ifr = sys::ifreq::IfReq::new(name);
    ifr.set_short((kind | libc::IFF_NO_PI) as i16);
    // A queue closed a moment ago is released asynchronously: EBUSY for a
    // while on a loaded machine.
    let mut r = Ok(());
    for _ in 0..100 {
        r = sys::ifreq::ifreq(&f, sys::ifreq::IfReqOp::TunSetIff, &mut ifr);
        if !matches!(&r, Err(e) if e.raw_os_error() == Some(libc::EBUSY)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    r.expect("TUNSETIFF");
    sys::tun::set_persist(&f, persist).expect("TUNSETPERSIST");
}

#[test]
fn preexisting_persistent_tap_is_attached_and_left_in_place() {
    let name = unique_name();
    make_persistent(&name, true);
    assert!(exists(&name));
    let tap = Tap::open(&name, 1380).expect("attach");
    assert!(!tap.created());
    assert_eq!(sys(&name, "mtu").as_deref(), Some("1380"));
    // Attached for real: a frame we write is seen by the kernel.
    let sock = packet_socket(tap.ifindex().unwrap());
    let f = test_frame(64, 0x33);
    assert_eq!(tap.write(&f).unwrap(), 64);
    assert!(recv_matching(&sock, |g| g == &f[..]).is_some());
    drop(tap);
    std::thread::sleep(Duration::from_millis(50));
    let survived = exists(&name);
    make_persistent(&name, false); // cleanup: the fd closes, the device goes
    assert!(wait_exists(&name, false));
    assert!(survived, "a persistent TAP we did not create was removed");
}

#[test]
fn existing_tun_of_that_name_is_refused_and_left_alone() {
    let name = unique_name();
    make_persistent_kind(&name, libc::IFF_TUN, true);
    let err = Tap::open(&name, 1400).unwrap_err();
    let survived = exists(&name);
    make_persistent_kind(&name, libc::IFF_TUN, false);
    assert!(wait_exists(&name, false));
    assert!(err.to_string().contains("cannot be attached"), "{err}");
    assert!(survived);
}

/// The topology of a test VM: our fd stays in the root namespace while the
/// netdev lives in the VM's. An ARP request we write must be answered.
#[test]
fn tap_moved_to_another_namespace_keeps_working() {
    let (name, ns, mut ports, id) = tap_in_netns(1400);
    assert!(!exists(&name), "moved away from our namespace");
    ns.ip(&["addr", "add", "198.19.250.2/24", "dev", &name]);
    ns.ip(&["link", "set", &name, "up"]);

    arp_round_trip(
        &mut ports,
        id,
        Ipv4Addr::new(198, 19, 250, 1),
        Ipv4Addr::new(198, 19, 250, 2),
    );

    drop(ports.remove(id));
    // The device lived in the namespace; with our fd closed it is gone there.
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        !Command::new("ip")
            .args(["-n", &ns.0, "link", "show", &name])
            .stderr(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    });
    assert!(gone);
}

/// Writes an ARP request for `target` from a made-up host `me_ip` and
/// expects the kernel side to answer it through the port.
fn arp_round_trip(ports: &mut Ports, id: PortId, me_ip: Ipv4Addr, target: Ipv4Addr) {
    let me: MacAddr = "02:00:00:00:fa:01".parse().unwrap();
    let mut req = vec![0u8; 42];
    let mut f = Frame::new_unchecked(&mut req[..]);
    f.set_dst_addr(MacAddr::BROADCAST);
    f.set_src_addr(me);
    f.set_ethertype(ethertype::ARP);
    let mut a = arp::Packet::new_unchecked(&mut req[14..]);
    a.set_ethernet_ipv4();
    a.set_operation(arp::Operation::Request);
    a.set_sha(me);
    a.set_spa(me_ip);
    a.set_tpa(target);
    assert!(ports.send(id, &req));

    let reply = port_recv_matching(ports, id, |b| {
        let f = Frame::new_unchecked(b);
        f.ethertype() == ethertype::ARP
            && arp::Packet::new_checked(f.payload())
                .is_ok_and(|a| a.operation() == arp::Operation::Reply && a.spa() == target)
    })
    .expect("no ARP reply from the kernel side");
    let f = Frame::new_checked(&reply[..]).unwrap();
    assert_eq!(f.dst_addr(), me);
    let a = arp::Packet::new_checked(f.payload()).unwrap();
    assert_eq!((a.tha(), a.tpa()), (me, me_ip));
    assert_eq!(a.sha(), f.src_addr());
}

/// The drop-in replacement topology: the TAP enslaved to a Linux bridge
/// (here in its own namespace, with an address on the bridge itself).
#[test]
fn tap_enslaved_to_a_bridge_keeps_working() {
    let (name, ns, mut ports, id) = tap_in_netns(1400);
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&["link", "set", &name, "master", "br0", "up"]);
    ns.ip(&["addr", "add", "198.19.251.2/24", "dev", "br0"]);
    ns.ip(&["link", "set", "br0", "up"]);
    arp_round_trip(
        &mut ports,
        id,
        Ipv4Addr::new(198, 19, 251, 1),
        Ipv4Addr::new(198, 19, 251, 2),
    );
    drop(ports.remove(id));
}

/// An IPv4/UDP frame of flow `sport` carrying `seq`: what the kernel's
/// flow hash (and so its choice of TAP queue) looks at.
fn udp_flow_frame(sport: u16, seq: u8) -> Vec<u8> {
    let mut b = vec![0u8; 14 + 20 + 8 + 4];
    b[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0xfa, 0x02]);
    b[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0xfa, 0x01]);
    b[12..14].copy_from_slice(&ethertype::IPV4.to_be_bytes());
    let ip = &mut b[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&36u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[198, 19, 250, 1]);
    ip[16..20].copy_from_slice(&[198, 19, 250, 2]);
    let udp = &mut b[34..42];
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&9u16.to_be_bytes());
    udp[4..6].copy_from_slice(&12u16.to_be_bytes());
    b[42..46].copy_from_slice(&[0x6d, 0x77, 0x71, seq]);
    b
}

/// Our test flows' (source port, sequence) out of a frame, if it is one.
fn flow_of(f: &[u8]) -> Option<(u16, u8)> {
    (f.len() >= 46 && f[23] == 17 && f[42..45] == [0x6d, 0x77, 0x71])
        .then(|| (u16::from_be_bytes([f[34], f[35]]), f[45]))
}

/// Drains every frame a set of ports has on `id` (bounded: 3 s idle-free).
fn drain_flows(ports: &mut Ports, id: PortId) -> Vec<(u16, u8)> {
    let fd = ports.get(id).unwrap().dev.fd();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    while poll_in(fd, 300) {
        while let Ok(Some(n)) = ports.recv(id, &mut buf) {
            got.extend(flow_of(&buf[..n]));
        }
    }
    got
}

#[test]
fn multi_queue_tap_spreads_flows_and_keeps_each_flow_on_one_queue_in_order() {
    let name = unique_name();
    let mut first = Ports::new();
    let opts = TapOptions {
        offload: false,
        multi_queue: true,
    };
    let id = first.open_with(&name, 1500, opts).expect("open");
    assert!(first.get(id).unwrap().dev.multi_queue());
    // A second worker's set: same id, its own queue, polled.
    let mut second = first.replica().expect("second queue");
    assert!(second.get(id).unwrap().polled);
    assert_eq!(sys(&name, "tun_flags").as_deref(), Some("0x1102"));
    let ifindex = first.get(id).unwrap().dev.ifindex().unwrap();
    let sock = packet_socket(ifindex);

    const FLOWS: u16 = 32;
    const ROUNDS: u8 = 4;
    for seq in 0..ROUNDS {
        for flow in 0..FLOWS {
            let f = udp_flow_frame(20000 + flow, seq);
            assert_eq!(send_raw(&sock, &f).unwrap(), f.len());
        }
    }
    let a = drain_flows(&mut first, id);
    let b = drain_flows(&mut second, id);
    assert_eq!(a.len() + b.len(), usize::from(FLOWS) * usize::from(ROUNDS));
    // Both queues carry flows (32 flows all hashed to one queue: 2^-31),
    // every flow stays on one queue, and arrives there in order.
    assert!(!a.is_empty() && !b.is_empty(), "{} / {}", a.len(), b.len());
    for flow in 0..FLOWS {
        let sport = 20000 + flow;
        let on_a: Vec<u8> = a.iter().filter(|f| f.0 == sport).map(|f| f.1).collect();
        let on_b: Vec<u8> = b.iter().filter(|f| f.0 == sport).map(|f| f.1).collect();
        assert!(
            on_a.is_empty() || on_b.is_empty(),
            "flow {sport} on both queues"
        );
        let seqs = if on_a.is_empty() { on_b } else { on_a };
        assert_eq!(seqs, (0..ROUNDS).collect::<Vec<_>>(), "flow {sport}");
    }

    // Frames written through either queue reach the kernel side.
    let out = test_frame(200, 0x77);
    assert!(second.send(id, &out));
    assert!(recv_matching(&sock, |f| f == &out[..]).is_some());

    // The device lives until its last queue closes.
    drop(first.remove(id));
    std::thread::sleep(Duration::from_millis(50));
    assert!(exists(&name), "gone with a queue still open");
    drop(second.remove(id));
    assert!(wait_exists(&name, false));
}

#[test]
fn single_queue_tap_gives_further_workers_a_write_only_handle() {
    let name = unique_name();
    let mut first = Ports::new();
    let id = first.open(&name, 1500).expect("open");
    assert!(!first.get(id).unwrap().dev.multi_queue());
    let mut second = first.replica().expect("replica");
    assert!(!second.get(id).unwrap().polled);
    let ifindex = first.get(id).unwrap().dev.ifindex().unwrap();
    let sock = packet_socket(ifindex);
    let out = test_frame(120, 0x33);
    assert!(second.send(id, &out));
    assert!(recv_matching(&sock, |f| f == &out[..]).is_some());
    drop(second);
    drop(first.remove(id));
    assert!(wait_exists(&name, false));
}
