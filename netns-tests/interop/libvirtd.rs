//! A real libvirtd for the libvirt interop tests (`libvirt.rs`,
//! `libvirt_vhost.rs`): Debian's 9.0 as the system instance in a
//! hypervisor's network namespace, in a private mount namespace whose
//! /etc/libvirt, /run/libvirt, /var/{lib,log,cache}/libvirt, /etc/passwd and
//! /etc/group are the test's own (libvirt wants its `libvirt-qemu` user to
//! exist even when told to run qemu as root), so nothing of it is seen or
//! left outside the test. `contrib/libvirt/meshwire-qemu-hook` is installed
//! as its qemu hook behind a wrapper, as an operator installs it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::common::*;

/// The uid and gid of `libvirt-qemu` in the test's private /etc/passwd
/// (Debian's).
pub const QEMU_ID: u32 = 64055;

/// qemu run as root, no labelling: what the ethernet tests need.
pub const QEMU_AS_ROOT: &str = "user = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\n\
     security_driver = \"none\"\nstdio_handler = \"file\"\n";

/// libvirtd in its own mount namespace, killed (with its guests) on drop.
pub struct Libvirtd {
    pub dir: PathBuf,
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
    /// libvirtd in hypervisor `hv`'s namespace, qemu run as root, listening
    /// on its underlay address for migrations (TCP, no auth: the underlay
    /// is the test's).
    pub fn start(t: &Topology, hv: usize) -> Libvirtd {
        Self::start_with(t, hv, QEMU_AS_ROOT)
    }

    /// As `start`, with `qemu_conf` as qemu.conf.
    pub fn start_with(t: &Topology, hv: usize, qemu_conf: &str) -> Libvirtd {
        let dir = t.dir.join(format!("libvirt{hv}"));
        for d in [
            "etc/hooks",
            "run",
            "lib",
            "log",
            "cache",
            "sock",
            "hook-xml",
        ] {
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
        fs::write(dir.join("etc/qemu.conf"), qemu_conf).unwrap();
        // The hook as an operator installs it, behind a wrapper that names
        // the binary and the socket (libvirt clears the environment). The
        // wrapper also keeps the XML libvirt gave each call
        // (hook-xml/DOMAIN-OP.xml): the tests read what libvirt passes.
        let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/libvirt/meshwire-qemu-hook");
        let xml = dir.join("hook-xml");
        fs::write(
            dir.join("etc/hooks/qemu"),
            format!(
                "#!/bin/sh\ncat > \"{x}/$1-$2.xml\"\n\
                 MESHWIRE={BIN} MESHWIRE_SOCKET={} exec {} \"$@\" < \"{x}/$1-$2.xml\"\n",
                t.socket(hv).display(),
                hook.display(),
                x = xml.display()
            ),
        )
        .unwrap();
        sh(&["chmod", "755", dir.join("etc/hooks/qemu").to_str().unwrap()]);
        // A libvirt-qemu user for this mount namespace only.
        let mut passwd = fs::read_to_string("/etc/passwd").unwrap();
        passwd += &format!(
            "libvirt-qemu:x:{QEMU_ID}:{QEMU_ID}:Libvirt Qemu:/nonexistent:/usr/sbin/nologin\n"
        );
        fs::write(dir.join("passwd"), passwd).unwrap();
        let mut group = fs::read_to_string("/etc/group").unwrap();
        group += &format!("libvirt-qemu:x:{QEMU_ID}:\n");
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

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("libvirtd.log")).unwrap_or_default()
    }

    /// The XML libvirt gave the hook for `domain`'s operation `op`.
    pub fn hook_xml(&self, domain: &str, op: &str) -> String {
        fs::read_to_string(self.dir.join(format!("hook-xml/{domain}-{op}.xml"))).unwrap_or_default()
    }

    pub fn virsh(&self, args: &[&str]) -> (bool, String) {
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

    pub fn create(&self, xml: &Path) {
        let (ok, out) = self.virsh(&["create", xml.to_str().unwrap()]);
        assert!(ok, "virsh create: {out}\n{}", self.log());
    }

    pub fn destroy(&self, domain: &str) {
        let (ok, out) = self.virsh(&["destroy", domain]);
        assert!(ok, "virsh destroy: {out}");
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        let (_, names) = self.virsh(&["list", "--name"]);
        for name in names.lines().map(str::trim).filter(|n| !n.is_empty()) {
            let _ = self.virsh(&["destroy", name]);
        }
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
