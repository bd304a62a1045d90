//! Storm control end to end: an ARP flood from a VM port and a random-MAC
//! flood from a bridge uplink, while two good VMs ping each other. The
//! mesh carries at most the configured ARP rate, the other node's FDB
//! stays bounded (per originator), and the good VMs lose nothing (counted
//! pings, no timing).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshwire::wire::arp::Operation;
use meshwire::wire::MacAddr;

use crate::common::raw::{Capture, RawSock};
use crate::common::*;
use crate::policy::{eth, mac};

const ARP_RATE: u64 = 20;

fn arp_request(src: MacAddr, spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut p = [0u8; meshwire::wire::arp::PACKET_LEN];
    meshwire::wire::arp::Repr {
        operation: Operation::Request,
        sha: src,
        spa: spa.into(),
        tha: MacAddr::ZERO,
        tpa: tpa.into(),
    }
    .emit(&mut meshwire::wire::arp::Packet::new_unchecked(&mut p[..]));
    eth(MacAddr::BROADCAST, src, 0x0806, &p)
}

#[test]
fn arp_and_random_mac_floods_are_held_while_good_vms_talk() {
    let opts = Opts {
        vm_policy: true,
        ..Opts::default()
    };
    let mut t = Topology::with_opts(
        "pstorm",
        &[
            &[Attach::TapNic, Attach::TapNic, Attach::Bridge],
            &[Attach::TapNic],
        ],
        500,
        opts,
    );
    t.port_config
        .push(("t-vm1a".into(), format!("arp_nd_rate = {ARP_RATE}\n")));
    // The uplink floods without a budget: the far node's per-originator
    // cap is what must hold.
    t.port_config
        .push(("uplink".into(), "broadcast_rate = 0\n".into()));
    t.start_all();
    assert!(t.wait_routes(Duration::from_secs(30)), "{}", t.dump_logs());
    let (bad, good, bridged, remote) = (
        t.vm("vm1a").clone(),
        t.vm("vm1b").clone(),
        t.vm("vm1c").clone(),
        t.vm("vm2a").clone(),
    );
    assert!(t.ping_until("vm1b", &remote.ip4, Duration::from_secs(20)));
    let bm = mac(&bad.mac);
    let arps_seen = Capture::start(&remote.ns, "eth0", move |f: &[u8]| {
        f.len() >= 42 && f[12..14] == [8, 6] && f[22..28] == bm.0
    });
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let (stop, bad_ns, br_ns) = (Arc::clone(&stop), bad.ns.clone(), bridged.ns.clone());
        let spa: [u8; 4] = bad.ip4.parse::<std::net::Ipv4Addr>().unwrap().octets();
        std::thread::spawn(move || {
            let (a, r) = (
                RawSock::open(&bad_ns, "eth0"),
                RawSock::open(&br_ns, "eth0"),
            );
            let (mut arps, mut macs) = (0u64, 0u32);
            while !stop.load(Ordering::Relaxed) {
                for i in 0..500u32 {
                    let tpa = [198, 19, 2, (i % 250) as u8];
                    arps += u64::from(a.send(&arp_request(bm, spa, tpa)));
                    let b = macs.to_be_bytes();
                    let src = MacAddr([0x02, 0xaa, b[0], b[1], b[2], b[3]]);
                    if r.send(&eth(MacAddr::BROADCAST, src, 0x88b5, &[0u8; 46])) {
                        macs += 1;
                    }
                }
                // Bounded: about 10k frames/s of each kind, 500 times the
                // ARP budget, without making the flooder itself the CPU
                // hog that starves a 2-core machine's dataplane.
                std::thread::sleep(Duration::from_millis(50));
            }
            (arps, macs)
        })
    };
    let started = Instant::now();
    // 300 pings 10 ms apart between the good VMs, through the floods.
    let out = ns_exec(
        &good.ns,
        &[
            "ping",
            "-n",
            "-q",
            "-c",
            "300",
            "-i",
            "0.01",
            "-W",
            "3",
            &remote.ip4,
        ],
    );
    // Keep flooding until the far FDB reached its cap (every source is
    // new, so it gets there unless the cap fails), looking every second.
    let cap = 8192;
    let deadline = Instant::now() + Duration::from_secs(90);
    while fdb_at(&t, 2, &t.originator_of(1)) < cap && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
    }
    stop.store(true, Ordering::Relaxed);
    let (arps, macs) = flood.join().unwrap();
    let seen = arps_seen.finish(Duration::from_millis(500)).len() as u64;
    let secs = started.elapsed().as_secs() + 1;
    let received: u32 = out
        .split(", ")
        .find_map(|p| {
            p.strip_suffix(" received")
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no ping summary: {out}"));
    let far = fdb_at(&t, 2, &t.originator_of(1));
    eprintln!(
        "floods: {arps} ARP sent, {seen} arrived in {secs} s; {macs} random MACs, hv2 holds {far}; pings {received}/300"
    );
    assert!(received >= 297, "good VMs lost more than 1 %: {out}");
    // The mesh carried at most the ARP budget: a burst and the rate.
    assert!(
        arps > 10 * ARP_RATE * secs,
        "the flood was too small: {arps} in {secs} s"
    );
    assert!(seen >= 1, "not even the burst arrived");
    assert!(
        seen <= ARP_RATE * (secs + 1),
        "{seen} ARP requests from the flooding VM reached vm2a in {secs} s"
    );
    // The far node holds the flooding node's share of MACs, no more.
    assert!(
        u64::from(macs) > 2 * cap as u64,
        "the MAC flood was too small: {macs}"
    );
    assert!(
        (cap - 64..=cap).contains(&far),
        "hv2 holds {far} MACs of hv1"
    );
    let stats = t.ctl(2, "stats");
    assert!(
        stats["switch"]["fdb"]["refused_originator_limit"]
            .as_u64()
            .unwrap()
            > 0,
        "{stats}"
    );
    // The flooding node keeps its per-port cap for the uplink.
    let local = t.ctl(1, "fdb");
    let on_uplink = local
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["location"] == "port uplink")
        .count();
    assert!(on_uplink <= 4096, "{on_uplink} MACs on hv1's uplink");
    // And the good VMs still talk.
    assert!(t.ping("vm1b", &remote.ip4, 3, &[]));
}

/// FDB entries of `hv` at originator `orig`. `ctl fdb` also lists the
/// translation table's clients the FDB does not hold (without an age):
/// not counted, the cap is the FDB's.
fn fdb_at(t: &Topology, hv: usize, orig: &str) -> usize {
    let want = format!("originator {orig}");
    t.ctl(hv, "fdb").as_array().map_or(0, |a| {
        a.iter()
            .filter(|e| e["location"] == want.as_str() && !e["age_ms"].is_null())
            .count()
    })
}
