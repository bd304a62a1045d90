//! The control plane's outside: a Unix socket that answers JSON requests, and
//! `meshwire ctl` on top of it.
//!
//! Protocol: the client connects, writes one JSON request on one line
//! (`{"cmd":"peers"}`), and reads one JSON answer (`{"ok":true,"data":...}`
//! or `{"ok":false,"error":"..."}`). Each client is served on its own
//! thread under deadlines, so a slow or hostile local client can stall
//! neither the dataplane nor another client; the dataplane only sees
//! parsed, checked requests through a channel (`server.rs`).

mod args;
pub mod client;
mod event;
mod ping;
pub mod server;
#[cfg(test)]
mod server_tests;
mod session;

pub use args::{parse_request, validate, vhost_access};

use std::net::IpAddr;

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};

use crate::wire::MacAddr;

/// `meshwire ctl` subcommands (a contract: extend, never rename).
#[derive(Debug, Clone, PartialEq, Eq, Subcommand, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum CtlCommand {
    /// WireGuard peers: endpoint, last handshake, rx/tx bytes.
    Peers,
    /// batman-adv originators: next hop and TQ.
    Originators,
    /// The forwarding database: MAC, VLAN and where it lives.
    Fdb,
    /// Local ports (TAP devices).
    Ports,
    /// Counters of every layer: drops by reason, malformed input.
    Stats,
    /// Announce a VM that just arrived on PORT (live migration hooks):
    /// gratuitous ARP for each IPv4 address, unsolicited neighbour
    /// advertisement for each IPv6 address, a RARP (as qemu sends) when no
    /// address is given. Without --mac: every MAC seen on the port.
    Announce {
        #[arg(long)]
        port: String,
        #[arg(long)]
        mac: Option<MacAddr>,
        #[arg(long = "ip", num_args = 1..)]
        #[serde(default)]
        ip: Vec<IpAddr>,
    },
    /// The translation table: the clients this node announces (local) and
    /// those the mesh announces (global), like `batctl tl` / `batctl tg`.
    Tt,
    /// Which node serves a MAC (like `batctl translate`): one of our
    /// ports, an originator, or nobody known.
    Translate {
        mac: MacAddr,
        /// The client's VLAN (default: untagged).
        #[arg(long)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vlan: Option<u16>,
    },
    /// The mesh as this node sees it, as Graphviz DOT: its links with
    /// their TQ, and each originator behind the neighbour it is routed
    /// through (like batadv-vis).
    Graph,
    /// batman ICMP echo requests to an originator or a VM's MAC (like
    /// `batctl ping`; kernel nodes answer too).
    Ping {
        dest: MacAddr,
        /// Requests to send.
        #[arg(short = 'c', long, default_value_t = 5)]
        #[serde(default)]
        count: u32,
        /// Milliseconds between requests.
        #[arg(short = 'i', long, default_value_t = 1000)]
        #[serde(default)]
        interval_ms: u64,
    },
    /// The hops to an originator or a VM's MAC, by batman ICMP with
    /// growing TTLs (like `batctl traceroute`).
    Traceroute {
        dest: MacAddr,
        #[arg(short = 'm', long, default_value_t = 20)]
        #[serde(default)]
        max_hops: u8,
    },
    /// Follow what happens (like `batctl event`): VM moves, peers down and
    /// up, changed routes; one line (or JSON object) per event, until
    /// interrupted, `--count` events or `--seconds`.
    Event {
        #[arg(long)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u32>,
        #[arg(long)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seconds: Option<u64>,
    },
    /// (for `event`) the events after `since` (none: where the log is).
    #[command(hide = true)]
    #[serde(rename = "events-since")]
    EventsSince {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
    /// (for `ping`/`traceroute`) send one echo request.
    #[command(hide = true)]
    #[serde(rename = "icmp-send")]
    IcmpSend {
        dest: MacAddr,
        ttl: u8,
        uid: u8,
        seqno: u16,
    },
    /// (for `ping`/`traceroute`) the answer to one request, if it came.
    #[command(hide = true)]
    #[serde(rename = "icmp-poll")]
    IcmpPoll { uid: u8, seqno: u16 },
    /// Add, remove or change a peer while running (like `wg set`), checked
    /// as the config's `[[peer]]`; the next reload brings the file's peers
    /// back (like `wg syncconf`).
    Peer {
        #[command(subcommand)]
        action: PeerAction,
    },
    /// Re-read the config file and apply what can change while running
    /// (ports and their policies), as SIGHUP does; what needs a restart is
    /// listed and refused. `--dry-run`: the plan only.
    Reload {
        #[arg(long)]
        #[serde(default)]
        dry_run: bool,
    },
    /// The daemon's log filter: shown, or replaced (RUST_LOG syntax:
    /// `debug`, `info,meshwire::dataplane=debug`) until the next restart.
    #[command(name = "log-level")]
    #[serde(rename = "log-level")]
    LogLevel {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<String>,
    },
    /// Add or remove a port (TAP, attached device or vhost-user) at runtime.
    Port {
        #[command(subcommand)]
        action: PortAction,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum PortAction {
    /// Open (create if missing) a TAP and switch it, attach to an
    /// existing device (`--attach vnet3`: a TAP libvirt or qemu holds), or
    /// be a VM's vhost-user device (`--vhost-user /run/meshwire/vm1.sock`).
    Add {
        name: String,
        /// MTU; default: the largest frame that fits the underlay.
        #[arg(long)]
        mtu: Option<u16>,
        /// Attach to this existing device from its network side (AF_PACKET)
        /// instead of opening a TAP `name`.
        #[arg(long)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attach: Option<String>,
        /// Make the TAP a port of this Linux bridge (as `[[port]] bridge`).
        #[arg(long)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bridge: Option<String>,
        /// Be the VM's virtio-net device: listen on this unix socket for
        /// its qemu (as `[[port]] vhost_user`; an absolute path).
        #[arg(long)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vhost_user: Option<std::path::PathBuf>,
        /// The vhost-user socket's group, name or gid (as `[[port]]
        /// vhost_user_group`: the group qemu runs in).
        #[arg(long)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vhost_user_group: Option<String>,
        /// The vhost-user socket's mode, e.g. 0660 (as `[[port]]
        /// vhost_user_mode`).
        #[arg(long)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vhost_user_mode: Option<String>,
        /// Watch the VM's QMP socket at this path (as `[[port]] qmp`).
        #[arg(long)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        qmp: Option<std::path::PathBuf>,
        /// The port's policy (`--mac` makes it a VM port).
        #[command(flatten)]
        #[serde(flatten)]
        policy: PolicyArgs,
    },
    /// Stop switching a port; its MACs leave the FDB and the mesh.
    Del { name: String },
    /// Change a port's policy; keys not given stay, other ports are not
    /// touched. `--ip` replaces the addresses of each family given;
    /// `--vlan 0` puts the port back in the untagged network; `--qmp
    /// PATH` watches the VM's QMP socket from now on (`--qmp ""`: not any
    /// more).
    Set {
        name: String,
        #[arg(long)]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        qmp: Option<std::path::PathBuf>,
        #[command(flatten)]
        #[serde(flatten)]
        policy: PolicyArgs,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum PeerAction {
    /// A new peer (its `[[peer]]` keys).
    Add {
        public_key: String,
        #[command(flatten)]
        #[serde(flatten)]
        keys: PeerArgs,
    },
    /// A peer leaves: its tunnel and its link into the mesh.
    Del { public_key: String },
    /// Change a peer's keys; those not given stay.
    Set {
        public_key: String,
        #[command(flatten)]
        #[serde(flatten)]
        keys: PeerArgs,
    },
}

/// A peer's `[[peer]]` keys on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args, Serialize, Deserialize)]
pub struct PeerArgs {
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_keepalive: Option<u16>,
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
}

/// A port's policy on the command line: the `[[port]]` keys of the same
/// names (README, "Port policy").
#[derive(Debug, Clone, Default, PartialEq, Eq, Args, Serialize, Deserialize)]
pub struct PolicyArgs {
    /// The only source MAC the port may use (a VM port).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// The port's IPv4 and IPv6 addresses (allowed sources).
    #[arg(long = "ip", num_args = 1..)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip: Vec<IpAddr>,
    /// The port's network (VLAN id), untagged toward the port.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// Uplinks: the VLANs carried tagged.
    #[arg(long, num_args = 1..)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trunk: Vec<u16>,
    /// DHCP server messages from the port pass (true/false).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp_server: Option<bool>,
    /// Router advertisements from the port pass (true/false).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_advertisements: Option<bool>,
    /// ARP + NS/NA per second (0: no limit).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_nd_rate: Option<u32>,
    /// Broadcast + multicast + unknown unicast per second (0: no limit).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast_rate: Option<u32>,
    /// The broadcast and multicast kinds the port may send.
    #[arg(long, num_args = 1.., value_enum)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub multicast: Vec<crate::bridge::policy::mcast::McastKind>,
}

impl PolicyArgs {
    /// The config keys these arguments stand for.
    pub fn spec(&self) -> crate::config::PolicySpec {
        crate::config::PolicySpec {
            mac: self.mac,
            ipv4: (self.ip.iter())
                .filter_map(|a| match a {
                    IpAddr::V4(a) => Some(*a),
                    IpAddr::V6(_) => None,
                })
                .collect(),
            ipv6: (self.ip.iter())
                .filter_map(|a| match a {
                    IpAddr::V6(a) => Some(*a),
                    IpAddr::V4(_) => None,
                })
                .collect(),
            vlan: self.vlan,
            trunk: self.trunk.clone(),
            dhcp_server: self.dhcp_server,
            router_advertisements: self.router_advertisements,
            arp_nd_rate: self.arp_nd_rate,
            broadcast_rate: self.broadcast_rate,
            multicast: (!self.multicast.is_empty()).then(|| self.multicast.clone()),
        }
    }
}

/// One answer on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Requests larger than this are refused: a request is one short line.
pub const MAX_REQUEST: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_requests_with_and_without_policy() {
        // What clients from before the policy keys send still parses.
        let old: CtlCommand =
            serde_json::from_str(r#"{"cmd":"port","action":{"action":"add","name":"vm1"}}"#)
                .unwrap();
        let CtlCommand::Port {
            action: PortAction::Add { policy, .. },
        } = old
        else {
            panic!("not a port add")
        };
        assert_eq!(policy, PolicyArgs::default());
        let set = CtlCommand::Port {
            action: PortAction::Set {
                name: "vm1".into(),
                qmp: Some("/run/meshwire/vm1.qmp".into()),
                policy: PolicyArgs {
                    mac: Some("52:54:00:00:00:01".parse().unwrap()),
                    ip: vec!["198.19.1.5".parse().unwrap(), "fd00::5".parse().unwrap()],
                    vlan: Some(10),
                    arp_nd_rate: Some(5),
                    ..PolicyArgs::default()
                },
            },
        };
        let text = serde_json::to_string(&set).unwrap();
        assert_eq!(serde_json::from_str::<CtlCommand>(&text).unwrap(), set);
        let CtlCommand::Port {
            action: PortAction::Set { policy, .. },
        } = set
        else {
            unreachable!()
        };
        let spec = policy.spec();
        assert_eq!(
            spec.ipv4,
            vec!["198.19.1.5".parse::<std::net::Ipv4Addr>().unwrap()]
        );
        assert_eq!(
            spec.ipv6,
            vec!["fd00::5".parse::<std::net::Ipv6Addr>().unwrap()]
        );
        assert_eq!((spec.vlan, spec.arp_nd_rate), (Some(10), Some(5)));
    }
}
