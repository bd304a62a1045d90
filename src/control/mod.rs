//! The control plane's outside: a Unix socket that answers JSON requests, and
//! `meshwire ctl` on top of it.
//!
//! Protocol: the client connects, writes one JSON request on one line
//! (`{"cmd":"peers"}`), and reads one JSON answer (`{"ok":true,"data":...}`
//! or `{"ok":false,"error":"..."}`). The socket I/O runs on its own thread
//! so a slow or hostile local client can never stall the dataplane; the
//! dataplane only sees parsed requests through a channel.

pub mod client;
pub mod server;

use std::net::IpAddr;

use clap::Subcommand;
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
    /// Add or remove a port (TAP) at runtime.
    Port {
        #[command(subcommand)]
        action: PortAction,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum PortAction {
    /// Open (create if missing) a TAP and switch it, or attach to an
    /// existing device (`--attach vnet3`: a TAP libvirt or qemu holds).
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
    },
    /// Stop switching a port; its MACs leave the FDB and the mesh.
    Del { name: String },
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
