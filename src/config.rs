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

mod control;
mod metrics;
mod policy;
use crate::tunnel::{PeerSpec, TunnelConfig};
use crate::wire::mtu;
pub use control::{ControlAccess, ControlConfig};
pub use metrics::MetricsConfig;
pub use policy::PolicySpec;

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

/// Parses TOML text and checks every field.
pub fn parse(text: &str, base_dir: &Path) -> Result<Validated, ConfigError> {
    let raw: Config = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
    validate(raw, base_dir)
}

/// Reads and checks a config file.
pub fn load(path: &Path) -> Result<Validated, ConfigError> {
    // The text may hold the private key inline: wiped when done.
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| err("", format!("cannot read {}: {e}", path.display())))?,
    );
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base)
}

fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    // toml names the key in "unknown field" and "missing field" errors but
    // not in type errors; its span does point at the offending line, so the
    // field path is read from there.
    let msg = e.message().trim().to_string();
    let Some(span) = e.span() else {
        return err("", msg);
    };
    let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
    let field = field_at(text, span.start).unwrap_or_default();
    err(field, format!("{msg} (line {line_no})"))
}

/// The dotted path of the key whose line holds byte `pos`: the enclosing
/// table header (with an index for arrays of tables) and the key itself.
fn field_at(text: &str, pos: usize) -> Option<String> {
    let pos = pos.min(text.len());
    let line_start = text[..pos].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    // The last table header before this line, and how often an array table
    // of that name appeared up to here.
    let mut table: Option<String> = None;
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    for l in text[..line_start].lines() {
        let l = l.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
            let name = name.trim().to_string();
            let n = counts.entry(name.clone()).or_insert(0);
            table = Some(format!("{name}[{n}]"));
            *n += 1;
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            table = Some(name.trim().to_string());
        }
    }
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    }
}

/// Upper bound on `node.workers` (and on the per-CPU default).
pub const MAX_WORKERS: usize = 64;

/// The longest MAC-flap freeze: past a day it is an outage, not a guard.
const MAX_FLAP_FREEZE_MS: u64 = 86_400_000;

fn validate(raw: Config, base_dir: &Path) -> Result<Validated, ConfigError> {
    let private_key = node_private_key(&raw.node, base_dir)?;
    let public_key = keys::public_from_private(&private_key);
    if raw.node.listen_port == 0 {
        return Err(err("node.listen_port", "must be 1-65535"));
    }
    if raw.node.mac_flap_freeze_ms > MAX_FLAP_FREEZE_MS {
        return Err(err(
            "node.mac_flap_freeze_ms",
            "must be at most 86400000 (a day)",
        ));
    }
    if raw.node.underlay_mtu < 1280 || raw.node.underlay_mtu > 65535 - 100 {
        return Err(err("node.underlay_mtu", "must be between 1280 and 65435"));
    }
    if raw.node.workers > MAX_WORKERS {
        return Err(err(
            "node.workers",
            format!("must be between 0 (one per CPU) and {MAX_WORKERS}"),
        ));
    }
    check_inner_address("node.address", raw.node.address)?;
    let iv = raw.mesh.originator_interval_ms;
    if !(10..=3_600_000).contains(&iv) {
        return Err(err(
            "mesh.originator_interval_ms",
            "must be between 10 and 3600000",
        ));
    }
    if let Some(t) = raw.mesh.peer_timeout_ms {
        if t < iv || t > 3_600_000 {
            return Err(err(
                "mesh.peer_timeout_ms",
                "must be at least originator_interval_ms and at most 3600000",
            ));
        }
    }
    raw.control.access()?;
    raw.metrics.listen_addr()?;

    let mut peers = Vec::with_capacity(raw.peers.len());
    if raw.peers.len() > crate::tunnel::MAX_PEERS {
        return Err(err(
            "peer",
            format!(
                "{} peers; at most {}",
                raw.peers.len(),
                crate::tunnel::MAX_PEERS
            ),
        ));
    }
    let mut seen_keys = HashSet::new();
    let mut seen_addrs = HashSet::new();
    for (i, p) in raw.peers.iter().enumerate() {
        let f = |k: &str| format!("peer[{i}].{k}");
        let pk = keys::decode_key(&p.public_key).map_err(|m| err(f("public_key"), m))?;
        if pk == public_key {
            return Err(err(f("public_key"), "is this node's own public key"));
        }
        if !seen_keys.insert(pk) {
            return Err(err(f("public_key"), "appears twice"));
        }
        check_inner_address(&f("address"), p.address)?;
        if p.address == raw.node.address {
            return Err(err(f("address"), "is this node's own address"));
        }
        if p.address.is_ipv4() != raw.node.address.is_ipv4() {
            return Err(err(
                f("address"),
                "must be of the same family as node.address (gretap local/remote)",
            ));
        }
        if !seen_addrs.insert(p.address) {
            return Err(err(f("address"), "appears twice"));
        }
        let endpoint = match &p.endpoint {
            None => None,
            Some(s) => Some(parse_endpoint(s).map_err(|m| err(f("endpoint"), m))?),
        };
        if let Some(mtu) = p.mtu {
            // IPv6's minimum link MTU; batman fragments need room.
            if !(1280..=65000).contains(&mtu) {
                return Err(err(f("mtu"), "must be between 1280 and 65000"));
            }
        }
        if p.persistent_keepalive == Some(0) {
            // wg(8) treats 0 as off; accept it the same way.
        }
        peers.push(ValidPeer {
            public_key: pk,
            endpoint,
            address: p.address,
            persistent_keepalive: p.persistent_keepalive.filter(|&k| k > 0),
            mtu: p.mtu,
        });
    }

    let mut seen_ports = HashSet::new();
    let mut seen_devices = HashSet::new();
    for (i, p) in raw.ports.iter().enumerate() {
        let f = format!("port[{i}].name");
        check_ifname(&p.name).map_err(|m| err(&f, m))?;
        if !seen_ports.insert(p.name.clone()) {
            return Err(err(f, "appears twice"));
        }
        if let Some(dev) = &p.attach {
            let f = format!("port[{i}].attach");
            check_ifname(dev).map_err(|m| err(&f, m))?;
            if !seen_devices.insert(dev.clone()) {
                return Err(err(f, "this device is attached twice"));
            }
            if p.mtu.is_some() {
                return Err(err(
                    format!("port[{i}].mtu"),
                    "an attached device keeps its own MTU (libvirt's): remove the key",
                ));
            }
            if !p.offload {
                return Err(err(
                    format!("port[{i}].offload"),
                    "an attached device always carries virtio headers: remove the key",
                ));
            }
        }
        if let Some(mtu) = p.mtu {
            if !(576..=65000).contains(&mtu) {
                return Err(err(
                    format!("port[{i}].mtu"),
                    "must be between 576 and 65000",
                ));
            }
        }
        p.policy_spec().resolve(&format!("port[{i}]"))?;
    }

    Ok(Validated {
        raw,
        private_key,
        public_key,
        peers,
    })
}

/// Warnings about where the private key is kept (see
/// `keys::file_mode_warning` for why these warn rather than refuse).
pub fn key_warnings(cfg: &Validated, config_path: &Path) -> Vec<String> {
    let base = config_path.parent().unwrap_or(Path::new("."));
    let node = &cfg.raw.node;
    let found = match &node.private_key_file {
        Some(p) => keys::file_mode_warning(&base.join(p), "node.private_key_file"),
        None => keys::file_mode_warning(config_path, "the config (it holds node.private_key)"),
    };
    found.into_iter().collect()
}

fn node_private_key(node: &NodeConfig, base_dir: &Path) -> Result<[u8; 32], ConfigError> {
    match (&node.private_key, &node.private_key_file) {
        (Some(_), Some(_)) => Err(err(
            "node.private_key",
            "give either private_key or private_key_file, not both",
        )),
        (None, None) => Err(err(
            "node.private_key",
            "missing (or give node.private_key_file)",
        )),
        (Some(k), None) => keys::decode_key(k).map_err(|m| err("node.private_key", m)),
        (None, Some(path)) => {
            let path = if path.is_relative() {
                base_dir.join(path)
            } else {
                path.clone()
            };
            let text = zeroize::Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| {
                err(
                    "node.private_key_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?);
            keys::decode_key(&text).map_err(|m| err("node.private_key_file", m))
        }
    }
}

fn check_inner_address(field: &str, a: IpAddr) -> Result<(), ConfigError> {
    if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
        return Err(err(field, "must be a unicast address"));
    }
    if let IpAddr::V4(v4) = a {
        if v4.is_broadcast() {
            return Err(err(field, "must be a unicast address"));
        }
    }
    Ok(())
}

/// `host:port` or `[v6]:port`, numeric (no DNS inside a dataplane daemon).
pub fn parse_endpoint(s: &str) -> Result<SocketAddr, String> {
    let sa: SocketAddr = s
        .parse()
        .map_err(|_| format!("'{s}' is not IP:port (IPv6 as [addr]:port)"))?;
    if sa.port() == 0 {
        return Err("port must not be 0".into());
    }
    if sa.ip().is_unspecified() || sa.ip().is_multicast() {
        return Err(format!("'{s}' is not a unicast address"));
    }
    Ok(sa)
}

/// Linux interface names: 1-15 bytes, no '/', ':' or white space.
pub fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err("interface names are 1 to 15 characters".into());
    }
    if name == "." || name == ".." {
        return Err("not a valid interface name".into());
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err("interface names may not hold '/', ':' or white space".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
