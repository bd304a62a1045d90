//! MAC-flap freezing (issue 11), end to end: one MAC sent alternately
//! from two VM ports of one node (a duplicate MAC, or a loop between two
//! uplinks) moves 5 times, is logged as flapping and, with `[node]
//! mac_flap_freeze_ms`, frozen on the port of its fifth move: its frames
//! from the other port are dropped and counted, never move it, and the
//! other node keeps one location for it. After the freeze it moves again.

use std::time::Duration;

use meshwire::wire::MacAddr;

use crate::common::raw::RawSock;
use crate::common::*;

/// Neither VM's own MAC: only the test's raw frames use it.
const DUP: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x0f, 0x1a, 0x99]);
const FREEZE_MS: u64 = 15_000;

fn frame() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(DUP.as_bytes());
    f.extend_from_slice(&0x88b5u16.to_be_bytes()); // local experimental
    f.extend_from_slice(&[0u8; 46]);
    f
}

fn bridge(t: &Topology, key: &str) -> u64 {
    let s = t.ctl(1, "stats");
    s["node"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no node counter {key}: {}", s["node"]))
}

/// Where node `hv`'s FDB has the duplicate MAC.
fn location(t: &Topology, hv: usize) -> Option<String> {
    let dup = DUP.to_string();
    t.ctl(hv, "fdb")
        .as_array()?
        .iter()
        .find(|e| e["mac"] == dup.as_str())
        .and_then(|e| e["location"].as_str().map(String::from))
}

#[test]
fn a_flapping_mac_is_frozen_on_its_port_then_free_again() {
    let opts = Opts {
        node_extra: format!("mac_flap_freeze_ms = {FREEZE_MS}\n"),
        ..Opts::default()
    };
    let mut t = Topology::with_opts(
        "mwF",
        &[&[Attach::TapNic, Attach::TapNic], &[Attach::TapNic]],
        500,
        opts,
    );
    t.start_all();
    assert!(t.wait_routes(Duration::from_secs(30)), "{}", t.dump_logs());
    let a = RawSock::open(&t.vm("vm1a").ns, "eth0");
    let b = RawSock::open(&t.vm("vm1b").ns, "eth0");
    let f = frame();
    let (moves0, flaps0) = (bridge(&t, "moves"), bridge(&t, "mac_flaps"));

    // Learned behind vm1a, then 5 moves: b a b a b. Each send waits until
    // the node has switched it, so the moves cannot be reordered.
    let sent_at = |sock: &RawSock, port: &str| {
        assert!(sock.send(&f));
        let want = format!("port {port}");
        assert!(
            wait_until(Duration::from_secs(20), || location(&t, 1).as_deref()
                == Some(want.as_str())),
            "the MAC never showed up at {port}: {:?}",
            location(&t, 1)
        );
    };
    sent_at(&a, "t-vm1a");
    for i in 0..5 {
        if i % 2 == 0 {
            sent_at(&b, "t-vm1b");
        } else {
            sent_at(&a, "t-vm1a");
        }
    }
    assert_eq!(bridge(&t, "moves") - moves0, 5);
    assert_eq!(bridge(&t, "mac_flaps") - flaps0, 1);
    assert!(
        t.log(1).contains("MAC flapping"),
        "no flap warning:\n{}",
        t.log(1)
    );
    let far = location(&t, 2);
    assert!(far.is_some(), "hv2 never learned the MAC");

    // Frozen on vm1b: from vm1a it is dropped and moves nothing.
    let dropped0 = bridge(&t, "drop_mac_frozen");
    for _ in 0..5 {
        assert!(a.send(&f));
    }
    assert!(
        wait_until(Duration::from_secs(10), || bridge(&t, "drop_mac_frozen")
            >= dropped0 + 5),
        "frames of the frozen MAC from another port were not dropped"
    );
    assert_eq!(bridge(&t, "drop_mac_frozen"), dropped0 + 5);
    assert_eq!(bridge(&t, "moves") - moves0, 5, "moved while frozen");
    assert_eq!(location(&t, 1).as_deref(), Some("port t-vm1b"));
    assert_eq!(location(&t, 2), far, "the other node saw it move");

    // After the freeze it moves again, on its next frame from vm1a.
    std::thread::sleep(Duration::from_millis(FREEZE_MS));
    assert!(
        wait_until(Duration::from_secs(30), || {
            a.send(&f);
            location(&t, 1).as_deref() == Some("port t-vm1a")
        }),
        "still frozen after the freeze time"
    );
    assert_eq!(bridge(&t, "moves") - moves0, 6);
}
