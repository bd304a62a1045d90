//! `contrib/libvirt/meshwire-qemu-hook` run as libvirt runs it (domain XML
//! on stdin, `DOMAIN OPERATION SUB-OPERATION EXTRA`) against a real daemon
//! in a network namespace of its own (`unshare -n`: root, as CI runs; it
//! fails, never skips, without). One domain with a vhost-user interface and
//! an `<interface type='ethernet'>`: `prepare` adds the vhost-user port
//! (before qemu would connect) with the MAC and the metadata's addresses,
//! `started` attaches the TAP, `reconnect` changes nothing and says
//! nothing, `release` removes both and the socket. The socket gets the
//! group qemu runs in (the domain's DAC label, else the wrapper's
//! MESHWIRE_VHOST_USER_GROUP, else libvirt's qemu.conf's `group`, a name
//! turned into its gid by the hook). A second domain whose socket has the
//! same file name is refused on stderr without touching the first one's
//! port; a `mode='server'` interface is reported.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{tmpdir, BIN};

const MAC: &str = "52:54:00:aa:bb:13";
const TAP_MAC: &str = "52:54:00:aa:bb:14";

/// A daemon alone in a new network namespace; killed on drop.
struct Daemon {
    child: Child,
    ctl: PathBuf,
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        let key = Command::new(BIN).arg("genkey").output().unwrap().stdout;
        std::fs::write(dir.join("key"), key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let ctl = dir.join("ctl.sock");
        std::fs::write(
            dir.join("meshwire.toml"),
            format!(
                "[node]\nprivate_key_file = \"{}\"\nlisten_port = 51820\naddress = \"198.19.0.1\"\n\n\
                 [control]\nsocket = \"{}\"\n",
                dir.join("key").display(),
                ctl.display()
            ),
        )
        .unwrap();
        let child = Command::new("unshare")
            .args(["-n", BIN, "run", "--config"])
            .arg(dir.join("meshwire.toml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
            .spawn()
            .expect("unshare (util-linux)");
        let d = Daemon { child, ctl };
        let t = Instant::now();
        while !d.ctl(&["ports"]).0 {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the daemon never answered (unshare -n needs root); log:\n{}",
                std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    fn ctl(&self, args: &[&str]) -> (bool, String) {
        let o = Command::new(BIN)
            .args(["ctl", "--socket", self.ctl.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
        )
    }

    fn ports(&self) -> Vec<serde_json::Value> {
        let (ok, out) = self.ctl(&["ports", "--json"]);
        assert!(ok, "{out}");
        serde_json::from_str::<serde_json::Value>(&out)
            .unwrap()
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn port(&self, name: &str) -> Option<serde_json::Value> {
        self.ports().into_iter().find(|p| p["name"] == name)
    }

    /// Runs the hook as libvirt would; its stderr (it always exits 0).
    fn hook(&self, domain: &str, op: &str, xml: &str) -> String {
        self.hook_env(domain, op, xml, &[])
    }

    /// `hook` with more environment (what a wrapper would set).
    fn hook_env(&self, domain: &str, op: &str, xml: &str, env: &[(&str, &str)]) -> String {
        let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/libvirt/meshwire-qemu-hook");
        let mut c = Command::new("python3")
            .arg(hook)
            .args([domain, op, "begin", "-"])
            .env("MESHWIRE", BIN)
            .env("MESHWIRE_SOCKET", &self.ctl)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3");
        use std::io::Write;
        c.stdin.take().unwrap().write_all(xml.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "the hook failed the VM's {op}");
        String::from_utf8_lossy(&o.stderr).into_owned()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mode_and_group(p: &Path) -> (u32, u32) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::symlink_metadata(p).expect("the socket file");
    (m.permissions().mode() & 0o777, m.gid())
}

fn domain(sock: &Path, mode: &str, tap: &str) -> String {
    format!(
        "<domain type='kvm' xmlns:mw='https://github.com/meshwire/meshwire/libvirt/1'>\n\
         <name>vm1</name>\n\
         <seclabel type='dynamic' model='dac' relabel='yes'><label>+64055:+64056</label></seclabel>\n\
         <metadata><mw:ports><mw:port mac='{MAC}' vlan='10'>\
         <mw:ip>198.19.1.13</mw:ip><mw:ip>fd00:198:19:1::13</mw:ip></mw:port></mw:ports></metadata>\n\
         <devices>\n\
         <interface type='vhostuser'><mac address='{MAC}'/>\
         <source type='unix' path='{}' mode='{mode}'><reconnect enabled='yes' timeout='1'/></source>\
         <model type='virtio'/></interface>\n\
         <interface type='ethernet'><mac address='{TAP_MAC}'/><target dev='{tap}'/>\
         <model type='virtio'/></interface>\n\
         </devices></domain>\n",
        sock.display()
    )
}

#[test]
fn the_qemu_hook_adds_and_removes_vhost_user_and_attached_ports() {
    let dir = tmpdir("hook");
    let d = Daemon::start(&dir);
    let sock = dir.join("run/vm1.sock");
    let pid = d.child.id().to_string();
    // The TAP libvirt would have made by `started`, in the daemon's namespace.
    let tap = "vnet7";
    let made = Command::new("nsenter")
        .args([
            "-t", &pid, "-n", "ip", "tuntap", "add", "dev", tap, "mode", "tap",
        ])
        .status()
        .unwrap();
    assert!(made.success(), "ip tuntap add in the daemon's namespace");
    let xml = domain(&sock, "client", tap);

    // prepare: the vhost-user port is there before qemu starts; the TAP's
    // port waits for `started`.
    let err = d.hook("vm1", "prepare", &xml);
    assert!(err.is_empty(), "prepare: {err}");
    let p = d
        .port("vm1")
        .unwrap_or_else(|| panic!("no port vm1: {:?}", d.ports()));
    assert_eq!(p["device"], sock.display().to_string().as_str(), "{p}");
    assert_eq!(p["settings"]["mac"], MAC, "{p}");
    assert_eq!(p["settings"]["vlan"], 10, "{p}");
    assert_eq!(p["settings"]["ipv4"][0], "198.19.1.13", "{p}");
    assert_eq!(p["settings"]["ipv6"][0], "fd00:198:19:1::13", "{p}");
    assert!(sock.exists(), "no socket for qemu at {}", sock.display());
    // qemu runs as the DAC label's user: the socket is its group's.
    assert_eq!(mode_and_group(&sock), (0o660, 64056));
    assert!(d.port(tap).is_none(), "the TAP's port before started");

    // started, then reconnect (libvirtd restarted): the TAP is attached,
    // nothing is added twice and nothing is reported.
    for op in ["started", "reconnect"] {
        let err = d.hook("vm1", op, &xml);
        assert!(err.is_empty(), "{op}: {err}");
    }
    let t = d
        .port(tap)
        .unwrap_or_else(|| panic!("no port {tap}: {:?}", d.ports()));
    assert_eq!(t["settings"]["mac"], TAP_MAC, "{t}");
    assert_eq!(d.ports().len(), 2, "{:?}", d.ports());

    // Another domain with a socket of the same file name: refused by name,
    // vm1's port untouched.
    let other = dir.join("other/vm1.sock");
    let xml2 = domain(&other, "client", "vnet8").replace(MAC, "52:54:00:aa:bb:99");
    let err = d.hook("vm2", "prepare", &xml2);
    assert!(err.contains("another port is named vm1"), "{err}");
    assert_eq!(d.port("vm1").unwrap()["settings"]["mac"], MAC);
    assert!(!other.exists(), "a socket was made for the refused port");
    // qemu as the server cannot be served: said, nothing added.
    let err = d.hook("vm3", "prepare", &domain(&other, "server", "vnet9"));
    assert!(err.contains("mode='client'"), "{err}");
    assert_eq!(d.ports().len(), 2, "{:?}", d.ports());

    // release: both ports and the socket go.
    let err = d.hook("vm1", "release", &xml);
    assert!(err.is_empty(), "release: {err}");
    assert!(d.ports().is_empty(), "{:?}", d.ports());
    let t0 = Instant::now();
    while sock.exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!sock.exists(), "the socket stayed after release");

    // No DAC label in the XML: the group the wrapper names.
    let plain = xml.replace("+64055:+64056", "");
    let env = [("MESHWIRE_VHOST_USER_GROUP", "4242")];
    let err = d.hook_env("vm1", "prepare", &plain, &env);
    assert!(err.is_empty(), "prepare: {err}");
    assert_eq!(mode_and_group(&sock), (0o660, 4242));
    d.hook("vm1", "release", &plain);

    // Neither (what a real libvirtd gives `prepare`): the group libvirt's
    // qemu.conf names, a name the hook turns into its gid.
    let conf = dir.join("qemu.conf");
    std::fs::write(
        &conf,
        "#group = \"root\"\nuser = \"nobody\"\n group = \"daemon\"\n",
    )
    .unwrap();
    let daemon_gid: u32 = std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("daemon:x:")?.split(':').next()?.parse().ok())
        .expect("a group daemon in /etc/group");
    let env = [("MESHWIRE_LIBVIRT_QEMU_CONF", conf.to_str().unwrap())];
    let err = d.hook_env("vm1", "prepare", &plain, &env);
    assert!(err.is_empty(), "prepare: {err}");
    assert_eq!(mode_and_group(&sock), (0o660, daemon_gid));
    d.hook("vm1", "release", &plain);
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
