//! Port offload costs.
//!
//! - `segment`: one 64 KB TCP super-frame (as a TAP with TSO hands it
//!   over) cut into 1500- and 1378-MTU frames with full checksums, through
//!   `PortRx` (in place). `load` alone is the 64 KB copy that replaces the
//!   kernel's read in this bench; subtract it for the segmentation cost.
//! - `gro`: the same frames coalesced back into one super-frame (checksum
//!   verification of each segment included).
//! - two-TAP loop (root; not criterion): iperf3 from one namespace to
//!   another through two of our TAPs and a forwarding loop on this thread
//!   (recv_batch -> send_gro -> flush), offloads on vs off: Gbit/s and
//!   reads per MB. `MESHWIRE_BENCH_NO_NETNS=1` skips it.
//!
//! Run: `cargo bench --bench port`.

use std::hint::black_box;
use std::io;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};

use meshwire::port::{max_frame_len, PortCounters, PortRx, Ports, TapOptions};
use meshwire::sys::fd;
use meshwire::wire::vnet::{self, gso};
use meshwire::wire::{checksum, ipv4};

const PAYLOAD: usize = 65_000;

/// Virtio header + Ethernet + IPv4 + TCP (timestamps) + payload, with the
/// TCP checksum field holding the pseudo-header sum, as the kernel sends.
fn super_frame(mss: u16) -> Vec<u8> {
    let (src, dst) = (Ipv4Addr::new(198, 19, 9, 1), Ipv4Addr::new(198, 19, 9, 2));
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let mut ip = [0u8; 20];
    let mut p = ipv4::Packet::new_unchecked(&mut ip[..]);
    p.set_version_and_header_len(20);
    p.set_total_len((20 + 32 + PAYLOAD) as u16);
    p.set_unfragmented(true);
    p.set_ttl(64);
    p.set_protocol(6);
    p.set_src_addr(src);
    p.set_dst_addr(dst);
    p.fill_checksum();
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 1]);
    f.extend_from_slice(&[8 << 4, 0x18, 1, 0xf5, 0, 0, 0, 0]);
    f.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
    let ps = checksum::pseudo_header_v4(src, dst, 6, (32 + PAYLOAD) as u32);
    f[34 + 16..34 + 18].copy_from_slice(&ps.to_be_bytes());
    f.extend((0..PAYLOAD).map(|i| (i as u8).wrapping_mul(31)));
    let mut h = [0u8; vnet::HEADER_LEN];
    let mut v = vnet::Header::new_unchecked(&mut h[..]);
    v.set_flags(vnet::F_NEEDS_CSUM);
    v.set_gso_type(gso::TCPV4);
    v.set_hdr_len(66);
    v.set_gso_size(mss);
    v.set_csum_start(34);
    v.set_csum_offset(16);
    let mut read = h.to_vec();
    read.extend_from_slice(&f);
    read
}

fn segment(c: &mut Criterion) {
    let mut g = c.benchmark_group("segment");
    g.throughput(Throughput::Bytes(PAYLOAD as u64));
    let mut rx = PortRx::with_reads(1);
    let mut cnt = PortCounters::default();
    for (mtu, mss) in [(1500u16, 1448u16), (1378, 1326)] {
        let read = super_frame(mss);
        let max = max_frame_len(mtu);
        g.bench_function(format!("load_64k_mtu{mtu}"), |b| {
            b.iter(|| {
                rx.clear();
                black_box(rx.load(black_box(&read), true, &mut cnt, max))
            })
        });
        g.bench_function(format!("load_and_segment_64k_mtu{mtu}"), |b| {
            b.iter(|| {
                rx.clear();
                rx.load(black_box(&read), true, &mut cnt, max);
                let mut n = 0;
                rx.for_each_frame(|f| n += f.len());
                black_box(n)
            })
        });
    }
    g.finish();
}

fn gro(c: &mut Criterion) {
    let mut g = c.benchmark_group("gro");
    g.throughput(Throughput::Bytes(PAYLOAD as u64));
    let mut rx = PortRx::with_reads(1);
    let mut cnt = PortCounters::default();
    rx.load(&super_frame(1448), true, &mut cnt, 1518);
    let mut frames = Vec::new();
    rx.for_each_frame(|f| frames.push(f.to_vec()));
    let mut gro = meshwire::port::gro::Gro::new();
    g.bench_function("coalesce_45_segments", |b| {
        b.iter(|| {
            for f in &frames {
                assert!(gro.push(black_box(f)));
            }
            black_box(gro.take().len())
        })
    });
    g.finish();
}

criterion_group!(benches, segment, gro);

fn ip(ns: &str, args: &[&str]) -> bool {
    Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// iperf3 for `secs` through our loop; returns (Gbit/s, counters of the
/// sending side's port, of the receiving side's port).
fn two_tap_loop(offload: bool, secs: u32) -> io::Result<(f64, PortCounters, PortCounters)> {
    let tag = format!("mwb{}{}", std::process::id() % 10_000, u8::from(offload));
    let (nsa, nsb) = (format!("{tag}-a"), format!("{tag}-b"));
    let (ta, tb) = (format!("{tag}a"), format!("{tag}b"));
    let cleanup = || {
        for ns in [&nsa, &nsb] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    };
    let r = (|| {
        let mut ports = Ports::new();
        let opts = TapOptions {
            offload,
            multi_queue: false,
        };
        let a = ports.open_with(&ta, 1500, opts)?;
        let b = ports.open_with(&tb, 1500, opts)?;
        for (ns, dev, addr) in [(&nsa, &ta, "198.19.88.1/24"), (&nsb, &tb, "198.19.88.2/24")] {
            let ok = Command::new("ip")
                .args(["netns", "add", ns])
                .status()?
                .success()
                && Command::new("ip")
                    .args(["link", "set", dev, "netns", ns])
                    .status()?
                    .success()
                && ip(ns, &["link", "set", "lo", "up"])
                && ip(ns, &["link", "set", dev, "up"])
                && ip(ns, &["addr", "add", addr, "dev", dev]);
            if !ok {
                return Err(io::Error::other("netns setup"));
            }
        }
        let mut server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &nsb,
                "iperf3",
                "-s",
                "-1",
                "-B",
                "198.19.88.2",
            ])
            .stdout(Stdio::null())
            .spawn()?;
        std::thread::sleep(Duration::from_millis(300));
        let client = Command::new("ip")
            .args(["netns", "exec", &nsa, "iperf3", "-c", "198.19.88.2", "-J"])
            .args(["-t", &secs.to_string()])
            .stdout(Stdio::piped())
            .spawn()?;
        let fa = ports.get(a).map(|p| p.dev.fd()).unwrap_or(-1);
        let fb = ports.get(b).map(|p| p.dev.fd()).unwrap_or(-1);
        let mut rx = PortRx::new();
        let mut client = Some(client);
        let deadline = Instant::now() + Duration::from_secs(u64::from(secs) + 20);
        while Instant::now() < deadline {
            if client
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
            {
                break;
            }
            let _ = fd::poll(&mut [fd::pollin(fa), fd::pollin(fb)], 10);
            for (from, to) in [(a, b), (b, a)] {
                for _ in 0..8 {
                    match ports.recv_batch(from, &mut rx) {
                        Ok(_) => {
                            while let Some(f) = rx.next_frame() {
                                ports.send_gro(to, f);
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
            ports.flush();
        }
        let out = client.take().map(|c| c.wait_with_output()).transpose()?;
        let _ = server.kill();
        let _ = server.wait();
        let json: serde_json::Value = out
            .and_then(|o| serde_json::from_slice(&o.stdout).ok())
            .ok_or_else(|| io::Error::other("no iperf3 result"))?;
        let bps = json["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .ok_or_else(|| io::Error::other("iperf3 result without sum_received"))?;
        let ca = ports.get(a).map(|p| p.counters).unwrap_or_default();
        let cb = ports.get(b).map(|p| p.counters).unwrap_or_default();
        Ok((bps / 1e9, ca, cb))
    })();
    cleanup();
    r
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::var_os("MESHWIRE_BENCH_NO_NETNS").is_some() {
        return;
    }
    for offload in [true, false] {
        match two_tap_loop(offload, 3) {
            Ok((gbps, a, b)) => {
                let mb = a.rx_bytes as f64 / 1e6;
                println!(
                    "two-TAP loop, offload {}: {gbps:.2} Gbit/s; {:.1} reads/MB, {:.1} frames/read \
                     ({} super-frames), {:.1} writes/MB ({} coalesced)",
                    if offload { "on " } else { "off" },
                    a.rx_reads as f64 / mb,
                    a.rx_frames as f64 / a.rx_reads.max(1) as f64,
                    a.rx_gso,
                    b.tx_writes as f64 / mb,
                    b.tx_gro,
                );
            }
            Err(e) => println!("two-TAP loop, offload {offload}: not run ({e})"),
        }
    }
}
