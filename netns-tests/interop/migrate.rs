//! Live migration between a kernel node and meshwire (ROAM adverts).

use std::time::Duration;

use super::common::*;
use super::refvm::RefVm;
use super::*;

/// Live migration across the two stacks, with ROAM adverts both ways.
/// The client 02:00:00:01:01:77 (198.19.1.77, macvlan m1 behind meshwire)
/// moves to the kernel node (bridge br0 over bat0, the way a kernel
/// hypervisor bridges its VMs) and back.
pub fn migrate_both_ways(t: &Topology, rv: &RefVm, vm: &Vm, mw_orig: &str) {
    const MAC: &str = "02:00:00:01:01:77";
    let roam_rx = mesh_counter(t, "roam_received");
    let roam_tx = mesh_counter(t, "roam_sent");
    let k_tx = rv.stat("tt_roam_adv_tx");
    let k_rx = rv.stat("tt_roam_adv_rx");
    let mw_req = mesh_counter(t, "tt_requests_sent");
    let k_req = rv.stat("tt_request_tx");

    // The kernel hypervisor's VM bridge: br0 over bat0, no IPv6. Made
    // first and left to settle, so that the move itself sends nothing but
    // unicast (bringing a bridge up can send multicast from its MAC).
    rv.cmd(
        "ip link add br0 type bridge && echo 1 > /proc/sys/net/ipv6/conf/br0/disable_ipv6 && \
         ip link set br0 address 02:00:00:00:0a:05 && ip link set bat0 master br0 && \
         ip link set br0 up",
    );
    std::thread::sleep(Duration::from_secs(2));

    // To the kernel node. The client only sends unicast there (static
    // neighbour, br0 takes its MAC), so meshwire learns of the move only
    // from the kernel's ROAM advert: its FDB must follow it, or the VM's
    // reply goes to the port where the client used to be (SamePort drop).
    ns_exec(&vm.ns, &["ip", "link", "del", "m1"]);
    rv.cmd(&format!(
        "ip link set br0 address {MAC} && ip addr add 198.19.1.77/24 dev br0 && \
         ip neigh replace {} lladdr {} dev br0 nud permanent",
        vm.ip4, vm.mac
    ));
    let ok = wait_until(Duration::from_secs(20), || {
        rv.try_cmd(&format!("ping -c 1 -W 1 -I br0 {}", vm.ip4)).0
    });
    assert!(
        ok,
        "client migrated to the kernel node cannot reach the VM\n{}",
        t.dump_logs()
    );
    assert!(
        rv.stat("tt_roam_adv_tx") > k_tx,
        "kernel sent no ROAM advert"
    );
    assert!(mesh_counter(t, "roam_received") > roam_rx);
    let fdb = t.ctl(1, "fdb");
    let e = find(&fdb, "mac", MAC).unwrap_or_else(|| panic!("{MAC} not in fdb: {fdb}"));
    assert_eq!(e["location"], format!("originator {RV_ORIG}"), "{e}");

    // And back: the kernel node's bridge gets another MAC (the client left
    // it), the client reappears behind meshwire and speaks first.
    rv.cmd(
        "ip link set br0 address 02:00:00:00:0a:05 && ip addr del 198.19.1.77/24 dev br0 && \
         ip addr add 198.19.1.78/24 dev br0",
    );
    ns_exec(
        &vm.ns,
        &[
            "ip", "link", "add", "m1", "link", "eth0", "address", MAC, "type", "macvlan", "mode",
            "bridge",
        ],
    );
    ns_exec(
        &vm.ns,
        &["ip", "addr", "add", "198.19.1.77/24", "dev", "m1"],
    );
    ns_exec(&vm.ns, &["ip", "link", "set", "m1", "up"]);
    let ok = wait_until(Duration::from_secs(20), || {
        ns_try(
            &vm.ns,
            &["ping", "-c", "1", "-W", "1", "-I", "m1", "198.19.1.78"],
        )
    });
    assert!(
        ok,
        "client back behind meshwire cannot reach the kernel node"
    );
    assert!(
        mesh_counter(t, "roam_sent") > roam_tx,
        "meshwire sent no ROAM advert"
    );
    assert!(
        rv.stat("tt_roam_adv_rx") > k_rx,
        "kernel got no ROAM advert"
    );
    let ok = wait_until(Duration::from_secs(10), || {
        rv.cmd("batctl tg -H")
            .lines()
            .any(|l| l.contains(MAC) && l.contains(mw_orig))
    });
    assert!(
        ok,
        "kernel's global table never moved {MAC} back to meshwire"
    );
    assert!(
        rv.try_cmd("ping -c 2 -W 1 198.19.1.77").0,
        "kernel -> returned client"
    );
    let ok = wait_until(Duration::from_secs(10), || {
        find(&t.ctl(1, "originators"), "originator", RV_ORIG)
            .is_some_and(|o| o["tt_crc_ok"] == true)
    });
    assert!(ok, "TT CRC disagrees after the migrations");
    // Roamed clients leave the CRCs the way the kernel expects: neither
    // side had to ask for a table.
    assert_eq!(
        (
            mesh_counter(t, "tt_requests_sent"),
            rv.stat("tt_request_tx")
        ),
        (mw_req, k_req),
        "TT requests (meshwire, kernel) during the migrations"
    );
}
