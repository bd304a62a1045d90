//! Issue 12, live migration of a vhost-user guest: hv1's and hv2's
//! meshwire each have a vhost-user port for the guest (the same MAC and IP
//! policy); the guest (a real qemu, TCG, its RAM a shared memfd) runs on
//! hv1, an incoming qemu waits on hv2 (`-incoming tcp:` over the
//! underlay), and QMP `migrate` moves it while a VM on a third node pings
//! it every 10 ms. qemu migrates a vhost-user device only when the backend
//! logs its writes into guest memory (VHOST_F_LOG_ALL with the log as a
//! shared fd): every frame meshwire puts into the guest while its RAM is
//! copied (these pings' requests, in RX buffers and the used ring) must be
//! copied again, or the guest at the destination reads a stale ring and
//! its NIC stops for good. Traffic must come back on hv2 and the guest's
//! own ping must work there; the outage and qemu's downtime are printed.
//!
//! Two cases: qemu's announcement on (for a vhost-user NIC it is the
//! guest's own, virtio GUEST_ANNOUNCE, which the port offers), and every
//! announcement off with `[[port]] qmp` on both hypervisors (the watcher
//! claims the guest at RESUME and the source forwards what it held).

use std::time::Duration;

use serde_json::{json, Value};

use super::common::*;
use super::migrate_qemu::{ping_outage_to, qmp};
use super::vhost::{VhostGuest, GUEST_IP, GUEST_MAC};

const MIG_PORT: u16 = 4446;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    /// The guest announces itself at the destination (GUEST_ANNOUNCE).
    Announce,
    /// Every announcement off, `[[port]] qmp` on both hypervisors.
    Watch,
}

/// Migrates `src` to the incoming qemu on hv2; qemu's reported downtime.
fn migrate(t: &Topology, src: &VhostGuest, dst: &VhostGuest) -> u64 {
    let uri = format!("tcp:198.18.0.2:{MIG_PORT}");
    let r = qmp(
        &src.qmp_path(),
        &json!({"execute": "migrate", "arguments": {"uri": uri}}),
    );
    assert!(r.get("return").is_some(), "migrate: {r}");
    let mut downtime = 0;
    let mut last = Value::Null;
    let ok = wait_until(Duration::from_secs(90), || {
        let q = qmp(&src.qmp_path(), &json!({"execute": "query-migrate"}));
        let status = q["return"]["status"].as_str().unwrap_or("").to_string();
        downtime = q["return"]["downtime"].as_u64().unwrap_or(0);
        assert_ne!(status, "failed", "migration failed: {q}\n{}", t.dump_logs());
        last = q;
        status == "completed"
    });
    assert!(
        ok,
        "migration did not complete: {last}\n{}\n{}",
        dst.log(),
        t.dump_logs()
    );
    eprintln!("vhost-user migration: {}", last["return"]["ram"]);
    downtime
}

fn guest_port(t: &Topology, hv: usize) -> Value {
    let ports = t.ctl(hv, "ports");
    (ports.as_array().into_iter().flatten())
        .find(|p| p["name"] == "guest")
        .cloned()
        .unwrap_or_else(|| panic!("hv{hv} has no port guest: {ports}"))
}

fn case(mode: Mode) {
    let prefix = match mode {
        Mode::Announce => "mwE",
        Mode::Watch => "mwEw",
    };
    let layout: &[&[Attach]] = &[&[Attach::External], &[Attach::External], &[Attach::TapNic]];
    let mut t = Topology::new(prefix, layout, 250);
    let (src_tag, dst_tag) = match mode {
        Mode::Announce => ("msrcA", "mdstA"),
        Mode::Watch => ("msrcW", "mdstW"),
    };
    // meshwire's own monitor of each qemu, beside the test's.
    let dir = t.dir.clone();
    let watch = |tag: &str| dir.join(format!("qemu-{tag}")).join("watch.qmp");
    let (src_watch, dst_watch) = (watch(src_tag), watch(dst_tag));
    let sock = |hv: usize| dir.join(format!("vhost/hv{hv}.sock"));
    for hv in [1, 2] {
        let mut c = format!(
            "\n[[port]]\nname = \"guest\"\nvhost_user = \"{}\"\nmac = \"{GUEST_MAC}\"\n\
             ipv4 = [\"{GUEST_IP}\"]\n",
            sock(hv).display()
        );
        if mode == Mode::Watch {
            let w = if hv == 1 { &src_watch } else { &dst_watch };
            c.push_str(&format!("qmp = \"{}\"\n", w.display()));
        }
        t.hvs[hv - 1].extra_config = c;
    }
    t.start_all();
    let mut quiet: Vec<String> = Vec::new();
    if mode == Mode::Watch {
        // The guest's own announcement off (qemu masks GUEST_ANNOUNCE).
        quiet.extend(["-global", "virtio-net-pci.guest_announce=off"].map(String::from));
    }
    let args = |w: &std::path::Path, more: &[String]| -> Vec<String> {
        let mut v = more.to_vec();
        v.extend_from_slice(&quiet);
        if mode == Mode::Watch {
            let _ = std::fs::create_dir_all(w.parent().unwrap());
            v.extend([
                "-qmp".into(),
                format!("unix:{},server=on,wait=off", w.display()),
            ]);
        }
        v
    };
    let (ns1, ns2) = (t.hvs[0].ns.clone(), t.hvs[1].ns.clone());
    let src = VhostGuest::launch(&ns1, &sock(1), &t.dir, src_tag, &args(&src_watch, &[]));
    let incoming = format!("tcp:198.18.0.2:{MIG_PORT}");
    let dst = VhostGuest::launch(
        &ns2,
        &sock(2),
        &t.dir,
        dst_tag,
        &args(&dst_watch, &["-incoming".into(), incoming]),
    );
    src.booted();
    let vm3 = t.vm("vm3a").clone();
    assert!(
        t.ping_until("vm3a", GUEST_IP, Duration::from_secs(60)),
        "vm3a never reached the guest on hv1\n{}\n{}",
        t.dump_logs(),
        src.log()
    );
    if mode == Mode::Watch {
        // qemu's own RARP rounds off too (through a vhost-user netdev they
        // reach nothing anyway: qemu would need VHOST_USER_SEND_RARP).
        let r = qmp(
            &src.qmp_path(),
            &json!({"execute": "migrate-set-parameters",
                "arguments": {"announce-rounds": 0}}),
        );
        assert!(r.get("return").is_some(), "announce-rounds: {r}");
        for hv in [1, 2] {
            assert!(
                wait_until(Duration::from_secs(20), || guest_port(&t, hv)["qmp"]
                    ["connected"]
                    == true),
                "hv{hv}'s watcher never connected: {}",
                guest_port(&t, hv)
            );
        }
    }
    let mut downtime = 0;
    let (outage, back, max_rtt) = ping_outage_to(&vm3.ns, GUEST_IP, 25, || {
        std::thread::sleep(Duration::from_secs(1));
        downtime = migrate(&t, &src, &dst);
    });
    eprintln!(
        "vhost-user qemu migration, {mode:?}: outage {outage} ms, qemu downtime {downtime} ms, \
         longest ping {max_rtt} ms"
    );
    assert!(
        back || t.ping("vm3a", GUEST_IP, 3, &[]),
        "the migrated guest is unreachable ({mode:?})\n{}\n{}",
        t.dump_logs(),
        dst.log()
    );
    let fdb = t.ctl(2, "fdb");
    let at_dst = fdb.as_array().is_some_and(|l| {
        l.iter().any(|e| {
            e["mac"] == GUEST_MAC && e["location"].as_str().unwrap_or("").starts_with("port")
        })
    });
    assert!(at_dst, "hv2 does not have the guest on its port: {fdb}");
    // The guest's own traffic at the destination: its NIC (the rings it
    // kept across the move, meshwire's writes included) still works.
    let (ok, out) = dst.try_cmd(&format!("ping -c 3 -W 2 {}", vm3.ip4));
    assert!(
        ok,
        "the guest's own ping failed after the move:\n{out}\n{}",
        t.dump_logs()
    );
    for hv in [1, 2] {
        let p = guest_port(&t, hv);
        eprintln!("hv{hv} guest port after the migration: {p}");
        if mode == Mode::Watch {
            let q = &p["qmp"];
            // Source: depart + stopped; destination: expect + claim.
            assert!(q["actions"].as_u64() >= Some(2), "hv{hv}'s watcher: {q}");
        }
    }
    if mode == Mode::Watch {
        eprintln!("hv1 migration stats: {}", t.ctl(1, "stats")["migration"]);
        eprintln!("hv2 migration stats: {}", t.ctl(2, "stats")["migration"]);
    }
}

#[test]
fn vhost_user_live_migration_with_the_guests_announcement() {
    case(Mode::Announce);
}

#[test]
fn vhost_user_live_migration_without_announcements_watched_over_qmp() {
    case(Mode::Watch);
}
