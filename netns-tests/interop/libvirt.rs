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
//! libvirtd runs as the system instance, but in a private mount namespace
//! whose /etc/libvirt, /run/libvirt, /var/{lib,log,cache}/libvirt,
//! /etc/passwd and /etc/group are the test's own (libvirt wants its
//! `libvirt-qemu` user to exist even when told to run qemu as root), so
//! nothing of it is seen or left outside the test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::common::*;
use super::refvm;

const DOMAIN: &str = "mwl-guest";
const GUEST_MAC: &str = "52:54:00:aa:bb:13";
const GUEST_IP: &str = "198.19.1.13";

/// libvirtd in its own mount namespace, killed (with its guests) on drop.
struct Libvirtd {
    dir: PathBuf,
    child: Child,
    /// Mount points this test made on the host, removed on drop.
    made: Vec<PathBuf>,
}

const MOUNT_POINTS: [&str; 4] = [
    "/run/libvirt",
    "/var/lib/libvirt",
    "/var/log/libvirt",
    "/var/cache/libvirt",
];

impl Libvirtd {
    /// libvirtd in hypervisor `hv`'s namespace, listening on its underlay
    /// address for migrations (TCP, no auth: the underlay is the test's).
    fn start(t: &Topology, hv: usize) -> Libvirtd {
        let dir = t.dir.join(format!("libvirt{hv}"));
        for d in ["etc/hooks", "run", "lib", "log", "cache", "sock"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        fs::write(
            dir.join("etc/libvirtd.conf"),
            format!(
                "unix_sock_dir = \"{}\"\nunix_sock_rw_perms = \"0700\"\nauth_unix_rw = \"none\"\n\
                 auth_unix_ro = \"none\"\nlisten_tls = 0\nlisten_tcp = 1\nauth_tcp = \"none\"\n\
                 listen_addr = \"198.18.0.{hv}\"\n",
                dir.join("sock").display()
            ),
        )
        .unwrap();
        fs::write(
            dir.join("etc/qemu.conf"),
            "user = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\n\
             security_driver = \"none\"\nstdio_handler = \"file\"\n",
        )
        .unwrap();
        // The hook as an operator installs it, behind a wrapper that names
        // the binary and the socket (libvirt clears the environment).
        let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/libvirt/meshwire-qemu-hook");
        fs::write(
            dir.join("etc/hooks/qemu"),
            format!(
                "#!/bin/sh\nMESHWIRE={BIN} MESHWIRE_SOCKET={} exec {} \"$@\"\n",
                t.socket(hv).display(),
                hook.display()
            ),
        )
        .unwrap();
        sh(&["chmod", "755", dir.join("etc/hooks/qemu").to_str().unwrap()]);
        // A libvirt-qemu user for this mount namespace only.
        let mut passwd = fs::read_to_string("/etc/passwd").unwrap();
        passwd += "libvirt-qemu:x:64055:64055:Libvirt Qemu:/nonexistent:/usr/sbin/nologin\n";
        fs::write(dir.join("passwd"), passwd).unwrap();
        let mut group = fs::read_to_string("/etc/group").unwrap();
        group += "libvirt-qemu:x:64055:\n";
        fs::write(dir.join("group"), group).unwrap();
        let d = dir.display();
        let script = format!(
            "set -e\n\
             mount --bind {d}/etc /etc/libvirt\n\
             mount --bind {d}/passwd /etc/passwd\n\
             mount --bind {d}/group /etc/group\n\
             mount --bind {d}/run /run/libvirt\n\
             mount --bind {d}/lib /var/lib/libvirt\n\
             mount --bind {d}/log /var/log/libvirt\n\
             mount --bind {d}/cache /var/cache/libvirt\n\
             exec ip netns exec {ns} libvirtd --listen -f /etc/libvirt/libvirtd.conf -p {d}/libvirtd.pid\n",
            ns = t.hvs[hv - 1].ns
        );
        // The mount points (empty; the test's own directories are mounted
        // on them in libvirtd's namespace): made if missing, removed after.
        let made: Vec<PathBuf> = MOUNT_POINTS
            .iter()
            .map(PathBuf::from)
            .filter(|p| !p.exists())
            .collect();
        for p in &made {
            fs::create_dir_all(p).unwrap();
        }
        let log = fs::File::create(dir.join("libvirtd.log")).unwrap();
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("unshare + libvirtd");
        let l = Libvirtd { dir, child, made };
        assert!(
            wait_until(Duration::from_secs(60), || l.virsh(&["version"]).0),
            "libvirtd did not come up:\n{}",
            l.log()
        );
        l
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("libvirtd.log")).unwrap_or_default()
    }

    fn virsh(&self, args: &[&str]) -> (bool, String) {
        let uri = format!(
            "qemu:///system?socket={}",
            self.dir.join("sock/libvirt-sock").display()
        );
        let out = Command::new("virsh")
            .args(["-c", &uri])
            .args(args)
            .output()
            .expect("run virsh");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    fn create(&self, xml: &Path) {
        let (ok, out) = self.virsh(&["create", xml.to_str().unwrap()]);
        assert!(ok, "virsh create: {out}\n{}", self.log());
    }

    fn destroy(&self) {
        let (ok, out) = self.virsh(&["destroy", DOMAIN]);
        assert!(ok, "virsh destroy: {out}");
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        let _ = self.virsh(&["destroy", DOMAIN]);
        if let Ok(pid) = fs::read_to_string(self.dir.join("libvirtd.pid")) {
            try_sh(&["kill", pid.trim()]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for p in &self.made {
            let _ = fs::remove_dir(p);
        }
    }
}

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
    lv.destroy();
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
