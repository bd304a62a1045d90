//! The control plane's outside: a Unix socket that answers JSON requests, and
//! `meshwire ctl` on top of it.

pub mod client;

use clap::Subcommand;

/// `meshwire ctl` subcommands (a contract: extend, never rename).
#[derive(Debug, Clone, Subcommand, serde::Serialize, serde::Deserialize)]
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
}
