//! Issue 12, the operations side of vhost-user ports: the port is added at
//! runtime with `meshwire ctl port add NAME --vhost-user PATH --mac --ip`
//! (what the libvirt hook does before qemu starts), a real qemu guest (TCG,
//! the reference VM's kernel booted as a plain host) connects to it and
//! talks to a VM on hv2 under the port's policy, `ctl port del` takes the
//! port and its socket away (the guest is cut off), and the same `port add`
//! brings it back: qemu (reconnect=1) connects again and traffic resumes.
//! Then who may connect: a qemu running as another user is refused until
//! `--vhost-user-group` gives the socket its group.
//! Figures are printed, never asserted beyond "it flows".

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::common::migration::ctl_ok;
use super::common::*;
use super::vhost::{Launch, VhostGuest};

const NAME: &str = "mwVc";
// VhostGuest's NIC and address.
const GUEST_MAC: &str = "52:54:00:76:68:01";
const GUEST_IP: &str = "198.19.1.13";

fn add(t: &Topology, sock: &Path) -> String {
    add_with(t, sock, &[])
}

fn add_with(t: &Topology, sock: &Path, more: &[&str]) -> String {
    let mut args = vec!["port", "add", "guest", "--vhost-user"];
    args.extend([sock.to_str().unwrap(), "--mac", GUEST_MAC, "--ip", GUEST_IP]);
    args.extend(more);
    ctl_ok(t, 1, &args)
}

fn port(t: &Topology) -> Option<Value> {
    t.ctl(1, "ports")
        .as_array()
        .and_then(|l| l.iter().find(|p| p["name"] == "guest"))
        .cloned()
}

#[test]
fn a_vhost_user_port_added_and_removed_with_ctl_carries_a_real_guest() {
    let mut t = Topology::new(NAME, &[&[Attach::External], &[Attach::TapNic]], 250);
    let sock = t.dir.join("vhost/guest.sock");
    t.start_all();
    assert!(port(&t).is_none(), "no port before ctl adds it");
    let out = add(&t, &sock);
    eprintln!("ctl port add: {}", out.trim());
    assert!(
        sock.exists(),
        "no socket at {} after port add",
        sock.display()
    );
    let p = port(&t).expect("the port after ctl port add");
    assert_eq!(p["device"], sock.display().to_string().as_str(), "{p}");
    assert_eq!(p["settings"]["mac"], GUEST_MAC, "{p}");

    let ns = t.hvs[0].ns.clone();
    let guest = VhostGuest::start(&ns, &sock, &t.dir, "ctl");
    let far = t.vm("vm2a").clone();
    assert!(
        guest.reaches(&far.ip4),
        "the guest never reached vm2a\n{}\n{}",
        t.dump_logs(),
        guest.log()
    );
    assert!(
        t.ping("vm2a", GUEST_IP, 3, &[]),
        "vm2a does not reach the guest"
    );
    let mut server = Command::new("ip")
        .args(["netns", "exec", &far.ns, "iperf3", "-s", "-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let out = guest.cmd(&format!("iperf3 -c {} -t 3", far.ip4));
    let _ = server.wait();
    // The guest's UART now and then garbles a byte ("Mbitts/sec"): then
    // the sender's line of the same run gives the figure.
    let mbit = match crate::guest::receiver_mbits(&out) {
        m if m > 0.0 => m,
        _ => crate::guest::receiver_mbits(&out.replace(" sender", " receiver")),
    };
    eprintln!("guest on a ctl-added vhost-user port, TCP to vm2a: {mbit:.0} Mbit/s");
    assert!(mbit > 1.0, "TCP stalled:\n{out}");
    let p = port(&t).unwrap();
    eprintln!(
        "port counters: rx_frames {} tx_frames {}",
        p["rx_frames"], p["tx_frames"]
    );
    assert!(p["rx_frames"].as_u64().unwrap_or(0) > 0, "{p}");

    // The policy came with the port: another source address is dropped.
    let before = p["policy"]["drop_spoofed_ipv4"].as_u64().unwrap_or(0);
    guest.cmd("ip addr add 198.19.1.99/24 dev eth0");
    let _ = guest.try_cmd(&format!("ping -c 2 -W 2 -I 198.19.1.99 {}", far.ip4));
    guest.cmd("ip addr del 198.19.1.99/24 dev eth0");
    let after = port(&t).unwrap()["policy"]["drop_spoofed_ipv4"]
        .as_u64()
        .unwrap_or(0);
    eprintln!("spoofed IPv4 dropped at the port: {}", after - before);
    assert!(
        after > before,
        "no spoofed IPv4 counted: {}",
        port(&t).unwrap()
    );

    // port del: the port and its socket go, the guest is cut off.
    ctl_ok(&t, 1, &["port", "del", "guest"]);
    assert!(port(&t).is_none(), "the port is still listed");
    assert!(
        wait_until(Duration::from_secs(10), || !sock.exists()),
        "the socket {} stayed after port del",
        sock.display()
    );
    assert!(
        !guest.try_cmd(&format!("ping -c 2 -W 2 {}", far.ip4)).0,
        "the guest still reaches vm2a without its port"
    );

    // The same port add again: qemu reconnects, traffic resumes.
    add(&t, &sock);
    assert!(
        guest.reaches(&far.ip4),
        "not after the port was added again\n{}\n{}",
        t.log(1),
        guest.log()
    );
    drop(guest);
    a_qemu_of_another_user_needs_the_sockets_group(&t, &sock, &far.ip4);
}

/// libvirt runs qemu as its own user (libvirt-qemu, qemu), not meshwire's:
/// a qemu running as nobody is refused by the default socket (0660, the
/// daemon's group) and connects once `--vhost-user-group` gives the socket
/// its group.
fn a_qemu_of_another_user_needs_the_sockets_group(t: &Topology, sock: &Path, far: &str) {
    const NOBODY: u32 = 65534;
    let ns = t.hvs[0].ns.clone();
    // Another user reaches the socket through the test's directory.
    let open = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(&t.dir, open).unwrap();
    let how = Launch {
        extra: &[],
        queues: 1,
        as_user: Some(NOBODY),
    };
    let (mode, gid) = mode_and_group(sock);
    assert_eq!((mode, gid), (0o660, 0), "the default socket");
    let refused = VhostGuest::try_launch(&ns, sock, &t.dir, "nobody0", &how);
    let err = refused
        .err()
        .expect("a qemu as nobody connected to root's 0660 socket");
    eprintln!("qemu as nobody, default socket: {}", err.trim());
    assert!(err.contains("Permission denied"), "{err}");

    ctl_ok(t, 1, &["port", "del", "guest"]);
    let group = NOBODY.to_string();
    let more = ["--vhost-user-group", &group, "--vhost-user-mode", "0660"];
    add_with(t, sock, &more);
    assert_eq!(mode_and_group(sock), (0o660, NOBODY));
    let guest = VhostGuest::try_launch(&ns, sock, &t.dir, "nobody", &how)
        .unwrap_or_else(|e| panic!("refused with the socket in its group: {e}"));
    guest.booted();
    assert!(
        guest.reaches(far),
        "qemu as nobody never got through\n{}\n{}",
        t.log(1),
        guest.log()
    );
}

fn mode_and_group(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).expect("the socket file");
    (m.permissions().mode() & 0o777, m.gid())
}
