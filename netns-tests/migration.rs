//! Issue 4: live migration. A VM namespace holds two TAPs with the same MAC
//! and address, one from hv1's meshwire and one from hv2's; only one is up
//! at a time. A VM on hv3 pings it steadily. With a 10 s originator
//! interval, each kind of move must bring the stream back without waiting
//! for periodic OGMs. Also: ports added and removed at runtime, and on
//! reload.

use std::fs;
use std::time::Duration;

use crate::common::migration::*;
use crate::common::*;

#[test]
fn migration_resumes_without_waiting_for_ogms() {
    // OGMs every 10 s: a move that waited for one would stall the stream
    // for seconds; the announce paths must not.
    let mut t = Topology::new("mwM", &[&[], &[], &[Attach::TapNic]], 10_000);
    t.start_all();
    // The VM's ports arrive at runtime, as a libvirt hook would add them.
    for hv in [1, 2] {
        let out = ctl_ok(&t, hv, &["port", "add", &format!("t-m{hv}")]);
        assert!(out.contains("added"), "{out}");
    }
    let vm_ns = format!("{}-{VM_NS_SUFFIX}", t.prefix);
    sh(&["ip", "netns", "add", &vm_ns]);
    let _vm_guard = NsGuard(vm_ns.clone());
    plumb_migrating_vm(&t, &vm_ns);

    // Initial convergence needs a few OGM intervals (bidirectional links);
    // until then unicast would fall back to flooding, which proves nothing.
    assert!(
        t.wait_routes(Duration::from_secs(120)),
        "routes never converged\n{}",
        t.dump_logs()
    );
    assert!(
        t.ping_until("vm3a", VM_IP, Duration::from_secs(30)),
        "no initial path to the VM\n{}",
        t.dump_logs()
    );
    let stream = Stream::start(&t, "0.02");
    assert!(
        stream.resumes(10, Duration::from_secs(10)),
        "stream never started"
    );

    let cases = [
        (2, Stimulus::GratuitousArp),
        (1, Stimulus::Rarp),
        (2, Stimulus::CtlAnnounce),
        (1, Stimulus::OrdinaryFrame),
    ];
    for (to_hv, how) in cases {
        let before = counters(&t);
        migrate(&t, &vm_ns, to_hv, how);
        assert!(
            stream.resumes(5, Duration::from_secs(5)),
            "{how:?}: the stream did not resume after moving to hv{to_hv}\n{}",
            t.dump_logs()
        );
        // Settled: the stream keeps flowing on the new side.
        assert!(
            stream.resumes(20, Duration::from_secs(5)),
            "{how:?}: stream not steady"
        );
        let after = counters(&t);
        for hv in 0..3 {
            assert_eq!(
                before[hv].0,
                after[hv].0,
                "{how:?}: hv{} fell back to flooding for lack of a route",
                hv + 1
            );
        }
    }

    // The old side's port goes away at runtime: its TAP leaves the VM.
    let out = ctl_ok(&t, 2, &["port", "del", "t-m2"]);
    assert!(out.contains("removed"), "{out}");
    assert!(
        !ns_try(&vm_ns, &["ip", "link", "show", "dev", "m2"]),
        "TAP outlived ctl port del"
    );
    let ports = t.ctl(2, "ports");
    assert!(ports.as_array().unwrap().is_empty(), "{ports}");
    // The VM, now on hv1, is still reachable.
    assert!(stream.resumes(10, Duration::from_secs(5)));
}

#[test]
fn ports_follow_the_config_on_reload() {
    let mut t = Topology::new("mwR", &[&[Attach::TapNic], &[Attach::TapNic]], 500);
    t.start_all();
    let path = t.config_path(1);
    let pid = t.hvs[0].daemon.as_ref().unwrap().id().to_string();
    let names = |t: &Topology| -> Vec<String> {
        t.ctl(1, "ports")
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };

    let orig = fs::read_to_string(&path).unwrap();
    fs::write(
        &path,
        format!("{orig}\n[[port]]\nname = \"t-extra\"\nmtu = 1300\n"),
    )
    .unwrap();
    sh(&["kill", "-HUP", &pid]);
    assert!(wait_until(Duration::from_secs(5), || names(&t)
        .contains(&"t-extra".to_string())));
    let mtu = ns_exec(&t.hvs[0].ns, &["cat", "/sys/class/net/t-extra/mtu"]);
    assert_eq!(mtu.trim(), "1300");

    // A broken file changes nothing.
    fs::write(&path, "[node]\nbroken = true\n").unwrap();
    sh(&["kill", "-HUP", &pid]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(names(&t).contains(&"t-extra".to_string()));

    fs::write(&path, &orig).unwrap();
    sh(&["kill", "-HUP", &pid]);
    assert!(wait_until(Duration::from_secs(5), || !names(&t)
        .contains(&"t-extra".to_string())));
    assert!(!ns_try(
        &t.hvs[0].ns,
        &["ip", "link", "show", "dev", "t-extra"]
    ));
    // The VM that was there all along still works.
    let ip = t.vm("vm2a").ip4.clone();
    assert!(t.ping_until("vm1a", &ip, Duration::from_secs(30)));

    // A TAP destroyed under the daemon (its VM's namespace deleted): the
    // port leaves, the daemon carries on, and the log stays small (an fd
    // that is always readable must not become a busy loop).
    let ns = t.vm("vm2a").ns.clone();
    sh(&["ip", "netns", "del", &ns]);
    assert!(
        wait_until(Duration::from_secs(10), || t
            .ctl(2, "ports")
            .as_array()
            .unwrap()
            .is_empty()),
        "hv2 kept its dead port\n{}",
        t.log(2)
    );
    std::thread::sleep(Duration::from_secs(1));
    let log_len = fs::metadata(t.hvs[1].dir.join("daemon.log")).unwrap().len();
    assert!(log_len < 64 * 1024, "hv2's log grew to {log_len} bytes");
    assert!(t.ctl(2, "peers").as_array().unwrap().len() == 1);
}
