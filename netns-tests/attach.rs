//! Issue 12: a port attached to a TAP that another process holds
//! (`[[port]] attach`), the way libvirt's `<interface type='ethernet'>`
//! leaves the VM's TAP to qemu. Here "qemu" is a small program in the
//! hypervisor namespace that holds the file side of the TAP `vnetN` and
//! copies frames to and from a guest NIC (a second TAP whose netdev sits in
//! the VM namespace): to meshwire it is indistinguishable from qemu's
//! userspace virtio-net backend. No bridge anywhere.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// The file side of two TAPs, copied into each other: qemu's part.
const FAKE_QEMU: &str = r#"
import fcntl, os, select, struct, sys
TUNSETIFF, IFF_TAP, IFF_NO_PI = 0x400454ca, 0x0002, 0x1000
def tap(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd
a, b = tap(sys.argv[1]), tap(sys.argv[2])
print("ready", flush=True)
while True:
    r, _, _ = select.select([a, b], [], [])
    for fd in r:
        data = os.read(fd, 65536)
        try:
            os.write(b if fd == a else a, data)
        except OSError:
            pass  # the other side is down: dropped, as qemu drops it
"#;

/// Starts "qemu" for VM `vm` on hypervisor `hv`: TAP `vnet` (left in the
/// hypervisor namespace, up, as libvirt leaves it) and the guest NIC, moved
/// into the VM namespace as eth0 with the VM's addresses.
pub(crate) fn start_qemu(t: &Topology, hv: usize, vm: &Vm, vnet: &str) -> Child {
    let hvns = &t.hvs[hv - 1].ns;
    let nic = format!("g{vnet}");
    let mut child = Command::new("ip")
        .args([
            "netns", "exec", hvns, "python3", "-c", FAKE_QEMU, vnet, &nic,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("fake qemu");
    let mut line = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready", "fake qemu did not start");
    ns_exec(hvns, &["ip", "link", "set", vnet, "up"]);
    ns_exec(hvns, &["ip", "link", "set", &nic, "netns", &vm.ns]);
    ns_exec(&vm.ns, &["ip", "link", "set", "dev", &nic, "name", "eth0"]);
    configure_vm_if(vm);
    child
}

#[test]
fn a_vm_on_an_attached_tap_talks_to_the_mesh_and_survives_its_restart() {
    // vm1a: the attached VM on hv1; vm2a: an ordinary VM on hv2.
    let mut t = Topology::new("mwT", &[&[Attach::External], &[Attach::TapNic]], 500);
    let vnet = "vnet7";
    let vm = t.vm("vm1a").clone();
    t.hvs[0].extra_config = format!("\n[[port]]\nname = \"vm1\"\nattach = \"{vnet}\"\n");
    // meshwire starts before the VM (a daemon restart while the VM is
    // stopped): the port waits for its device.
    t.start_all();
    let mut qemu = start_qemu(&t, 1, &vm, vnet);
    let far = t.vm("vm2a").ip4.clone();
    let far6 = t.vm("vm2a").ip6.clone();
    assert!(
        t.ping_until("vm1a", &far, Duration::from_secs(45)),
        "the attached VM never reached vm2a\n{}",
        t.dump_logs()
    );
    assert!(t.ping("vm1a", &far6, 3, &[]), "IPv6 across the mesh");
    let ports = t.ctl(1, "ports");
    let p = ports
        .as_array()
        .and_then(|l| l.iter().find(|p| p["name"] == "vm1"))
        .unwrap_or_else(|| panic!("{ports}"));
    assert_eq!(p["device"], vnet, "{p}");
    assert_eq!(p["created"], false, "{p}");
    assert!(p["rx_frames"].as_u64().unwrap_or(0) > 0, "{p}");
    // No bridge: meshwire is the only switch the VM's TAP talks to.
    let master = ns_exec(&t.hvs[0].ns, &["ip", "-o", "link", "show", vnet]);
    assert!(!master.contains("master"), "{master}");

    // The VM restarts: its TAP goes away and comes back.
    let _ = qemu.kill();
    let _ = qemu.wait();
    ns_try(&vm.ns, &["ip", "link", "del", "eth0"]);
    qemu = start_qemu(&t, 1, &vm, vnet);
    assert!(
        t.ping_until("vm1a", &far, Duration::from_secs(20)),
        "no traffic after the VM's TAP came back\n{}",
        t.log(1)
    );
    assert!(t.log(1).contains("attached again"), "{}", t.log(1));
    let _ = qemu.kill();
    let _ = qemu.wait();
}
