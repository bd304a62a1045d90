//! Test support shared by the port and switch tests that touch the kernel:
//! unique device names and network namespaces removed by name on drop.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::{PortId, Ports};

/// `mwt-<pid>-<n>`: unique per test process, short enough for IFNAMSIZ.
pub(crate) fn unique_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "mwt-{}-{}",
        std::process::id() % 1_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The VM topology: a TAP opened by a fresh `Ports` (our fd stays in this
/// namespace) whose netdev is then moved into a new namespace. Returns the
/// device name, the namespace, the registry and the port.
pub(crate) fn tap_in_netns(mtu: u16) -> (String, Netns, Ports, PortId) {
    let name = unique_name();
    let ns = Netns::new(format!("{name}-ns"));
    let mut ports = Ports::new();
    let id = ports.open(&name, mtu).expect("open TAP");
    let ok = Command::new("ip")
        .args(["link", "set", &name, "netns", &ns.0])
        .status()
        .unwrap()
        .success();
    assert!(ok, "ip link set {name} netns {}", ns.0);
    (name, ns, ports, id)
}

/// A network namespace deleted by name on drop, even when the test panics.
pub(crate) struct Netns(pub(crate) String);

impl Netns {
    pub(crate) fn new(name: String) -> Netns {
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        Netns(name)
    }

    pub(crate) fn ip(&self, args: &[&str]) {
        let ok = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip -n {} {args:?}", self.0);
    }

    /// The stdout of `ip -n NS ARGS`, which must succeed.
    pub(crate) fn ip_output(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "ip -n {} {args:?}", self.0);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command inside the namespace; it must succeed.
    pub(crate) fn exec(&self, cmd: &[&str]) {
        let ok = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(cmd)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns exec {} {cmd:?}", self.0);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
