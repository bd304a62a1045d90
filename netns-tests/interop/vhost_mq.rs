//! A vhost-user guest with two queue pairs (qemu `queues=2`, `mq=on`, two
//! vCPUs, so Linux's virtio_net enables both): ping and TCP with several
//! streams both ways through meshwire's port.

use serde_json::Value;

use super::common::*;
use super::vhost::{VhostGuest, GUEST_IP, GUEST_MAC};

const NAME: &str = "mwVq";

#[test]
fn a_guest_with_two_queue_pairs() {
    let mut t = Topology::new(NAME, &[&[Attach::External], &[Attach::TapNic]], 250);
    let sock = t.dir.join("vhost/guest.sock");
    t.hvs[0].extra_config = format!(
        "\n[[port]]\nname = \"guest\"\nvhost_user = \"{}\"\nmac = \"{GUEST_MAC}\"\n\
         ipv4 = [\"{GUEST_IP}\"]\n",
        sock.display()
    );
    t.start_all();
    let ns = t.hvs[0].ns.clone();
    let guest = VhostGuest::launch_with(&ns, &sock, &t.dir, "mq", &[], 2);
    guest.booted();
    let far = t.vm("vm2a").clone();
    let queues = guest.cmd("ls /sys/class/net/eth0/queues");
    eprintln!(
        "guest queues: {}",
        queues.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    assert!(
        queues.contains("rx-1") && queues.contains("tx-1"),
        "{queues}"
    );
    assert!(
        guest.reaches(&far.ip4),
        "the guest never reached vm2a\n{}",
        t.dump_logs()
    );
    for reverse in [false, true] {
        let mut server = std::process::Command::new("ip")
            .args(["netns", "exec", &far.ns, "iperf3", "-s", "-1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let r = if reverse { " -R" } else { "" };
        let out = guest.cmd(&format!("iperf3 -c {} -t 3 -P 4{r}", far.ip4));
        let _ = server.wait();
        let mbit = crate::guest::receiver_mbits(&out);
        eprintln!("two-pair guest TCP x4 (reverse {reverse}): {mbit:.0} Mbit/s");
        assert!(mbit > 1.0, "TCP stalled (reverse {reverse}):\n{out}");
    }
    // Pings from each vCPU: the guest's driver maps CPU n to TX queue n
    // (XPS). Echo replies hash by their ICMP checksum, so 20 of them land
    // on both RX queues (all on one: 2 in 2^20).
    for cpu in 0..2 {
        guest.cmd(&format!(
            "taskset -c {cpu} ping -c 10 -i 0.2 -W 2 {}",
            far.ip4
        ));
    }
    let ports: Value = t.ctl(1, "ports");
    let port = ports
        .as_array()
        .and_then(|l| l.iter().find(|p| p["name"] == "guest"))
        .cloned()
        .unwrap_or_else(|| panic!("no port guest: {ports}"));
    let v = &port["vhost"];
    eprintln!("vhost-user port queues: {v}");
    assert_eq!(v["queue_pairs"], 2, "pairs in use: {v}");
    for dir in ["tx_queue_frames", "rx_queue_frames"] {
        let n: Vec<u64> = v[dir]
            .as_array()
            .map(|a| a.iter().map(|x| x.as_u64().unwrap_or(0)).collect())
            .unwrap_or_default();
        assert!(
            n.len() >= 2 && n[0] > 0 && n[1] > 0,
            "{dir}: both pairs used? {v}"
        );
    }
}
