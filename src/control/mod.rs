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

use clap::Subcommand;
use serde::{Deserialize, Serialize};

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
