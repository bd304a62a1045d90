//! Builds the test topology out of network namespaces and runs real
//! `meshwire` daemons in it.
//!
//! ```text
//!   <p>-ul: bridge "br" = the underlay, 198.18.0.0/24
//!     |  veth "ul" in each hypervisor namespace <p>-hvN, 198.18.0.N
//!   <p>-hvN: meshwire (inner address 198.19.0.N), TAP ports:
//!     - TAP-NIC: the TAP netdev is moved into a VM namespace <p>-vmX
//!     - uplink: the TAP is a port of bridge "vmbr" in the hypervisor
//!       namespace, VM namespaces hang off it by veth
//! ```
//!
//! Everything is named with a per-test, per-process prefix and removed in
//! `Drop`, by name and PID. Setup failures panic: these tests must fail, never skip, where
//! namespaces cannot be made.

#![allow(dead_code)]

pub mod liar;
pub mod migration;
mod query;
pub mod raw;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_meshwire");

/// Runs a command, panics with its output if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command, returns whether it succeeded.
pub fn try_sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Kills (SIGKILL) the daemonized process whose pid is in `pidfile` if its
/// command line still holds `marker` (the pid may be someone else's by
/// now), and waits for it to go.
pub fn kill_pidfile(pidfile: &std::path::Path, marker: &str) {
    let Ok(pid) = fs::read_to_string(pidfile) else {
        return;
    };
    let pid = pid.trim();
    let cmdline = fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if cmdline.contains(marker) {
        try_sh(&["kill", "-9", pid]);
        wait_until(Duration::from_secs(5), || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
    }
}

pub fn ns_exec(ns: &str, args: &[&str]) -> String {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    sh(&v)
}

pub fn ns_try(ns: &str, args: &[&str]) -> bool {
    let mut v = vec!["ip", "netns", "exec", ns];
    v.extend_from_slice(args);
    try_sh(&v)
}

/// Polls `f` until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return true;
        }
        sleep(Duration::from_millis(100));
    }
    f()
}

/// How a VM hangs off its hypervisor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Attach {
    /// The meshwire TAP is the VM's NIC.
    TapNic,
    /// The VM sits behind the hypervisor's bridge, whose uplink is a TAP port.
    Bridge,
    /// The test makes the VM's NIC and the port itself (an attached TAP, a
    /// qemu guest): only the VM's namespace is planned.
    External,
}

#[derive(Clone, Debug)]
pub struct Vm {
    pub name: String,
    pub ns: String,
    pub hv: usize,
    pub attach: Attach,
    pub ip4: String,
    pub ip6: String,
    /// Interface name inside the VM namespace.
    pub dev: String,
    pub mac: String,
}

pub struct Hv {
    pub idx: usize,
    pub ns: String,
    pub dir: PathBuf,
    pub private_key: String,
    pub public_key: String,
    pub daemon: Option<Child>,
    pub ports: Vec<String>,
    /// TOML appended to this hypervisor's config (e.g. a `[[peer]]` that is
    /// not a meshwire node of the topology). Empty by default.
    pub extra_config: String,
}

/// Knobs beyond the VM layout.
#[derive(Clone, Debug, Default)]
pub struct Opts {
    /// IPv6 underlay (fd00:18::N) and IPv6 inner addresses (fd00:19::N).
    pub v6: bool,
    /// Which hypervisors peer (WireGuard + batman link); None: a full mesh.
    pub links: Option<Vec<(usize, usize)>>,
    /// Extra lines for the [mesh] section.
    pub mesh_extra: String,
    /// Extra lines for the [node] section.
    pub node_extra: String,
    /// `mtu` of every port (default: meshwire's, fits the underlay).
    pub port_mtu: Option<u16>,
    /// `node.workers` of hypervisor i+1 (missing: the default, one per CPU).
    pub workers: Vec<usize>,
    /// Every TAP-NIC VM's port gets its policy: its MAC and addresses
    /// (`Topology::vm_policy`).
    pub vm_policy: bool,
    /// The `uplink` port names its bridge (`bridge = "vmbr"`): meshwire
    /// enslaves it, the test does not.
    pub bridge_key: bool,
    /// A command line the daemon runs under, between `ip netns exec NS`
    /// and `meshwire run` (e.g. setpriv to drop root); it must exec.
    pub wrap: Vec<String>,
}

pub struct Topology {
    pub prefix: String,
    pub opts: Opts,
    pub hvs: Vec<Hv>,
    pub vms: Vec<Vm>,
    pub dir: PathBuf,
    namespaces: Vec<String>,
    pub ogm_ms: u64,
    /// TOML lines added to a `[[port]]` section, by port name.
    pub port_config: Vec<(String, String)>,
}

pub fn genkey() -> (String, String) {
    let private = sh(&[BIN, "genkey"]).trim().to_string();
    let mut child = Command::new(BIN)
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn meshwire pubkey");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(private.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    (
        private,
        String::from_utf8(out.stdout).unwrap().trim().to_string(),
    )
}

impl Topology {
    /// `layout[i]` lists the VMs of hypervisor i+1.
    pub fn new(prefix: &str, layout: &[&[Attach]], ogm_ms: u64) -> Topology {
        Self::with_opts(prefix, layout, ogm_ms, Opts::default())
    }

    pub fn with_opts(prefix: &str, layout: &[&[Attach]], ogm_ms: u64, opts: Opts) -> Topology {
        assert!(
            meshwire::sys::ns::is_root(),
            "netns tests need root (CI runs as root); refusing to skip"
        );
        let dir = std::env::temp_dir().join(format!("meshwire-{prefix}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut t = Topology {
            // Per process: runs side by side (CI and a developer, two
            // worktrees) never share a namespace name.
            prefix: format!("{prefix}{}", std::process::id()),
            opts,
            hvs: Vec::new(),
            vms: Vec::new(),
            dir,
            namespaces: Vec::new(),
            ogm_ms,
            port_config: Vec::new(),
        };
        // Leftovers of an earlier run of this test that crashed.
        remove_crashed_runs(prefix);
        let ul = t.add_ns("ul");
        ns_exec(
            &ul,
            &["ip", "link", "add", "name", "ulbr", "type", "bridge"],
        );
        ns_exec(&ul, &["ip", "link", "set", "dev", "ulbr", "up"]);
        for (i, vms) in layout.iter().enumerate() {
            t.add_hv(i + 1);
            for (j, attach) in vms.iter().enumerate() {
                t.plan_vm(i + 1, j, *attach);
            }
        }
        t
    }

    fn add_ns(&mut self, name: &str) -> String {
        let ns = format!("{}-{}", self.prefix, name);
        sh(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ns_exec(&ns, &["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn add_hv(&mut self, idx: usize) {
        let ns = self.add_ns(&format!("hv{idx}"));
        let ul = format!("{}-ul", self.prefix);
        let peer = format!("{}h{idx}", self.prefix);
        sh(&[
            "ip", "link", "add", "name", "ul", "netns", &ns, "type", "veth", "peer", "name", &peer,
            "netns", &ul,
        ]);
        ns_exec(&ul, &["ip", "link", "set", &peer, "master", "ulbr", "up"]);
        let (addr, family_opts): (String, &[&str]) = if self.opts.v6 {
            (format!("fd00:18::{idx}/64"), &["nodad"])
        } else {
            (format!("198.18.0.{idx}/24"), &[])
        };
        let mut cmd = vec!["ip", "addr", "add", &addr, "dev", "ul"];
        cmd.extend_from_slice(family_opts);
        ns_exec(&ns, &cmd);
        ns_exec(&ns, &["ip", "link", "set", "ul", "up"]);
        let dir = self.dir.join(format!("hv{idx}"));
        fs::create_dir_all(&dir).unwrap();
        let (private_key, public_key) = genkey();
        self.hvs.push(Hv {
            idx,
            ns,
            dir,
            private_key,
            public_key,
            daemon: None,
            ports: Vec::new(),
            extra_config: String::new(),
        });
    }

    fn plan_vm(&mut self, hv: usize, j: usize, attach: Attach) {
        let letter = (b'a' + j as u8) as char;
        let name = format!("vm{hv}{letter}");
        let ns = self.add_ns(&name);
        let host = hv * 10 + j + 1;
        let vm = Vm {
            name: name.clone(),
            ns,
            hv,
            attach,
            ip4: format!("198.19.1.{host}"),
            ip6: format!("fd00:198:19:1::{host:x}"),
            dev: "eth0".into(),
            mac: format!("02:00:00:01:{hv:02x}:{:02x}", j + 1),
        };
        let hvo = &mut self.hvs[hv - 1];
        match attach {
            Attach::External => {}
            Attach::TapNic => hvo.ports.push(format!("t-{name}")),
            Attach::Bridge => {
                if !hvo.ports.iter().any(|p| p == "uplink") {
                    hvo.ports.push("uplink".into());
                    ns_exec(
                        &hvo.ns,
                        &["ip", "link", "add", "name", "vmbr", "type", "bridge"],
                    );
                    ns_exec(&hvo.ns, &["ip", "link", "set", "vmbr", "up"]);
                }
                let hvns = hvo.ns.clone();
                sh(&[
                    "ip",
                    "link",
                    "add",
                    "name",
                    "eth0",
                    "netns",
                    &vm.ns,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &format!("v-{name}"),
                    "netns",
                    &hvns,
                ]);
                ns_exec(
                    &hvns,
                    &[
                        "ip",
                        "link",
                        "set",
                        &format!("v-{name}"),
                        "master",
                        "vmbr",
                        "up",
                    ],
                );
                configure_vm_if(&vm);
            }
        }
        self.vms.push(vm);
    }

    pub fn config_path(&self, hv: usize) -> PathBuf {
        self.hvs[hv - 1].dir.join("meshwire.toml")
    }

    pub fn socket(&self, hv: usize) -> PathBuf {
        self.hvs[hv - 1].dir.join("ctl.sock")
    }

    /// Inner (gretap) address of a hypervisor.
    pub fn inner(&self, hv: usize) -> String {
        if self.opts.v6 {
            format!("fd00:19::{hv}")
        } else {
            format!("198.19.0.{hv}")
        }
    }

    /// Underlay endpoint of a hypervisor.
    pub fn endpoint(&self, hv: usize) -> String {
        if self.opts.v6 {
            format!("[fd00:18::{hv}]:51820")
        } else {
            format!("198.18.0.{hv}:51820")
        }
    }

    pub fn linked(&self, a: usize, b: usize) -> bool {
        match &self.opts.links {
            None => a != b,
            Some(l) => l.iter().any(|&(x, y)| (x, y) == (a, b) || (y, x) == (a, b)),
        }
    }

    pub fn write_config(&self, hv: usize) {
        let h = &self.hvs[hv - 1];
        let mut c = format!(
            "[node]\nprivate_key = \"{}\"\nlisten_port = 51820\naddress = \"{}\"\n\n[mesh]\noriginator_interval_ms = {}\n{}\n[control]\nsocket = \"{}\"\n",
            h.private_key,
            self.inner(hv),
            self.ogm_ms,
            self.opts.mesh_extra,
            self.socket(hv).display()
        );
        if !self.opts.node_extra.is_empty() {
            c = c.replacen(
                "\n\n[mesh]",
                &format!("\n{}\n[mesh]", self.opts.node_extra),
                1,
            );
        }
        if let Some(w) = self.opts.workers.get(hv - 1) {
            c = c.replacen("\n\n[mesh]", &format!("\nworkers = {w}\n\n[mesh]"), 1);
        }
        for o in &self.hvs {
            if !self.linked(h.idx, o.idx) {
                continue;
            }
            c += &format!(
                "\n[[peer]]\npublic_key = \"{}\"\nendpoint = \"{}\"\naddress = \"{}\"\npersistent_keepalive = 25\n",
                o.public_key,
                self.endpoint(o.idx),
                self.inner(o.idx)
            );
        }
        for p in &h.ports {
            c += &format!("\n[[port]]\nname = \"{p}\"\n");
            if self.opts.bridge_key && p == "uplink" {
                c += "bridge = \"vmbr\"\n";
            }
            if let Some(m) = self.opts.port_mtu {
                c += &format!("mtu = {m}\n");
            }
            if self.opts.vm_policy {
                if let Some(vm) = self.vms.iter().find(|v| format!("t-{}", v.name) == *p) {
                    c += &Topology::vm_policy(vm);
                }
            }
            for (_, extra) in self.port_config.iter().filter(|(n, _)| n == p) {
                c += extra;
            }
        }
        c += &h.extra_config;
        fs::write(self.config_path(hv), c).unwrap();
    }

    /// Starts hypervisor `hv`'s daemon and plumbs its TAPs to the VMs.
    pub fn start(&mut self, hv: usize) {
        self.write_config(hv);
        let log = fs::File::create(self.hvs[hv - 1].dir.join("daemon.log")).unwrap();
        let cfg = self.config_path(hv);
        let h = &mut self.hvs[hv - 1];
        let child = Command::new("ip")
            .args(["netns", "exec", &h.ns])
            .args(&self.opts.wrap)
            .args([BIN, "run", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn meshwire run");
        h.daemon = Some(child);
        // The socket file may be a crashed daemon's: wait for an answer.
        let sock = self.socket(hv);
        let ok = wait_until(Duration::from_secs(20), || {
            try_sh(&[BIN, "ctl", "--socket", sock.to_str().unwrap(), "ports"])
        });
        assert!(
            ok,
            "hv{hv}: the daemon never answered on its control socket; log:\n{}",
            self.log(hv)
        );
        self.plumb(hv);
    }

    /// Moves TAP-NICs into their VMs and enslaves uplinks to the VM bridge.
    pub fn plumb(&self, hv: usize) {
        let h = &self.hvs[hv - 1];
        for vm in self.vms.iter().filter(|v| v.hv == hv) {
            if vm.attach == Attach::TapNic {
                let tap = format!("t-{}", vm.name);
                ns_exec(&h.ns, &["ip", "link", "set", &tap, "netns", &vm.ns]);
                ns_exec(&vm.ns, &["ip", "link", "set", "dev", &tap, "name", "eth0"]);
                configure_vm_if(vm);
            }
        }
        if h.ports.iter().any(|p| p == "uplink") && !self.opts.bridge_key {
            ns_exec(
                &h.ns,
                &["ip", "link", "set", "dev", "uplink", "master", "vmbr", "up"],
            );
        }
    }

    pub fn start_all(&mut self) {
        for i in 1..=self.hvs.len() {
            self.start(i);
        }
    }

    /// Stops a daemon: SIGTERM (clean) or SIGKILL (crash).
    pub fn stop(&mut self, hv: usize, kill: bool) -> Option<std::process::ExitStatus> {
        let h = &mut self.hvs[hv - 1];
        let mut child = h.daemon.take()?;
        // `ip netns exec` execs the daemon, so the child PID is the daemon's.
        let sig = if kill { "-KILL" } else { "-TERM" };
        try_sh(&["kill", sig, &child.id().to_string()]);
        let t = Instant::now();
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if t.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                return child.wait().ok();
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// A VM port's policy keys: its MAC and its two addresses.
    pub fn vm_policy(vm: &Vm) -> String {
        format!(
            "mac = \"{}\"\nipv4 = [\"{}\"]\nipv6 = [\"{}\"]\n",
            vm.mac, vm.ip4, vm.ip6
        )
    }

    pub fn log(&self, hv: usize) -> String {
        fs::read_to_string(self.hvs[hv - 1].dir.join("daemon.log")).unwrap_or_default()
    }

    pub fn vm(&self, name: &str) -> &Vm {
        self.vms
            .iter()
            .find(|v| v.name == name)
            .expect("no such vm")
    }

    pub fn dump_logs(&self) -> String {
        (1..=self.hvs.len())
            .map(|i| format!("--- hv{i} log ---\n{}", self.log(i)))
            .collect()
    }
}

/// Namespaces of an earlier run of this test whose process is gone (a
/// crash or a kill): `<base><pid>-...` with no process `<pid>`. A live
/// run's namespaces are never touched.
fn remove_crashed_runs(base: &str) {
    let list = sh(&["ip", "netns", "list"]);
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(base) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('-') else {
            continue;
        };
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if !Path::new(&format!("/proc/{pid}")).exists() {
            try_sh(&["ip", "netns", "del", name]);
        }
    }
}

/// The VM's eth0 (in its namespace) gets its MAC and addresses, and goes up.
pub fn configure_vm_if(vm: &Vm) {
    ns_exec(&vm.ns, &["ip", "link", "set", "eth0", "address", &vm.mac]);
    ns_exec(
        &vm.ns,
        &[
            "ip",
            "addr",
            "add",
            &format!("{}/24", vm.ip4),
            "dev",
            "eth0",
        ],
    );
    ns_exec(
        &vm.ns,
        &[
            "ip",
            "addr",
            "add",
            &format!("{}/64", vm.ip6),
            "dev",
            "eth0",
            "nodad",
        ],
    );
    ns_exec(&vm.ns, &["ip", "link", "set", "eth0", "up"]);
}

impl Drop for Topology {
    fn drop(&mut self) {
        for i in 1..=self.hvs.len() {
            self.stop(i, true);
        }
        for ns in self.namespaces.iter().rev() {
            try_sh(&["ip", "netns", "del", ns]);
        }
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("kept logs in {}", self.dir.display());
        }
    }
}

pub fn dir_exists(p: &Path) -> bool {
    p.exists()
}
