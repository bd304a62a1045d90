//! Issues 11 and 12 with a real qemu guest: meshwire attached to the TAP
//! qemu holds (`[[port]] attach`) is the only switch the guest talks to,
//! so the port's policy is that VM's policy. The port is a VM port with
//! the guest's MAC and addresses, as an operator (or a libvirt hook)
//! writes it from the domain's definition. The guest's own traffic flows;
//! when the guest takes another address or another MAC, what it sends is
//! dropped at the port, counted by reason, and never reaches the far VM.

use serde_json::Value;

use super::common::*;
use super::guest::guest_reaches;
use super::refvm::RefVm;

const NAME: &str = "mwGP";
const GUEST_IP: &str = "198.19.1.12";
const GUEST_IP6: &str = "fd00:198:19:1::12";
const SPOOF_IP: &str = "198.19.1.99";
const SPOOF_MAC: &str = "52:54:00:de:ad:01";

/// The MAC `run-single.sh` gives a VM of this name (52:54:00 + md5).
fn guest_mac() -> String {
    let md5 = sh(&["sh", "-c", &format!("printf %s {NAME} | md5sum")]);
    let h = md5.trim();
    format!("52:54:00:{}:{}:{}", &h[0..2], &h[2..4], &h[4..6])
}

fn port_policy(t: &Topology) -> Value {
    let ports = t.ctl(1, "ports");
    ports
        .as_array()
        .and_then(|l| l.iter().find(|p| p["name"] == "guest"))
        .map(|p| p["policy"].clone())
        .unwrap_or_else(|| panic!("no port guest: {ports}"))
}

fn counter(t: &Topology, key: &str) -> u64 {
    let c = port_policy(t);
    c[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {key} in {c}"))
}

/// Pings `to` from the guest 3 times from source `src`; whether any
/// answer came.
fn ping_from(vm: &RefVm, src: &str, to: &str) -> bool {
    vm.try_cmd(&format!("ping -c 3 -W 2 -I {src} {to}")).0
}

#[test]
fn a_real_guest_on_a_policy_port_cannot_spoof() {
    let mut t = Topology::new(NAME, &[&[Attach::External], &[Attach::TapNic]], 250);
    let tap = format!("rv-t-{NAME}");
    let mac = guest_mac();
    t.hvs[0].extra_config = format!(
        "\n[[port]]\nname = \"guest\"\nattach = \"{tap}\"\nmac = \"{mac}\"\n\
         ipv4 = [\"{GUEST_IP}\"]\nipv6 = [\"{GUEST_IP6}\"]\n"
    );
    t.start_all();
    let vm = RefVm::start(
        NAME,
        &[
            "--ns".into(),
            t.hvs[0].ns.clone(),
            "--ip".into(),
            format!("{GUEST_IP}/24"),
        ],
    );
    assert_eq!(
        vm.cmd("cat /sys/class/net/eth0/address").trim(),
        mac,
        "the guest's MAC is not the one run-single.sh derives"
    );
    let far = t.vm("vm2a").clone();

    // Its own addresses: v4 and v6 flow.
    assert!(
        guest_reaches(&vm, &far.ip4),
        "the guest never reached vm2a\n{}",
        t.dump_logs()
    );
    vm.cmd(&format!("ip -6 addr add {GUEST_IP6}/64 dev eth0 nodad"));
    assert!(
        guest_reaches(&vm, &far.ip6),
        "the guest never reached vm2a over IPv6\n{}",
        t.dump_logs()
    );

    // Another IPv4 address: ARP with that sender and packets from it are
    // dropped at the port; vm2a never learns the address.
    vm.cmd(&format!("ip addr add {SPOOF_IP}/24 dev eth0"));
    let (v4, arp) = (
        counter(&t, "drop_spoofed_ipv4"),
        counter(&t, "drop_spoofed_arp"),
    );
    assert!(
        !ping_from(&vm, SPOOF_IP, &far.ip4),
        "a ping from a spoofed source was answered"
    );
    let dropped = (counter(&t, "drop_spoofed_ipv4") - v4) + (counter(&t, "drop_spoofed_arp") - arp);
    assert!(dropped > 0, "no spoofed frame counted: {}", port_policy(&t));
    let neigh = ns_exec(&far.ns, &["ip", "neigh", "show", SPOOF_IP]);
    assert!(
        !neigh.contains("lladdr"),
        "vm2a learned the spoofed address: {neigh}"
    );
    // The real address still works beside it.
    assert!(ping_from(&vm, GUEST_IP, &far.ip4), "own address blocked");
    vm.cmd(&format!("ip addr del {SPOOF_IP}/24 dev eth0"));

    // Another MAC: nothing the guest sends passes, and vm2a's neighbour
    // entry for the guest never points at the spoofed MAC.
    let before = counter(&t, "drop_spoofed_mac");
    vm.cmd(&format!("ip link set eth0 address {SPOOF_MAC}"));
    ns_exec(&far.ns, &["ip", "neigh", "flush", "dev", "eth0"]);
    assert!(
        !ping_from(&vm, GUEST_IP, &far.ip4),
        "a ping from a spoofed MAC was answered"
    );
    assert!(
        counter(&t, "drop_spoofed_mac") > before,
        "no spoofed MAC counted: {}",
        port_policy(&t)
    );
    let neigh = ns_exec(&far.ns, &["ip", "neigh", "show", GUEST_IP]);
    assert!(
        !neigh.contains(SPOOF_MAC),
        "vm2a learned the spoofed MAC: {neigh}"
    );
    let fdb = t.ctl(2, "fdb");
    assert!(
        !fdb.as_array()
            .unwrap()
            .iter()
            .any(|e| e["mac"] == SPOOF_MAC),
        "the far node learned the spoofed MAC: {fdb}"
    );

    // Back to its own MAC: traffic flows again.
    vm.cmd(&format!("ip link set eth0 address {mac}"));
    assert!(
        guest_reaches(&vm, &far.ip4),
        "not after the guest took its own MAC back\n{}",
        t.log(1)
    );
}
