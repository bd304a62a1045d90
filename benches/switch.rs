//! Switch benchmarks (issue 5): the FDB with 100k entries, and the whole
//! per-frame switch path for the cases the dataplane sees.
//!
//! Run: `cargo bench --bench switch`. Kept short (about 2 s per case):
//! these are for regressions and orders of magnitude, not for papers.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use meshwire::switch::announce::build_gratuitous_arp;
use meshwire::switch::{Decision, Switch, SwitchConfig};
use meshwire::wire::ethernet::{ethertype, Frame};
use meshwire::wire::MacAddr;

/// Entries in the table for every case.
const ENTRIES: u32 = 100_000;
/// Local clients (4 ports x 1000): the rest are remote.
const LOCAL_PORTS: u32 = 4;
const PER_PORT: u32 = 1000;
const ORIGINATORS: u32 = 64;
/// Distinct frames each case cycles through (a power of two).
const RING: usize = 4096;

fn client(i: u32) -> MacAddr {
    let b = i.to_be_bytes();
    MacAddr([0x02, 0x10, b[0], b[1], b[2], b[3]])
}

fn originator(i: u32) -> MacAddr {
    MacAddr([0x02, 0x99, 0, 0, 0, (i % ORIGINATORS) as u8])
}

/// A 64-byte IPv4-typed frame (the switch reads only the header).
fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    let mut f = Frame::new_unchecked(&mut b[..]);
    f.set_dst_addr(dst);
    f.set_src_addr(src);
    f.set_ethertype(ethertype::IPV4);
    b
}

/// Spreads `i` over 0..n in a cache-unfriendly order (multiplicative hash).
fn scatter(i: usize, n: u32) -> u32 {
    ((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32 % n
}

/// A switch holding `ENTRIES` clients: the first LOCAL_PORTS * PER_PORT
/// behind local ports, the rest at remote originators (as from TT).
fn filled(now: Instant) -> Switch {
    let mut cfg = SwitchConfig::default();
    cfg.fdb.max_entries = ENTRIES as usize;
    let mut sw = Switch::new(cfg);
    let local = LOCAL_PORTS * PER_PORT;
    for i in 0..local {
        let f = frame(MacAddr::BROADCAST, client(i));
        sw.from_port(now, i % LOCAL_PORTS, &f);
    }
    for i in local..ENTRIES {
        sw.learn_from_tt(now, client(i), 0, originator(i));
    }
    assert_eq!(sw.fdb_len(), ENTRIES as usize);
    sw
}

fn fdb_lookup(c: &mut Criterion) {
    let now = Instant::now();
    let sw = filled(now);
    let mut g = c.benchmark_group("fdb_100k");
    g.throughput(Throughput::Elements(1));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.sample_size(20);
    let mut i = 0usize;
    g.bench_function("lookup_hit", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let e = sw.lookup(now, client(scatter(i, ENTRIES)), 0);
            black_box(e.is_some())
        })
    });
    g.bench_function("lookup_miss", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let e = sw.lookup(now, client(ENTRIES + scatter(i, ENTRIES)), 0);
            black_box(e.is_some())
        })
    });
    g.finish();
}

/// Frames with the port they enter by.
type Ring = Vec<(u32, Vec<u8>)>;

/// Frames from local clients on their own port, to `dst(i)`.
fn ring(dst: impl Fn(usize) -> MacAddr) -> Ring {
    (0..RING)
        .map(|i| {
            let s = scatter(i, LOCAL_PORTS * PER_PORT);
            (s % LOCAL_PORTS, frame(dst(i), client(s)))
        })
        .collect()
}

fn per_frame(c: &mut Criterion) {
    let now = Instant::now();
    let mut sw = filled(now);
    let mut g = c.benchmark_group("switch_from_port_100k");
    g.throughput(Throughput::Elements(1));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.sample_size(20);
    let local = LOCAL_PORTS * PER_PORT;
    let cases: [(&str, Ring); 4] = [
        (
            "known_unicast_remote",
            ring(|i| client(local + scatter(i + 7, ENTRIES - local))),
        ),
        (
            "known_unicast_local",
            ring(|i| client(scatter(i + 7, local))),
        ),
        ("unknown_unicast", ring(|i| client(ENTRIES + i as u32))),
        ("broadcast", ring(|_| MacAddr::BROADCAST)),
    ];
    for (name, frames) in &cases {
        let mut i = 0usize;
        g.bench_function(*name, |b| {
            b.iter(|| {
                i = i.wrapping_add(1);
                let (port, f) = &frames[i & (RING - 1)];
                let (d, l) = sw.from_port(now, *port, f);
                black_box((matches!(d, Decision::Drop(_)), l.is_some()))
            })
        });
    }
    // An announcement (the detector parses the ARP) from a known client.
    let garps: Ring = (0..RING)
        .map(|i| {
            let s = scatter(i, local);
            let mut b = Vec::new();
            build_gratuitous_arp(&mut b, client(s), Ipv4Addr::new(198, 19, 9, 9), None);
            (s % LOCAL_PORTS, b)
        })
        .collect();
    let mut i = 0usize;
    g.bench_function("gratuitous_arp", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let (port, f) = &garps[i & (RING - 1)];
            black_box(sw.from_port(now, *port, f).1.is_some())
        })
    });
    g.finish();

    // The mesh side: a unicast for a local client, and a broadcast that
    // refreshes a remote one.
    let mut g = c.benchmark_group("switch_from_mesh_100k");
    g.throughput(Throughput::Elements(1));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.sample_size(20);
    let to_local: Vec<Vec<u8>> = (0..RING)
        .map(|i| frame(client(scatter(i, local)), client(local + 1 + i as u32)))
        .collect();
    let mut i = 0usize;
    g.bench_function("unicast_to_local", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(sw.from_mesh(now, &to_local[i & (RING - 1)], None))
        })
    });
    let bcasts: Vec<(MacAddr, Vec<u8>)> = (0..RING)
        .map(|i| {
            let s = local + scatter(i, ENTRIES - local);
            (originator(s), frame(MacAddr::BROADCAST, client(s)))
        })
        .collect();
    g.bench_function("broadcast_learn", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let (o, f) = &bcasts[i & (RING - 1)];
            black_box(sw.from_mesh(now, f, Some(*o)))
        })
    });
    // A new MAC into the full table: one eviction each (issue 11: this was
    // a scan of the whole table, 0.76 ms).
    let mut n = 0u32;
    g.bench_function("new_mac_full_table", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let f = frame(MacAddr::BROADCAST, client(ENTRIES + n));
            black_box(sw.from_mesh(now, &f, Some(originator(n))))
        })
    });
    g.finish();
}

/// The port policy's cost per frame at ingress (issue 11): a VM port with
/// its addresses (spoof checks, guards, ARP/ND budget), an uplink (guards
/// off, per-source budget), and a VM port in a VLAN (a tagged copy).
fn policy(c: &mut Criterion) {
    use meshwire::bridge::hooks::Admit;
    use meshwire::bridge::{Hooks, PortPolicy};
    let now = Instant::now();
    let me = client(1);
    let ip = Ipv4Addr::new(198, 19, 1, 5);
    let mut f = frame(client(2), me);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&50u16.to_be_bytes());
    f[23] = 17;
    f[26..30].copy_from_slice(&ip.octets());
    let vm = PortPolicy {
        ipv4: vec![ip],
        ..PortPolicy::vm(me)
    };
    let cases = [
        ("vm_port_udp", vm.clone()),
        ("uplink_udp", PortPolicy::default()),
        (
            "vm_port_vlan_udp",
            PortPolicy {
                vlan: Some(10),
                ..vm
            },
        ),
    ];
    let mut g = c.benchmark_group("policy_ingress");
    g.throughput(Throughput::Elements(1));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    g.sample_size(20);
    for (name, p) in cases {
        let mut h = Hooks::default();
        h.set_policy(0, p);
        g.bench_function(name, |b| {
            b.iter(|| match h.port_ingress(now, 0, black_box(&f)) {
                Admit::Rewritten(c) => h.done_with(c),
                Admit::Pass => {}
                Admit::Drop => panic!("dropped"),
            })
        });
    }
    g.finish();
}

/// The TCP MSS clamp's cost: the header walk every frame crossing a port
/// pays (a TCP data segment, the common case), and a SYN's rewrite.
fn mss_clamp(c: &mut Criterion) {
    use meshwire::wire::mss;
    let mut seg = vec![0u8; 1514];
    seg[12..14].copy_from_slice(&[0x08, 0x00]);
    seg[14] = 0x45;
    seg[16..18].copy_from_slice(&1500u16.to_be_bytes());
    seg[22] = 64;
    seg[23] = 6;
    seg[34 + 12] = 0x80; // data offset 8 words: 12 bytes of options
    seg[34 + 13] = 0x10; // ACK
    let mut syn = seg.clone();
    syn[16..18].copy_from_slice(&44u16.to_be_bytes());
    syn.truncate(14 + 44);
    syn[34 + 12] = 0x60;
    syn[34 + 13] = 0x02; // SYN
    syn[54..58].copy_from_slice(&[2, 4, 0x05, 0xb4]);
    let mut g = c.benchmark_group("mss_clamp");
    g.throughput(Throughput::Elements(1));
    g.bench_function("data_segment_walk", |b| {
        b.iter(|| mss::needs_clamp(std::hint::black_box(&seg), 1338, 1318))
    });
    g.bench_function("syn_rewrite", |b| {
        b.iter(|| {
            let mut f = syn.clone();
            mss::clamp(std::hint::black_box(&mut f), 1338, 1318)
        })
    });
    g.finish();
}

criterion_group!(benches, policy, fdb_lookup, per_frame, mss_clamp);
criterion_main!(benches);
