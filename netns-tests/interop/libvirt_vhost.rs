//! Issue 12, the hook's vhost-user case under a real libvirtd (Debian's
//! 9.0, `libvirtd.rs`): the domain's NIC is `<interface type='vhostuser'>`
//! with `mode='client'` (meshwire listens, qemu connects) and its RAM a
//! shared memfd. `contrib/libvirt/meshwire-qemu-hook` adds the port at
//! `prepare`, before libvirt launches qemu, with the domain's MAC and the
//! metadata's address; the guest (the reference VM's kernel and initramfs)
//! pings a VM on another meshwire node and is pinged back, a spoofed
//! source MAC is dropped at the port; `virsh destroy` removes the port and
//! its socket (`release`), and a new `virsh create` brings both back and
//! traffic resumes.
//!
//! qemu runs as the test's `libvirt-qemu` user (qemu.conf user/group, the
//! user in libvirtd's private /etc/passwd), as Debian's libvirt runs it: it
//! connects only because the hook gave the socket qemu's group, mode 0660.
//! The XML libvirt hands the hook at `prepare` carries no DAC `<seclabel>`
//! (libvirt makes the label later, when it prepares the domain, after
//! `prepare`; `started` has it), so the hook takes the group from
//! libvirt's qemu.conf (`group = "libvirt-qemu"`), turned into its gid in
//! libvirt's user database (the test's private /etc/group, which the
//! daemon, outside libvirtd's mount namespace, does not see). The wrapper
//! sets no MESHWIRE_VHOST_USER_GROUP. The test prints what the XML of
//! `prepare` and `started` carry. The kernel and initramfs are copied into a world-readable
//! directory of the test; libvirt's dynamic ownership gives them (and the
//! console) to qemu's user while it runs.
//!
//! qemu 7.2 under TCG segfaults with MSI-X on a vhost-user NIC: the domain
//! sets the device's `vectors` to 0 with `<qemu:override>`.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::common::*;
use super::libvirtd::{Libvirtd, QEMU_ID};
use super::refvm;
use super::vhost::VhostGuest;

const DOMAIN: &str = "mwlv-guest";
const GUEST_MAC: &str = "52:54:00:aa:bb:14";
const GUEST_IP: &str = "198.19.1.14";
const SPOOF_MAC: &str = "52:54:00:de:ad:14";

/// qemu as libvirt-qemu, files labelled for it while it runs. No
/// remembered owners: they live in xattrs the test's /tmp may not take.
const QEMU_CONF: &str = "user = \"libvirt-qemu\"\ngroup = \"libvirt-qemu\"\n\
     dynamic_ownership = 1\nremember_owner = 0\nsecurity_driver = \"none\"\n\
     stdio_handler = \"file\"\n";

fn mkdir_mode(p: &Path, mode: u32) {
    fs::create_dir_all(p).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// The domain: vhost-user NIC on `sock`, shared memfd RAM, the guest's
/// console a unix socket in `con` (logged to `con/console.log`).
fn domain_xml(dir: &Path, sock: &Path, con: &Path) -> PathBuf {
    let build = refvm::build();
    let img = dir.join("img");
    mkdir_mode(&img, 0o755);
    for f in ["vmlinux", "initramfs.cpio"] {
        fs::copy(build.join(f), img.join(f)).unwrap();
        fs::set_permissions(img.join(f), fs::Permissions::from_mode(0o644)).unwrap();
    }
    let xml = format!(
        "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n\
         <name>{DOMAIN}</name>\n\
         <memory unit='MiB'>256</memory>\n\
         <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>\n\
         <vcpu>1</vcpu>\n\
         <metadata>\n\
         <mw:ports xmlns:mw='https://github.com/meshwire/meshwire/libvirt/1'>\n\
         <mw:port mac='{GUEST_MAC}'><mw:ip>{GUEST_IP}</mw:ip></mw:port>\n\
         </mw:ports>\n\
         </metadata>\n\
         <os>\n\
         <type arch='x86_64' machine='pc'>hvm</type>\n\
         <kernel>{}</kernel>\n\
         <initrd>{}</initrd>\n\
         <cmdline>console=ttyS0 panic=-1 quiet rv.name=vhost rv.ip={GUEST_IP}/24</cmdline>\n\
         </os>\n\
         <on_reboot>destroy</on_reboot>\n\
         <devices>\n\
         <interface type='vhostuser'>\n\
         <mac address='{GUEST_MAC}'/>\n\
         <source type='unix' path='{}' mode='client'/>\n\
         <model type='virtio'/>\n\
         <rom enabled='no'/>\n\
         </interface>\n\
         <serial type='unix'><source mode='bind' path='{}'/>\
         <log file='{}' append='off'/></serial>\n\
         </devices>\n\
         <qemu:override>\n\
         <qemu:device alias='net0'><qemu:frontend>\
         <qemu:property name='vectors' type='unsigned' value='0'/>\
         </qemu:frontend></qemu:device>\n\
         </qemu:override>\n\
         </domain>\n",
        img.join("vmlinux").display(),
        img.join("initramfs.cpio").display(),
        sock.display(),
        con.join("console").display(),
        con.join("console.log").display(),
    );
    let path = dir.join("vhost-domain.xml");
    fs::write(&path, xml).unwrap();
    path
}

/// The hook's port: the one whose device is the socket.
fn vhost_port(t: &Topology, sock: &Path) -> Option<Value> {
    let sock = sock.display().to_string();
    t.ctl(1, "ports")
        .as_array()?
        .iter()
        .find(|p| p["device"] == sock.as_str())
        .cloned()
}

/// The uid qemu runs as, from libvirt's pid file.
fn qemu_uid(lv: &Libvirtd) -> Option<u32> {
    let pid = fs::read_to_string(lv.dir.join(format!("run/qemu/{DOMAIN}.pid"))).ok()?;
    let status = fs::read_to_string(format!("/proc/{}/status", pid.trim())).ok()?;
    let uid = status.lines().find(|l| l.starts_with("Uid:"))?;
    uid.split_whitespace().nth(1)?.parse().ok()
}

fn seclabels(xml: &str) -> Vec<&str> {
    xml.lines()
        .filter(|l| l.contains("seclabel") || l.contains("<label>"))
        .map(str::trim)
        .collect()
}

#[test]
fn a_libvirt_guest_on_a_vhost_user_port_through_the_hook() {
    let mut t = Topology::new("mwLV", &[&[Attach::External], &[Attach::TapNic]], 250);
    let sock_dir = t.dir.join("vhost");
    mkdir_mode(&sock_dir, 0o755);
    let sock = sock_dir.join("lvguest.sock");
    t.start_all();
    let lv = Libvirtd::start_with(&t, 1, QEMU_CONF);
    // qemu (libvirt-qemu) binds the console socket and writes its log here.
    let con = lv.dir.join("console");
    mkdir_mode(&con, 0o777);
    let xml = domain_xml(&lv.dir, &sock, &con);
    let far = t.vm("vm2a").clone();
    let fail = |what: &str| -> String {
        format!(
            "{what}\n{}\n{}\nconsole:\n{}",
            lv.log(),
            t.log(1),
            fs::read_to_string(con.join("console.log")).unwrap_or_default()
        )
    };

    lv.create(&xml);
    for op in ["prepare", "started"] {
        eprintln!(
            "DAC label in the XML libvirt gave the hook at {op}: {:?}",
            seclabels(&lv.hook_xml(DOMAIN, op))
        );
    }
    let p = vhost_port(&t, &sock).unwrap_or_else(|| panic!("{}", fail("the hook added no port")));
    eprintln!("the hook's port: {p}");
    assert_eq!(p["name"], "lvguest", "{p}");
    assert_eq!(p["settings"]["mac"], GUEST_MAC, "{p}");
    assert!(p["settings"]["ipv4"].to_string().contains(GUEST_IP), "{p}");
    let m = fs::metadata(&sock).expect("the port's socket");
    assert_eq!(
        (m.mode() & 0o777, m.gid()),
        (0o660, QEMU_ID),
        "the socket is not qemu's group's"
    );
    let uid = qemu_uid(&lv);
    eprintln!("qemu runs as uid {uid:?}");
    assert_eq!(uid, Some(QEMU_ID), "qemu does not run as libvirt-qemu");

    let guest = VhostGuest::console_at(&con, "lv");
    guest.booted();
    let drv = guest.cmd("basename $(readlink /sys/class/net/eth0/device/driver)");
    assert_eq!(drv.trim(), "virtio_net", "the guest's NIC");
    assert!(
        guest.reaches(&far.ip4),
        "{}",
        fail("the guest never reached vm2a")
    );
    assert!(
        t.ping("vm2a", GUEST_IP, 3, &[]),
        "{}",
        fail("vm2a does not reach the guest")
    );
    let p = vhost_port(&t, &sock).unwrap();
    eprintln!("vhost-user port after the pings: {}", p["vhost"]);

    // Another MAC: dropped at the port (the policy the hook gave it).
    let before = p["policy"]["drop_spoofed_mac"].as_u64().unwrap_or(0);
    guest.cmd(&format!("ip link set eth0 address {SPOOF_MAC}"));
    ns_exec(&far.ns, &["ip", "neigh", "flush", "dev", "eth0"]);
    assert!(
        !guest.try_cmd(&format!("ping -c 3 -W 2 {}", far.ip4)).0,
        "a ping from a spoofed MAC was answered"
    );
    let p = vhost_port(&t, &sock).unwrap();
    let after = p["policy"]["drop_spoofed_mac"].as_u64().unwrap_or(0);
    eprintln!("spoofed frames dropped at the port: {}", after - before);
    assert!(after > before, "no spoofed MAC counted: {p}");
    let fdb = t.ctl(2, "fdb");
    assert!(
        !fdb.as_array()
            .unwrap()
            .iter()
            .any(|e| e["mac"] == SPOOF_MAC),
        "the far node learned the spoofed MAC: {fdb}"
    );
    guest.cmd(&format!("ip link set eth0 address {GUEST_MAC}"));
    assert!(
        guest.reaches(&far.ip4),
        "not after the guest took its MAC back"
    );

    // Destroyed: `release` removes the port and its socket.
    lv.destroy(DOMAIN);
    assert!(
        wait_until(Duration::from_secs(30), || vhost_port(&t, &sock).is_none()),
        "{}",
        fail("the port stayed after the VM was released")
    );
    assert!(!sock.exists(), "the socket stayed after the port went");

    // Created again: the port (and socket) back at `prepare`, traffic resumes.
    let _ = fs::remove_file(con.join("console.log"));
    lv.create(&xml);
    assert!(
        vhost_port(&t, &sock).is_some(),
        "{}",
        fail("no port after the restart")
    );
    guest.booted();
    assert!(
        guest.reaches(&far.ip4),
        "{}",
        fail("not after the VM was started again")
    );
    assert!(
        t.ping("vm2a", GUEST_IP, 3, &[]),
        "vm2a does not reach the guest after its restart"
    );
}
