//! The kernel node as a relay between two meshwire nodes.

use std::time::{Duration, Instant};

use super::common::*;
use super::refvm::RefVm;
use super::*;

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
        // Policies on (issue 11): each VM port with its MAC and addresses.
        vm_policy: true,
        ..Opts::default()
    };
    let mut t = Topology::with_opts("mwJ", &[&[Attach::TapNic], &[Attach::TapNic]], OGM_MS, opts);
    t.opts.port_mtu = Some(1500);
    let (rv_priv, rv_pub) = genkey();
    for hv in &mut t.hvs {
        hv.extra_config = kernel_peer_config(&rv_pub);
    }
    let origs: Vec<String> = (1..=2).map(|hv| t.originator_of(hv)).collect();
    t.start(1);
    t.start(2);
    let args = kernel_node_args(&t, &rv_priv, &[("U1", 1), ("U2", 2)]);
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
            if !wait_until(Duration::from_secs(15), || {
                t.ping(&from.name, ip, 1, &["-W", "3"])
            }) {
                failed.push(format!("{} -> {ip}", from.name));
            }
        }
        // 1472: fragmented by meshwire, forwarded as fragments by the kernel.
        // Through a TCG-emulated relay on a loaded machine: allow time.
        if !wait_until(Duration::from_secs(15), || {
            t.ping(&from.name, &to.ip4, 1, &["-s", "1472", "-W", "3"])
        }) {
            failed.push(format!("{} -> {} -s 1472", from.name, to.ip4));
        }
        for ip in [RV_BAT_IP4, RV_BAT_IP6] {
            if !wait_until(Duration::from_secs(15), || {
                t.ping(&from.name, ip, 1, &["-W", "3"])
            }) {
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

    // Settled (every table agrees, and the 3 s TT request timeout of the
    // start-up requests is over): no TT requests anywhere for 10 s.
    let ok = wait_until(Duration::from_secs(30), || {
        (1..=2).all(|hv| {
            let o = t.ctl(hv, "originators");
            let other = &origs[2 - hv];
            [RV_ORIG, other.as_str()]
                .iter()
                .all(|x| find(&o, "originator", x).is_some_and(|e| e["tt_crc_ok"] == true))
        })
    });
    assert!(ok, "TT tables never agreed\n{}", t.dump_logs());
    std::thread::sleep(Duration::from_secs(4));
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
