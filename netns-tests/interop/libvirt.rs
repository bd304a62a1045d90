//! Issue 12 with real libvirt: libvirtd (Debian's 9.0) runs in the
//! hypervisor's namespace and starts a qemu guest whose NIC is an
//! `<interface type='ethernet'>`: libvirt makes the TAP (named by libvirt,
//! `vnetN`) and keeps its file side. `contrib/libvirt/meshwire-qemu-hook`, installed as libvirt's qemu
//! hook, adds the meshwire port that attaches to that TAP when the VM has
//! started (policy from the domain: its MAC, its addresses from the
//! meshwire metadata) and removes it when the VM is released. The guest
//! (the reference VM's kernel and initramfs, a plain guest: eth0 only)
//! talks to a VM on another meshwire node; it is destroyed and started
//! again (its TAP goes and comes back) and traffic resumes.
//!
//! libvirtd runs as the system instance in a private mount namespace
//! (`libvirtd.rs`), qemu as root.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::common::*;
use super::libvirtd::Libvirtd;
use super::refvm;

const DOMAIN: &str = "mwl-guest";
const GUEST_MAC: &str = "52:54:00:aa:bb:13";
const GUEST_IP: &str = "198.19.1.13";

fn domain_xml(dir: &Path) -> PathBuf {
    let build = refvm::build();
    let xml = format!(
        "<domain type='qemu'>\n\
         <name>{DOMAIN}</name>\n\
         <memory unit='MiB'>256</memory>\n\
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
         <cmdline>console=ttyS0 panic=-1 quiet rv.name=mwl rv.ip={GUEST_IP}/24 rv.wgport=51820</cmdline>\n\
         </os>\n\
         <on_reboot>destroy</on_reboot>\n\
         <devices>\n\
         <interface type='ethernet'>\n\
         <mac address='{GUEST_MAC}'/>\n\
         <model type='virtio'/>\n\
         <rom enabled='no'/>\n\
         </interface>\n\
         <serial type='file'><source path='{}'/></serial>\n\
         </devices>\n\
         </domain>\n",
        build.join("vmlinux").display(),
        build.join("initramfs.cpio").display(),
        dir.join("console.log").display()
    );
    let path = dir.join("domain.xml");
    fs::write(&path, xml).unwrap();
    path
}

/// The port the hook made for the guest: named after libvirt's TAP
/// (`vnetN`, libvirt's choice), attached to it, with the guest's policy.
fn guest_port(t: &Topology, hv: usize) -> Option<Value> {
    t.ctl(hv, "ports")
        .as_array()?
        .iter()
        .find(|p| p["settings"]["mac"] == GUEST_MAC)
        .cloned()
}

#[test]
fn a_libvirt_guest_on_its_own_tap_through_the_hook() {
    let mut t = Topology::new("mwL", &[&[Attach::External], &[Attach::TapNic]], 250);
    t.start_all();
    let lv = Libvirtd::start(&t, 1);
    let xml = domain_xml(&lv.dir);
    let far = t.vm("vm2a").clone();
    let reach = |what: &str| {
        assert!(
            wait_until(Duration::from_secs(90), || ns_try(
                &far.ns,
                &["ping", "-c", "1", "-W", "2", GUEST_IP]
            )),
            "{what}: vm2a never reached the libvirt guest\n{}\n{}\nconsole:\n{}",
            lv.log(),
            t.log(1),
            fs::read_to_string(lv.dir.join("console.log")).unwrap_or_default()
        );
    };

    lv.create(&xml);
    reach("first start");
    let p = guest_port(&t, 1).unwrap_or_else(|| {
        panic!(
            "the hook added no port: {}\n{}",
            t.ctl(1, "ports"),
            lv.log()
        )
    });
    let tap = p["device"].as_str().unwrap_or_default().to_string();
    assert!(tap.starts_with("vnet"), "not libvirt's TAP: {p}");
    assert_eq!(p["name"], tap.as_str(), "{p}");
    let ips = p["settings"]["ipv4"].to_string();
    assert!(ips.contains(GUEST_IP), "{p}");

    // Destroyed: the hook's release removes the port; started again, the
    // new TAP gets a new port and traffic resumes.
    lv.destroy(DOMAIN);
    assert!(
        wait_until(Duration::from_secs(30), || guest_port(&t, 1).is_none()),
        "the port stayed after the VM was released\n{}",
        lv.log()
    );
    lv.create(&xml);
    reach("after a restart of the VM");
    assert!(guest_port(&t, 1).is_some());
}

/// A live migration between two libvirtds (`virsh migrate --live --p2p`
/// over the underlay) while a VM on a third node pings the guest: the
/// hook adds the port on the destination when its qemu starts (before the
/// guest runs there) and removes it on the source once the guest left;
/// qemu's announcement moves it in the mesh and the pings come back.
#[test]
fn a_libvirt_live_migration_moves_the_port_with_the_guest() {
    let mut t = Topology::new(
        "mwLM",
        &[&[Attach::External], &[Attach::External], &[Attach::TapNic]],
        250,
    );
    t.start_all();
    let src = Libvirtd::start(&t, 1);
    let dst = Libvirtd::start(&t, 2);
    let xml = domain_xml(&src.dir);
    let far = t.vm("vm3a").clone();
    let reach = |what: &str| {
        assert!(
            wait_until(Duration::from_secs(90), || ns_try(
                &far.ns,
                &["ping", "-c", "1", "-W", "2", GUEST_IP]
            )),
            "{what}: vm3a never reached the libvirt guest\n{}\n{}\n{}",
            src.log(),
            dst.log(),
            t.dump_logs()
        );
    };
    src.create(&xml);
    reach("before the migration");
    assert!(guest_port(&t, 1).is_some(), "no port on the source");

    let (ok, out) = src.virsh(&[
        "migrate",
        "--live",
        "--p2p",
        DOMAIN,
        "qemu+tcp://198.18.0.2/system",
        // the destination's own name would resolve outside the namespaces
        "--migrateuri",
        "tcp://198.18.0.2",
    ]);
    assert!(ok, "virsh migrate: {out}\n{}\n{}", src.log(), dst.log());
    let (_, list) = dst.virsh(&["list", "--name"]);
    assert!(
        list.contains(DOMAIN),
        "not running on the destination: {list}"
    );
    assert!(
        wait_until(Duration::from_secs(30), || guest_port(&t, 2).is_some()),
        "the hook added no port on the destination\n{}",
        dst.log()
    );
    assert!(
        wait_until(Duration::from_secs(30), || guest_port(&t, 1).is_none()),
        "the source kept the port\n{}",
        src.log()
    );
    reach("after the migration");
    let fdb = t.ctl(3, "fdb");
    let at = fdb
        .as_array()
        .and_then(|l| l.iter().find(|e| e["mac"] == GUEST_MAC))
        .map(|e| e["location"].clone());
    assert_eq!(
        at,
        Some(Value::from(format!("originator {}", t.originator_of(2)))),
        "hv3 does not send to the destination: {fdb}"
    );
    // Dropped in reverse order: the destination's libvirtd (and its mount
    // namespace) goes first, so the source can remove the mount points it
    // made.
}
