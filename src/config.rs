//! The configuration file (TOML). Its keys are a contract with operators'
//! scripts: extend, never rename or drop. Unknown keys are rejected, and
//! every error names the field it is about.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::bridge::policy::mcast::McastKind;
use crate::keys;
use crate::wire::MacAddr;

mod access;
mod control;
mod metrics;
mod policy;
mod validate;
use crate::tunnel::{PeerSpec, TunnelConfig};
use crate::wire::mtu;
pub use access::{vhost_socket, GroupSpec, ModeSpec};
pub use control::{ControlAccess, ControlConfig};
pub use metrics::MetricsConfig;
pub use policy::PolicySpec;
pub use validate::{
    check_ifname, check_raw, key_warnings, load, parse, parse_endpoint, MAX_WORKERS,
};

/// The MTU stock guests use (virtio-net, e1000: 1500).
pub const DEFAULT_PORT_MTU: u16 = 1500;

pub const DEFAULT_SOCKET: &str = "/run/meshwire/meshwire.sock";
pub const DEFAULT_PORT: u16 = 51820;
pub const DEFAULT_OGM_INTERVAL_MS: u64 = 1000;
pub const DEFAULT_UNDERLAY_MTU: u16 = 1500;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    #[serde(default)]
    pub mesh: MeshConfig,
    #[serde(default)]
    pub control: ControlConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerConfig>,
    #[serde(default, rename = "port")]
    pub ports: Vec<PortConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub private_key: Option<String>,
    pub private_key_file: Option<PathBuf>,
    #[serde(default = "default_port")]
    pub listen_port: u16,
    /// This node's inner (gretap local) address.
    pub address: IpAddr,
    /// MTU of the underlay path; port MTUs are derived from it.
    #[serde(default = "default_underlay_mtu")]
    pub underlay_mtu: u16,
    /// Dataplane worker threads, each with its own UDP socket
    /// (SO_REUSEPORT) and its own queue of every TAP. Absent or 0: one per
    /// CPU the process may run on.
    #[serde(default)]
    pub workers: usize,
    /// Clamp the MSS of TCP SYNs crossing a port so TCP segments cross
    /// every link whole (no batman fragments). On by default.
    #[serde(default = "default_true")]
    pub mss_clamp: bool,
    /// A MAC that moves 5 times in 180 s is frozen where it is for this
    /// long (0, the default: logged and counted only).
    #[serde(default)]
    pub mac_flap_freeze_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshConfig {
    #[serde(default = "default_ogm_interval")]
    pub originator_interval_ms: u64,
    /// Carry unicast frames that do not fit a link as batman-adv fragments
    /// (as the kernel's `fragmentation` setting, on by default there too).
    #[serde(default = "default_true")]
    pub fragmentation: bool,
    /// A peer with no authenticated packet for this long (or whose
    /// handshakes keep failing) is dead: its link leaves the mesh at once
    /// instead of waiting for TQ to decay. Default: 5 originator intervals,
    /// at least 3 s. Every live batman neighbour sends OGMs each interval,
    /// so set it above the slowest neighbour's interval.
    pub peer_timeout_ms: Option<u64>,
    /// How OGMs and broadcasts are re-sent to other meshwire nodes:
    /// "scoped" (default) skips neighbours that hear the originator
    /// directly, so a full mesh sends N, not N², control packets per node;
    /// "kernel" re-sends as batman-adv does. Links to kernel nodes always
    /// follow the kernel's rules.
    #[serde(default)]
    pub relay: RelayConfig,
    /// Take part in batman-adv's distributed ARP table (the kernel's
    /// `distributed_arp_table`, on by default there too; see README
    /// "ARP/ND suppression").
    #[serde(default = "default_true")]
    pub distributed_arp_table: bool,
    /// Announce batman-adv's MCAST TVLV (see README "Multicast"); false =
    /// none, kernel nodes then flood all multicast as broadcast.
    #[serde(default = "default_true")]
    pub multicast: bool,
}

/// `mesh.relay`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayConfig {
    #[default]
    Scoped,
    Kernel,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            originator_interval_ms: DEFAULT_OGM_INTERVAL_MS,
            fragmentation: true,
            peer_timeout_ms: None,
            relay: RelayConfig::default(),
            distributed_arp_table: true,
            multicast: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub public_key: String,
    pub endpoint: Option<String>,
    pub address: IpAddr,
    pub persistent_keepalive: Option<u16>,
    /// Largest batman packet on the link to this peer, as the MTU of a
    /// kernel node's `gt-<peer>` gretap (1382 with wg0 defaults); larger
    /// unicasts leave as batman fragments. Default and cap: what
    /// node.underlay_mtu carries.
    pub mtu: Option<u16>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    pub name: String,
    /// MTU of the TAP; default: the largest frame that fits the underlay.
    pub mtu: Option<u16>,
    /// TAP offloads (virtio-net header, checksum, TSO/USO): the kernel
    /// hands over 64 KB segments and meshwire cuts them itself. On by
    /// default; off for a TAP someone else created without vnet headers.
    #[serde(default = "default_true")]
    pub offload: bool,
    /// Merge a UDP flow's datagrams toward the TAP into USO super-frames
    /// (one write for up to 64). Off by default: see README, "Ports".
    #[serde(default)]
    pub udp_coalescing: bool,
    /// Attach to this existing device (a TAP that libvirt or qemu created
    /// and holds) from its network side with AF_PACKET, instead of opening
    /// a TAP named `name`; `name` stays the port's name.
    #[serde(default)]
    pub attach: Option<String>,
    /// Be the VM's virtio-net device over vhost-user (a contract key):
    /// meshwire listens on this unix socket, the VM's qemu connects as the
    /// client (`-netdev vhost-user`, libvirt `<interface type='vhostuser'>`);
    /// `name` stays the port's name. An absolute path.
    #[serde(default)]
    pub vhost_user: Option<std::path::PathBuf>,
    /// The vhost-user socket file's group (name or gid): qemu connects
    /// only with write permission on the file, so this is the group
    /// libvirt runs qemu in (kvm, qemu). Absent: the daemon's group.
    /// Applied by a reload.
    pub vhost_user_group: Option<GroupSpec>,
    /// The vhost-user socket file's mode ("0660" or 0o660; default 0660).
    /// Nothing for others: whoever connects becomes this VM's network.
    pub vhost_user_mode: Option<ModeSpec>,
    /// A Linux bridge this port is a port of (a contract key): meshwire
    /// enslaves its TAP at start, keeps the TAP across its own restarts
    /// (persistent, so the VMs behind the bridge stay attached) and, before
    /// `ctl announce` on the port, removes the announced MACs from the
    /// bridge's FDB entry for this port.
    #[serde(default)]
    pub bridge: Option<String>,
    /// A QMP unix socket of the port's VM (qemu `-qmp
    /// unix:PATH,server=on,wait=off`) that meshwire watches: the
    /// destination of a live migration claims the VM's MAC the moment the
    /// guest runs there, and frames for it go to both places while it
    /// moves (README, "Live migration"). Applied by a reload.
    #[serde(default)]
    pub qmp: Option<PathBuf>,
    // The port policy (README, "Port policy"; checks in `config/policy.rs`).
    /// The only source MAC the port may use: a port with `mac` is a VM port.
    pub mac: Option<MacAddr>,
    /// Allowed IPv4 sources and ARP sender addresses.
    #[serde(default)]
    pub ipv4: Vec<Ipv4Addr>,
    /// Allowed IPv6 sources (the link-local from `mac` and :: for DAD too).
    #[serde(default)]
    pub ipv6: Vec<Ipv6Addr>,
    /// The port's network, untagged toward the port.
    pub vlan: Option<u16>,
    /// Uplinks only: the VLANs carried tagged.
    #[serde(default)]
    pub trunk: Vec<u16>,
    /// DHCP server messages from this port pass (default: off for VM ports).
    pub dhcp_server: Option<bool>,
    /// RAs and redirects from this port pass (default: off for VM ports).
    pub router_advertisements: Option<bool>,
    /// ARP + NS/NA per second (burst: one second's worth); 0: no limit.
    pub arp_nd_rate: Option<u32>,
    /// Broadcast + multicast + unknown unicast per second; 0: no limit.
    pub broadcast_rate: Option<u32>,
    /// The broadcast and multicast kinds the port may send (absent: all).
    pub multicast: Option<Vec<McastKind>>,
}

fn default_true() -> bool {
    true
}
fn default_port() -> u16 {
    DEFAULT_PORT
}
fn default_ogm_interval() -> u64 {
    DEFAULT_OGM_INTERVAL_MS
}
fn default_underlay_mtu() -> u16 {
    DEFAULT_UNDERLAY_MTU
}

/// A config that passed every check, with keys decoded and endpoints resolved.
#[derive(Debug, Clone)]
pub struct Validated {
    pub raw: Config,
    pub private_key: [u8; 32],
    pub public_key: [u8; 32],
    pub peers: Vec<ValidPeer>,
}

#[derive(Debug, Clone)]
pub struct ValidPeer {
    pub public_key: [u8; 32],
    pub endpoint: Option<SocketAddr>,
    pub address: IpAddr,
    pub persistent_keepalive: Option<u16>,
    pub mtu: Option<u16>,
}

/// A config error: the field it is about and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// Our copies of the private key are wiped when dropped (a reload drops
/// the previous config; boringtun's StaticSecret wipes its own).
impl Drop for Validated {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.private_key);
    }
}

impl Drop for NodeConfig {
    fn drop(&mut self) {
        if let Some(k) = &mut self.private_key {
            zeroize::Zeroize::zeroize(k);
        }
    }
}

impl Validated {
    fn v6(&self) -> bool {
        self.raw.node.address.is_ipv6()
            || self
                .peers
                .iter()
                .any(|p| p.address.is_ipv6() || p.endpoint.map(|e| e.is_ipv6()).unwrap_or(false))
    }

    /// The largest batman packet (Ethernet payload of a hard interface)
    /// that fits the underlay without IP fragmentation.
    pub fn hardif_mtu(&self) -> u16 {
        let m = mtu::hardif_mtu(usize::from(self.raw.node.underlay_mtu), self.v6());
        u16::try_from(m).unwrap_or(u16::MAX)
    }

    /// The hard interface MTU towards peer `i`: its `mtu`, capped at
    /// [`Validated::hardif_mtu`].
    pub fn peer_hardif_mtu(&self, i: usize) -> u16 {
        let cap = self.hardif_mtu();
        self.peers
            .get(i)
            .and_then(|p| p.mtu)
            .map_or(cap, |m| m.min(cap))
    }

    /// Dataplane workers: `node.workers`, or one per CPU we may run on.
    pub fn workers(&self) -> usize {
        match self.raw.node.workers {
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_WORKERS),
            n => n,
        }
    }

    pub fn peer_timeout(&self) -> std::time::Duration {
        let m = &self.raw.mesh;
        std::time::Duration::from_millis(
            m.peer_timeout_ms
                .unwrap_or((5 * m.originator_interval_ms).max(3000)),
        )
    }

    /// The largest VM MTU whose frames cross the mesh whole, without batman
    /// fragments (see README, "MTU arithmetic").
    pub fn unfragmented_port_mtu(&self) -> u16 {
        let m = mtu::unfragmented_port_mtu(usize::from(self.hardif_mtu()));
        u16::try_from(m).unwrap_or(u16::MAX)
    }

    /// Default port MTU: 1500, what every stock guest uses. Frames that do
    /// not fit a link whole travel as batman fragments (README, "MTU
    /// arithmetic"); a port MTU of [`Validated::unfragmented_port_mtu`]
    /// avoids them where the guests can be told. With fragmentation off
    /// nothing larger could cross, so the default is that one.
    pub fn default_port_mtu(&self) -> u16 {
        if self.raw.mesh.fragmentation {
            DEFAULT_PORT_MTU
        } else {
            self.unfragmented_port_mtu()
        }
    }

    /// What the tunnel layer needs of the file (the transport does not know
    /// the TOML schema).
    pub fn tunnel_config(&self) -> TunnelConfig {
        TunnelConfig {
            private_key: self.private_key,
            listen_port: self.raw.node.listen_port,
            local_inner: self.raw.node.address,
            underlay_mtu: self.raw.node.underlay_mtu,
            peers: self
                .peers
                .iter()
                .map(|p| PeerSpec {
                    public_key: p.public_key,
                    endpoint: p.endpoint,
                    inner: p.address,
                    persistent_keepalive: p.persistent_keepalive,
                })
                .collect(),
        }
    }

    pub fn port_mtu(&self, port: &PortConfig) -> u16 {
        port.mtu.unwrap_or_else(|| self.default_port_mtu())
    }
}

#[cfg(test)]
mod tests;
