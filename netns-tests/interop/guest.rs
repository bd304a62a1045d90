//! Issues 10 and 12 with a real qemu guest: the reference VM booted as a
//! plain guest (eth0 only, MTU 1500, no WireGuard, no batman-adv) on a TAP
//! that qemu holds, and meshwire attached to that TAP from its network
//! side (`[[port]] attach`), with the default config: no bridge, no `mtu`.
//! The guest talks to a VM on another meshwire node; TCP both ways works
//! with the guest's stock MTU; the guest restarts (its TAP goes and comes
//! back) and meshwire restarts under it, and traffic resumes each time.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::common::*;
use super::refvm::RefVm;

const NAME: &str = "mwG";
const GUEST_IP: &str = "198.19.1.11";
const GUEST_IP6: &str = "fd00:198:19:1::11";

fn boot(t: &Topology) -> RefVm {
    RefVm::start(
        NAME,
        &[
            "--ns".into(),
            t.hvs[0].ns.clone(),
            "--ip".into(),
            format!("{GUEST_IP}/24"),
        ],
    )
}

pub fn guest_reaches(vm: &RefVm, ip: &str) -> bool {
    wait_until(Duration::from_secs(40), || {
        vm.try_cmd(&format!("ping -c 1 -W 2 {ip}")).0
    })
}

fn iperf_server(t: &Topology, vm: &str) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &t.vm(vm).ns, "iperf3", "-s", "-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Mbit/s the receiver saw, from iperf3's summary line (the vhost-user
/// test reads its runs with it too).
pub fn receiver_mbits(out: &str) -> f64 {
    out.lines()
        .filter(|l| l.contains("receiver"))
        .find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let i = w.iter().position(|x| x.ends_with("bits/sec"))?;
            let v: f64 = w.get(i - 1)?.parse().ok()?;
            Some(match w[i] {
                "Gbits/sec" => v * 1000.0,
                "Mbits/sec" => v,
                "Kbits/sec" => v / 1000.0,
                _ => 0.0,
            })
        })
        .unwrap_or(0.0)
}

#[test]
fn a_real_qemu_guest_on_an_attached_tap_with_the_default_config() {
    let mut t = Topology::new(NAME, &[&[Attach::External], &[Attach::TapNic]], 250);
    let tap = format!("rv-t-{NAME}");
    t.hvs[0].extra_config = format!("\n[[port]]\nname = \"guest\"\nattach = \"{tap}\"\n");
    // meshwire first: the port waits for the guest's TAP.
    t.start_all();
    let vm = boot(&t);
    let far = t.vm("vm2a").ip4.clone();
    assert!(
        guest_reaches(&vm, &far),
        "the guest never reached vm2a\n{}",
        t.dump_logs()
    );
    let mtu = vm.cmd("cat /sys/class/net/eth0/mtu");
    assert_eq!(mtu.trim(), "1500", "a stock guest");
    // A full 1500-byte IPv4 packet with DF, and IPv6: the port's default
    // MTU is the guest's, batman fragments what the link does not carry.
    let (ok, out) = vm.try_cmd(&format!("ping -M do -s 1472 -c 3 -W 3 {far}"));
    assert!(ok, "DF 1472-byte ping from the guest failed:\n{out}");
    vm.cmd(&format!("ip -6 addr add {GUEST_IP6}/64 dev eth0 nodad"));
    let far6 = t.vm("vm2a").ip6.clone();
    assert!(
        guest_reaches(&vm, &far6),
        "the guest never reached vm2a over IPv6\n{}",
        t.dump_logs()
    );
    let (ok, out) = vm.try_cmd(&format!("ping -M do -s 1452 -c 3 -W 3 {far6}"));
    assert!(ok, "1500-byte IPv6 ping from the guest failed:\n{out}");

    // TCP with the guest's MTU 1500, both ways, default config.
    for reverse in [false, true] {
        let mut server = iperf_server(&t, "vm2a");
        std::thread::sleep(Duration::from_millis(300));
        let r = if reverse { " -R" } else { "" };
        let out = vm.cmd(&format!("iperf3 -c {far} -t 3{r}"));
        let _ = server.wait();
        let mbit = receiver_mbits(&out);
        eprintln!("guest TCP (reverse {reverse}): {mbit:.0} Mbit/s");
        assert!(mbit > 1.0, "TCP stalled (reverse {reverse}):\n{out}");
    }
    let ports = t.ctl(1, "ports");
    let p = ports
        .as_array()
        .and_then(|l| l.iter().find(|p| p["name"] == "guest"))
        .unwrap_or_else(|| panic!("{ports}"))
        .clone();
    assert_eq!(p["device"], tap.as_str());
    assert_eq!(p["counters"]["rx_drop_oversize"], 0, "{p}");
    let clamped = t.ctl(1, "stats")["hooks"]["mss_clamped"]
        .as_u64()
        .unwrap_or(0);
    assert!(clamped > 0, "no SYN clamped");

    // The guest restarts: qemu and its TAP go, and come back.
    drop(vm);
    let vm = boot(&t);
    assert!(
        guest_reaches(&vm, &far),
        "not after the guest restarted\n{}",
        t.log(1)
    );
    assert!(t.log(1).contains("attached again"), "{}", t.log(1));

    // meshwire restarts under the running guest.
    t.stop(1, false);
    t.start(1);
    assert!(
        guest_reaches(&vm, &far),
        "not after meshwire restarted\n{}",
        t.log(1)
    );
}
