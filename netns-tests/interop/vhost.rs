//! Issue 12, vhost-user ports, with a real qemu guest (TCG, the reference
//! VM's kernel and initramfs booted as a plain host): hv1's meshwire is
//! the guest's virtio-net device (`[[port]] vhost_user`), qemu connects to
//! its socket with the guest's memory in a shared memfd. The guest pings
//! and runs TCP both ways with a VM on hv2 (a TAP VM in a namespace), its
//! port's policy drops what it sends from another MAC (counted), and then
//! qemu restarts (a fresh connection on the same socket) and meshwire
//! restarts under the running guest (qemu reconnects): traffic resumes
//! each time. Figures are printed, never asserted beyond "it flows".

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::common::*;
use super::refvm::rv_build_dir;

const NAME: &str = "mwV";
pub const GUEST_IP: &str = "198.19.1.13";
const GUEST_IP6: &str = "fd00:198:19:1::13";
pub const GUEST_MAC: &str = "52:54:00:76:68:01";
const SPOOF_MAC: &str = "52:54:00:de:ad:02";

/// How `VhostGuest::try_launch` starts qemu.
pub struct Launch<'a> {
    /// More arguments (an `-incoming`, `-global`s).
    pub extra: &'a [String],
    /// Queue pairs, and as many vCPUs.
    pub queues: usize,
    /// Run qemu as this uid and gid (setpriv), as libvirt runs it as its
    /// own user; then qemu does not retry the socket (no reconnect=1) and
    /// fails at once when it may not connect.
    pub as_user: Option<u32>,
}

/// A qemu whose NIC is a vhost-user device on `sock`; killed on drop.
pub struct VhostGuest {
    dir: PathBuf,
    tag: String,
}

impl VhostGuest {
    pub fn start(ns: &str, sock: &Path, dir: &Path, tag: &str) -> VhostGuest {
        let g = Self::launch(ns, sock, dir, tag, &[]);
        g.booted();
        g
    }

    /// Starts qemu with `extra` arguments (an `-incoming`, `-global`s) and
    /// a QMP socket (`qmp` in its directory), without waiting for a boot.
    pub fn launch(ns: &str, sock: &Path, dir: &Path, tag: &str, extra: &[String]) -> VhostGuest {
        Self::launch_with(ns, sock, dir, tag, extra, 1)
    }

    /// As `launch`, with `queues` queue pairs (and as many vCPUs, so the
    /// guest's driver uses them all).
    pub fn launch_with(
        ns: &str,
        sock: &Path,
        dir: &Path,
        tag: &str,
        extra: &[String],
        queues: usize,
    ) -> VhostGuest {
        let how = Launch {
            extra,
            queues,
            as_user: None,
        };
        Self::try_launch(ns, sock, dir, tag, &how).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts qemu as `how` says; Err(qemu's complaint) when it would not
    /// start.
    pub fn try_launch(
        ns: &str,
        sock: &Path,
        dir: &Path,
        tag: &str,
        how: &Launch<'_>,
    ) -> Result<VhostGuest, String> {
        let (extra, queues) = (how.extra, how.queues);
        let build = super::refvm::build();
        assert!(
            build.join("vmlinux").exists(),
            "no guest kernel in {}",
            build.display()
        );
        let _ = rv_build_dir();
        let dir = dir.join(format!("qemu-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let _ = std::fs::remove_file(dir.join("console.log"));
        // Another user's qemu reads the guest's kernel from, and writes its
        // console and pid files into, its own directory.
        let (kernel, initrd, runas) = match how.as_user {
            None => (build.join("vmlinux"), build.join("initramfs.cpio"), vec![]),
            Some(id) => {
                for f in ["vmlinux", "initramfs.cpio"] {
                    std::fs::copy(build.join(f), dir.join(f)).unwrap();
                }
                std::os::unix::fs::chown(&dir, Some(id), Some(id)).unwrap();
                let id = id.to_string();
                let runas = ["setpriv", "--reuid", &id, "--regid", &id, "--clear-groups"];
                let runas = runas.map(String::from).to_vec();
                (dir.join("vmlinux"), dir.join("initramfs.cpio"), runas)
            }
        };
        let accel = std::fs::read_to_string(build.join("accel")).unwrap_or_default();
        let accel: &[&str] = if accel.trim() == "kvm" {
            &["-enable-kvm", "-cpu", "host"]
        } else {
            &["-accel", "tcg", "-cpu", "max"]
        };
        let con = format!(
            "socket,id=con,path={},server=on,wait=off,logfile={}",
            dir.join("console").display(),
            dir.join("console.log").display()
        );
        // The client side of the socket; reconnect=1: when meshwire
        // restarts, qemu tries again every second.
        // Without it (as_user: qemu should fail at once when refused).
        let reconnect = if how.as_user.is_none() {
            ",reconnect=1"
        } else {
            ""
        };
        let chardev = format!("socket,id=vu,path={}{reconnect}", sock.display());
        // vectors=0 (INTx) under TCG: qemu 7.2 with MSI-X and a vhost-user
        // net device dereferences its KVM irqfd table, which TCG never
        // allocates, when the driver starts the device (a segfault in
        // virtio_pci_vector_unmask). With KVM, MSI-X.
        let vectors = if accel.contains(&"-enable-kvm") {
            ""
        } else {
            ",vectors=0"
        };
        let mq = if queues > 1 { ",mq=on" } else { "" };
        let nic = format!("virtio-net-pci,netdev=n0,mac={GUEST_MAC},romfile={vectors}{mq}");
        let netdev = format!("vhost-user,id=n0,chardev=vu,queues={queues}");
        let smp = queues.to_string();
        let append = format!("console=ttyS0 panic=-1 quiet rv.name=vhost rv.ip={GUEST_IP}/24");
        let out = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(runas)
            .arg("qemu-system-x86_64")
            .args(accel)
            .args([
                "-smp",
                &smp,
                "-m",
                "256",
                "-name",
                &format!("mwvhost-{tag}"),
            ])
            // vhost-user needs the guest's RAM in memory the backend can map.
            .args(["-object", "memory-backend-memfd,id=mem,size=256M,share=on"])
            .args(["-machine", "memory-backend=mem"])
            .args([
                "-display",
                "none",
                "-nodefaults",
                "-no-user-config",
                "-no-reboot",
            ])
            .args(["-chardev", &con, "-serial", "chardev:con"])
            .arg("-kernel")
            .arg(kernel)
            .arg("-initrd")
            .arg(initrd)
            .args(["-append", &append])
            .args(["-chardev", &chardev, "-netdev", &netdev])
            .args(["-device", &nic])
            .args([
                "-qmp",
                &format!("unix:{},server=on,wait=off", dir.join("qmp").display()),
            ])
            .args(extra)
            .args(["-daemonize", "-pidfile"])
            .arg(dir.join("pid"))
            .output()
            .expect("qemu-system-x86_64");
        if !out.status.success() {
            return Err(format!(
                "qemu {tag} did not start: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(VhostGuest {
            dir,
            tag: tag.to_string(),
        })
    }

    /// The console of a guest this test did not launch (libvirt's), whose
    /// serial socket is `dir/console` and its log `dir/console.log`:
    /// dropping it kills nothing (`dir` holds no pid file).
    pub fn console_at(dir: &Path, tag: &str) -> VhostGuest {
        VhostGuest {
            dir: dir.to_path_buf(),
            tag: tag.to_string(),
        }
    }

    /// Waits for the guest's shell.
    pub fn booted(&self) {
        assert!(
            // The console's shell starts after RV-READY: what is typed
            // before it is lost.
            wait_until(Duration::from_secs(150), || self
                .log()
                .contains("refvm-vhost#")),
            "the guest did not boot:\n{}",
            self.log()
        );
    }

    /// qemu's QMP socket.
    pub fn qmp_path(&self) -> PathBuf {
        self.dir.join("qmp")
    }

    pub fn log(&self) -> String {
        // Lossy: a serial console carries the odd byte that is not UTF-8.
        let bytes = std::fs::read(self.dir.join("console.log")).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Runs a shell command on the guest's console: its success and output.
    pub fn try_cmd(&self, c: &str) -> (bool, String) {
        self.try_cmd_for(c, Duration::from_secs(90))
    }

    /// `try_cmd`, giving up after `limit`.
    pub fn try_cmd_for(&self, c: &str, limit: Duration) -> (bool, String) {
        let id = format!(
            "{}{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        // Markers built at run time so that the echoed line does not match.
        let line = format!("echo RV-B\"EGIN-{id}\"; {{ {c} ; }} 2>&1; echo RV-E\"ND-{id} rc=$?\"");
        // The connection stays open until the command ended: qemu reads
        // the socket only as fast as the guest's UART takes bytes, and what
        // it has not read when we close is lost.
        // What qemu echoes to us is read and dropped (the log file has it):
        // unread, it stalls the guest's console output.
        let mut s = UnixStream::connect(self.dir.join("console")).expect("console");
        let mut echo = s.try_clone().expect("console clone");
        std::thread::spawn(move || std::io::copy(&mut echo, &mut std::io::sink()));
        writeln!(s, "{line}").unwrap();
        let end = format!("RV-END-{id} rc=");
        let mut out = None;
        wait_until(limit, || {
            let log = self.log().replace('\r', "");
            let Some(e) = log.find(&end) else {
                return false;
            };
            // The output starts after the begin marker's line, the last
            // line before it that ends with the id (the echoed command has
            // quotes after it; a UART may garble the marker's start).
            let head = &log[..e];
            let b = head
                .rfind(&format!("{id}\n"))
                .map_or(0, |b| b + id.len() + 1);
            let rc = log[e + end.len()..]
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            out = Some((rc == "0", head[b..].to_string()));
            true
        });
        let _ = s.shutdown(std::net::Shutdown::Both);
        out.unwrap_or((false, format!("'{c}' did not finish\n{}", self.log())))
    }

    pub fn cmd(&self, c: &str) -> String {
        let (ok, out) = self.try_cmd(c);
        assert!(ok, "on the guest, '{c}' failed:\n{out}");
        out
    }

    pub fn reaches(&self, ip: &str) -> bool {
        wait_until(Duration::from_secs(40), || {
            self.try_cmd_for(&format!("ping -c 1 -W 2 {ip}"), Duration::from_secs(15))
                .0
        })
    }
}

impl Drop for VhostGuest {
    fn drop(&mut self) {
        kill_pidfile(&self.dir.join("pid"), &format!("mwvhost-{}", self.tag));
    }
}

fn port(t: &Topology) -> Value {
    let ports = t.ctl(1, "ports");
    ports
        .as_array()
        .and_then(|l| l.iter().find(|p| p["name"] == "guest"))
        .cloned()
        .unwrap_or_else(|| panic!("no port guest: {ports}"))
}

fn iperf_server(t: &Topology, vm: &str) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &t.vm(vm).ns, "iperf3", "-s", "-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_real_qemu_guest_on_a_vhost_user_port() {
    let mut t = Topology::new(NAME, &[&[Attach::External], &[Attach::TapNic]], 250);
    let sock = t.dir.join("vhost/guest.sock");
    t.hvs[0].extra_config = format!(
        "\n[[port]]\nname = \"guest\"\nvhost_user = \"{}\"\nmac = \"{GUEST_MAC}\"\n\
         ipv4 = [\"{GUEST_IP}\"]\nipv6 = [\"{GUEST_IP6}\"]\n",
        sock.display()
    );
    t.start_all();
    let ns = t.hvs[0].ns.clone();
    let guest = VhostGuest::start(&ns, &sock, &t.dir, "a");
    let far = t.vm("vm2a").clone();
    let drv = guest.cmd("basename $(readlink /sys/class/net/eth0/device/driver)");
    assert_eq!(drv.trim(), "virtio_net", "the guest's NIC");

    // v4 and v6, full-size frames with DF.
    assert!(
        guest.reaches(&far.ip4),
        "the guest never reached vm2a\n{}\n{}",
        t.dump_logs(),
        guest.log()
    );
    let (ok, out) = guest.try_cmd(&format!("ping -M do -s 1472 -c 3 -W 3 {}", far.ip4));
    assert!(ok, "DF 1472-byte ping from the guest failed:\n{out}");
    guest.cmd(&format!("ip -6 addr add {GUEST_IP6}/64 dev eth0 nodad"));
    assert!(
        guest.reaches(&far.ip6),
        "the guest never reached vm2a over IPv6\n{}",
        t.dump_logs()
    );
    assert!(
        t.ping("vm2a", GUEST_IP, 3, &[]),
        "vm2a does not reach the guest"
    );
    let feats = guest.cmd("cat /sys/class/net/eth0/device/features");
    eprintln!("vhost-user guest features: {}", feats.trim());

    // TCP both ways.
    for reverse in [false, true] {
        let mut server = iperf_server(&t, "vm2a");
        std::thread::sleep(Duration::from_millis(300));
        let r = if reverse { " -R" } else { "" };
        let out = guest.cmd(&format!("iperf3 -c {} -t 3{r}", far.ip4));
        let _ = server.wait();
        let mbit = crate::guest::receiver_mbits(&out);
        eprintln!("vhost-user guest TCP (reverse {reverse}): {mbit:.0} Mbit/s");
        assert!(mbit > 1.0, "TCP stalled (reverse {reverse}):\n{out}");
    }
    let p = port(&t);
    eprintln!("vhost-user port after iperf3: {p}");
    assert_eq!(p["device"], sock.display().to_string().as_str(), "{p}");

    // Another MAC: dropped at the port, counted, never learnt.
    let before = p["policy"]["drop_spoofed_mac"].as_u64().unwrap_or(0);
    guest.cmd(&format!("ip link set eth0 address {SPOOF_MAC}"));
    ns_exec(&far.ns, &["ip", "neigh", "flush", "dev", "eth0"]);
    assert!(
        !guest.try_cmd(&format!("ping -c 3 -W 2 {}", far.ip4)).0,
        "a ping from a spoofed MAC was answered"
    );
    let after = port(&t)["policy"]["drop_spoofed_mac"].as_u64().unwrap_or(0);
    assert!(after > before, "no spoofed MAC counted: {}", port(&t));
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
        "not after the guest took its own MAC back"
    );

    // qemu restarts: a new connection on the same socket.
    drop(guest);
    let guest = VhostGuest::start(&ns, &sock, &t.dir, "b");
    assert!(
        guest.reaches(&far.ip4),
        "not after qemu restarted\n{}",
        t.log(1)
    );

    // meshwire restarts under the running guest: qemu reconnects.
    t.stop(1, false);
    t.start(1);
    assert!(
        guest.reaches(&far.ip4),
        "not after meshwire restarted\n{}\n{}",
        t.log(1),
        guest.log()
    );
}
