//! batman-adv's MCAST TVLV between a kernel node and meshwire (issue 11):
//! the kernel lists meshwire's originator with the flags we announce (not
//! as multicast-disabled), and so sends its multicast to us as a unicast
//! copy instead of flooding it as a broadcast. Our VM joins the group (an
//! IGMPv3 report meshwire snoops): the kernel's `batctl tg` lists the
//! group MAC at meshwire's originator, and that entry is what makes the
//! kernel send the group to us (we no longer want all IPv4).

use std::time::Duration;

use super::common::raw::Capture;
use super::common::*;
use super::refvm::RefVm;
use super::*;

/// The group our VM joins (239.1.2.3).
const GROUP_MAC: [u8; 6] = [0x01, 0x00, 0x5e, 0x01, 0x02, 0x03];

#[test]
fn kernel_sees_meshwire_mcast_flags_and_sends_multicast_as_unicast() {
    let mut t = Topology::with_opts("mwM", &[&[Attach::TapNic]], OGM_MS, Opts::default());
    let (rv_priv, rv_pub) = genkey();
    t.hvs[0].extra_config = kernel_peer_config(&rv_pub);
    let mw_orig = t.originator_of(1);
    let vm = t.vm("vm1a").clone();
    t.start(1);
    let args = kernel_node_args(&t, &rv_priv, &[("U", 1)]);
    let rv = RefVm::start("mwM", &args);
    let ok = wait_until(Duration::from_secs(60), || {
        rv.cmd("batctl o -H")
            .lines()
            .any(|l| l.contains(&mw_orig) && l.trim_start().starts_with('*'))
            && find(&t.ctl(1, "originators"), "originator", RV_ORIG)
                .is_some_and(|o| o["mcast_flags"].as_u64().is_some())
    });
    assert!(ok, "no routes or no MCAST flags\n{}", t.dump_logs());
    // Our side: the kernel's own flags, parsed from its OGMs.
    let o = find(&t.ctl(1, "originators"), "originator", RV_ORIG).cloned();
    eprintln!(
        "kernel's mcast_flags at meshwire: {}",
        o.unwrap()["mcast_flags"]
    );

    // Our VM joins 239.1.2.3 and keeps the socket open.
    let join = format!(
        "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IP,socket.IP_ADD_MEMBERSHIP,socket.inet_aton('239.1.2.3')+socket.inet_aton('{}'))\ntime.sleep(600)\n",
        vm.ip4
    );
    let mut listener = std::process::Command::new("ip")
        .args(["netns", "exec", &vm.ns, "python3", "-c", &join])
        .spawn()
        .expect("python3");
    // The kernel's side: `batctl tg` lists our listener's group MAC at
    // meshwire's originator, and `batctl mf` meshwire with U(nsnoopables)
    // once the snooper knows its ports (no more want-all IPv4/IPv6).
    let listed = wait_until(Duration::from_secs(60), || {
        rv.cmd("batctl tg")
            .lines()
            .any(|l| l.contains("01:00:5e:01:02:03") && l.contains(&mw_orig))
    });
    let mf = rv.cmd("batctl mf");
    eprintln!("batctl mf:\n{mf}\nbatctl tg:\n{}", rv.cmd("batctl tg"));
    assert!(
        listed,
        "the kernel does not list our listener\n{}",
        t.dump_logs()
    );
    let line = mf.lines().find(|l| l.contains(&mw_orig)).map(str::to_owned);
    let line = line.unwrap_or_else(|| panic!("meshwire not in batctl mf:\n{mf}"));
    assert!(line.contains("[U"), "flags as announced: {line}");

    // The kernel's client sends to 239.1.2.3: the kernel (every originator
    // has the TVLV, meshwire lists the group) sends unicast copies to meshwire,
    // which delivers them to its ports.
    let cap = Capture::start(&vm.ns, "eth0", |f: &[u8]| {
        f.len() >= 14 && f[..6] == GROUP_MAC
    });
    let (uni, bcast) = (
        mesh_counter(&t, "unicast_delivered"),
        mesh_counter(&t, "rx_bcast"),
    );
    let _ = rv.try_cmd("ping -c 5 -i 0.2 -W 1 -I bat0 239.1.2.3");
    let got = cap.finish(Duration::from_millis(600));
    let (uni2, bcast2) = (
        mesh_counter(&t, "unicast_delivered"),
        mesh_counter(&t, "rx_bcast"),
    );
    eprintln!(
        "group frames at the VM {}, unicast delivered +{}, broadcasts received +{}",
        got.len(),
        uni2 - uni,
        bcast2 - bcast
    );
    assert!(got.len() >= 5, "the VM got {} of 5 group frames", got.len());
    assert!(
        uni2 - uni >= 5,
        "not sent as unicast copies: +{}",
        uni2 - uni
    );
    let _ = listener.kill();
    let _ = listener.wait();

    // The other way: the kernel node joins 239.1.2.5 on bat0; once its TT
    // lists the group at its originator, our VM's multicast to it leaves
    // meshwire as unicast copies, no broadcast.
    rv.cmd("ip addr add 239.1.2.5/32 dev bat0 autojoin");
    let known = wait_until(Duration::from_secs(30), || {
        t.ctl(1, "tt")["global"].as_array().is_some_and(|g| {
            g.iter()
                .any(|e| e["mac"] == "01:00:5e:01:02:05" && e["originator"] == RV_ORIG)
        })
    });
    assert!(
        known,
        "no TT entry for the kernel's group: {}",
        t.ctl(1, "tt")
    );
    let stat = |k: &str| t.ctl(1, "stats")["node"][k].as_u64().unwrap();
    let (c0, b0) = (stat("mcast_unicast_copies"), stat("mcast_broadcast"));
    let rx = || {
        rv.cmd("cat /sys/class/net/bat0/statistics/rx_packets")
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
    };
    let rx0 = rx();
    let send = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_IF,socket.inet_aton('{}'))\nfor i in range(5):\n    s.sendto(b'mwmcast!',('239.1.2.5',5000))\n",
        vm.ip4
    );
    ns_exec(&vm.ns, &["python3", "-c", &send]);
    let sent = wait_until(Duration::from_secs(10), || {
        stat("mcast_unicast_copies") >= c0 + 5
    });
    let (c, b) = (
        stat("mcast_unicast_copies") - c0,
        stat("mcast_broadcast") - b0,
    );
    eprintln!(
        "5 datagrams to the kernel's group: {c} unicast copies, {b} broadcasts, bat0 rx +{}",
        rx() - rx0
    );
    // Membership reports are broadcast by design (the leave of the socket
    // closed above may fall in this window): ours must not be.
    assert!(sent && c == 5 && b < 5, "copies +{c}, broadcasts +{b}");
    assert!(rx() - rx0 >= 5, "the kernel's bat0 got +{}", rx() - rx0);
}
