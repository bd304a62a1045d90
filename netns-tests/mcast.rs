//! batman-adv's multicast optimisation end to end: a VM joins a group
//! (the kernel's IGMPv3 report, sent when a socket joins), its node
//! announces the group MAC as a TT local entry, and another node's VM
//! multicasting to the group reaches it as one unicast copy per datagram;
//! the third node, with no listener, receives none of it (no broadcast
//! crossed). When the listener's socket closes the kernel reports the
//! leave; the port (a bridge uplink here: no `mac`) is asked again, nobody
//! answers for the group, and the entry goes 11 s later.
//!
//! Layout: vm1a on hv1, vm2a on hv2, vm3a on hv3, full mesh.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::raw::Capture;
use crate::common::*;

const GROUP: &str = "239.1.2.3";
const GROUP_MAC: &str = "01:00:5e:01:02:03";
/// Datagrams the sender multicasts.
const N: u64 = 20;

fn stat(t: &Topology, hv: usize, sect: &str, k: &str) -> u64 {
    t.ctl(hv, "stats")[sect][k]
        .as_u64()
        .unwrap_or_else(|| panic!("no {sect}.{k} on hv{hv}"))
}

fn tt_local(t: &Topology, hv: usize, mac: &str) -> bool {
    let tt = t.ctl(hv, "tt");
    tt["local"]
        .as_array()
        .is_some_and(|l| l.iter().any(|e| e["mac"] == mac))
}

/// The MCAST flags hv announces, as `from` sees them.
fn flags_of(t: &Topology, from: usize, hv: usize) -> Option<u64> {
    let orig = t.originator_of(hv);
    let o = t.ctl(from, "originators");
    o.as_array()?
        .iter()
        .find(|e| e["originator"] == orig.as_str())
        .and_then(|e| e["mcast_flags"].as_u64())
}

/// A UDP datagram that marks our test traffic, to the group's MAC.
fn ours(f: &[u8]) -> bool {
    f.len() > 42 && f[0..6] == [1, 0, 0x5e, 1, 2, 3] && marked(f)
}

fn marked(f: &[u8]) -> bool {
    f.len() > 42 && f[12..14] == [8, 0] && f[23] == 17 && f.windows(8).any(|w| w == b"mwmcast!")
}

#[test]
fn a_group_reaches_its_listener_as_unicast_and_no_other_node() {
    let mut t = Topology::new(
        "mwMcast",
        &[&[Attach::TapNic], &[Attach::TapNic], &[Attach::TapNic]],
        500,
    );
    t.start_all();
    assert!(t.wait_routes(Duration::from_secs(60)), "{}", t.dump_logs());
    // Past the querier's first answer window, hv2 stops wanting all IPv4.
    assert!(
        wait_until(Duration::from_secs(40), || flags_of(&t, 1, 2)
            .is_some_and(|f| f & 0x02 == 0)),
        "hv2 still wants all IPv4: {:?}",
        flags_of(&t, 1, 2)
    );
    let (v1, v2, v3) = (
        t.vm("vm1a").clone(),
        t.vm("vm2a").clone(),
        t.vm("vm3a").clone(),
    );
    // vm2a joins: the socket stays open until the test kills it.
    let join = format!(
        "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('',5000))\ns.setsockopt(socket.IPPROTO_IP,socket.IP_ADD_MEMBERSHIP,socket.inet_aton('{GROUP}')+socket.inet_aton('{}'))\ntime.sleep(600)\n",
        v2.ip4
    );
    let mut listener = Command::new("ip")
        .args(["netns", "exec", &v2.ns, "python3", "-c", &join])
        .stdout(Stdio::null())
        .spawn()
        .expect("python3");
    assert!(
        wait_until(Duration::from_secs(20), || tt_local(&t, 2, GROUP_MAC)),
        "hv2 does not announce {GROUP_MAC}: {}\n{}",
        t.ctl(2, "tt"),
        t.dump_logs()
    );
    let orig2 = t.originator_of(2);
    assert!(
        wait_until(Duration::from_secs(20), || t.ctl(1, "tt")["global"]
            .as_array()
            .is_some_and(|g| g.iter().any(
                |e| e["mac"] == GROUP_MAC && e["originator"] == orig2.as_str()
            ))),
        "hv1 does not learn hv2's listener: {}",
        t.ctl(1, "tt")
    );

    let at2 = Capture::start(&v2.ns, &v2.dev, ours);
    let at3 = Capture::start(&v3.ns, &v3.dev, ours);
    let (copies, bcasts, rx3) = (
        stat(&t, 1, "node", "mcast_unicast_copies"),
        stat(&t, 1, "node", "mcast_broadcast"),
        stat(&t, 3, "mesh", "rx_bcast"),
    );
    ns_exec(&v1.ns, &["python3", "-c", &sender(&v1.ip4, GROUP)]);
    let got2 = wait_until(Duration::from_secs(10), || {
        stat(&t, 1, "node", "mcast_unicast_copies") >= copies + N
    });
    let (at2, at3) = (
        at2.finish(Duration::from_millis(500)),
        at3.finish(Duration::from_millis(0)),
    );
    let copies = stat(&t, 1, "node", "mcast_unicast_copies") - copies;
    let bcasts = stat(&t, 1, "node", "mcast_broadcast") - bcasts;
    let rx3 = stat(&t, 3, "mesh", "rx_bcast") - rx3;
    eprintln!(
        "{N} datagrams to {GROUP}: hv1 sent {copies} unicast copies, {bcasts} broadcasts; vm2a got {}, vm3a {}, hv3 received {rx3} broadcasts meanwhile",
        at2.len(),
        at3.len()
    );
    assert!(got2, "hv1 made {copies} copies\n{}", t.dump_logs());
    assert_eq!(at2.len() as u64, N, "the listener gets every datagram once");
    assert!(
        at3.is_empty(),
        "vm3a has no listener: {} reached it",
        at3.len()
    );
    assert!(rx3 < N, "hv3 received {rx3} broadcasts: ours crossed");

    // The control: a link-local group (mDNS's) is unsnoopable, so it is
    // broadcast as before: hv3 receives every datagram, which shows its
    // counter would have seen ours.
    let at3 = Capture::start(&v3.ns, &v3.dev, marked);
    let rx3 = stat(&t, 3, "mesh", "rx_bcast");
    ns_exec(&v1.ns, &["python3", "-c", &sender(&v1.ip4, "224.0.0.251")]);
    let seen = wait_until(Duration::from_secs(10), || {
        stat(&t, 3, "mesh", "rx_bcast") >= rx3 + N
    });
    let at3 = at3.finish(Duration::from_millis(500));
    let rx3 = stat(&t, 3, "mesh", "rx_bcast") - rx3;
    eprintln!(
        "{N} datagrams to 224.0.0.251: hv3 received {rx3} broadcasts, vm3a got {}",
        at3.len()
    );
    assert!(
        seen && at3.len() as u64 == N,
        "the control did not reach hv3: {rx3}, {}",
        at3.len()
    );

    // The socket closes: the kernel reports the leave, the port is asked
    // again, nobody there still listens: the entry goes.
    let _ = listener.kill();
    let _ = listener.wait();
    assert!(
        wait_until(Duration::from_secs(20), || !tt_local(&t, 2, GROUP_MAC)),
        "hv2 still announces {GROUP_MAC}: {}",
        t.ctl(2, "tt")
    );
    let s = t.ctl(2, "stats")["mcast_snoop"].clone();
    assert!(
        s["joins"].as_u64().unwrap() >= 1 && s["leaves"].as_u64().unwrap() >= 1,
        "{s}"
    );
}

/// A python3 program that multicasts `N` marked datagrams from `ip`.
fn sender(ip: &str, group: &str) -> String {
    format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_IF,socket.inet_aton('{ip}'))\nfor i in range({N}):\n    s.sendto(b'mwmcast!%d' % i,('{group}',5000))\n"
    )
}
