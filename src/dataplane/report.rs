//! Answers to control requests, built from the live tables of each layer.
//! The keys of these JSON objects are what `meshwire ctl --json` prints and
//! what scripts read: extend, never rename.
//!
//! The big tables (FDB and translation table: 100k + 65k entries at the
//! caps; originators; peers) are answered in two steps: [`snapshot`]
//! copies them while the node is held (plain structs, no strings), and
//! the control client's thread formats, joins and sorts the copy after the
//! node is let go, so the workers wait only for the copy.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::{mesh_report, Node};
use crate::control::server::Render;
use crate::control::CtlCommand;
use crate::mesh::TtGlobalInfo;
use crate::port::Ports;
use crate::wire::MacAddr;

/// The reports built outside the node lock: the copy is taken now, the
/// returned function builds the JSON later on another thread. None: not
/// one of them (see [`answer`]).
pub fn snapshot(node: &Node, cmd: &CtlCommand, now: Instant) -> Option<Render> {
    match cmd {
        CtlCommand::Fdb => {
            let fdb = node.bridge.switch.fdb_snapshot();
            let tt = node.bridge.mesh.tt_global_copy();
            Some(Box::new(move |out| {
                let entries = fdb.entries(now);
                write(out, &FdbRows::new(&entries, tt))
            }))
        }
        CtlCommand::Originators => {
            let list = originators_copy(node);
            Some(Box::new(move |out| write(out, &originators_json(list))))
        }
        CtlCommand::Peers => {
            let list = peers_copy(node);
            Some(Box::new(move |out| write(out, &peers_json(list))))
        }
        CtlCommand::Tt => {
            let tt = mesh_report::tt_copy(node);
            Some(Box::new(move |out| write(out, &mesh_report::tt_json(tt))))
        }
        CtlCommand::Graph => {
            let g = mesh_report::graph_copy(node);
            Some(Box::new(move |out| {
                write(out, &json!({ "dot": mesh_report::graph_dot(g) }))
            }))
        }
        _ => None,
    }
}

/// `ports` are worker 0's queues (the others' counts come from the board).
pub fn answer(node: &Node, ports: &Ports, cmd: &CtlCommand, now: Instant) -> Result<Value, String> {
    Ok(match cmd {
        CtlCommand::Peers => peers_json(peers_copy(node)),
        CtlCommand::Originators => originators_json(originators_copy(node)),
        CtlCommand::Fdb => {
            let entries = node.bridge.switch.fdb_entries(now);
            to_value(&FdbRows::new(&entries, node.bridge.mesh.tt_global_copy()))
        }
        CtlCommand::Ports => port_list(node, ports),
        CtlCommand::Stats => stats(node, ports),
        CtlCommand::Tt => mesh_report::tt_json(mesh_report::tt_copy(node)),
        CtlCommand::Translate { mac, vlan } => mesh_report::translate(node, *mac, *vlan, now),
        CtlCommand::Graph => {
            json!({ "dot": mesh_report::graph_dot(mesh_report::graph_copy(node)) })
        }
        // Commands that change state are the daemon's, not a report's.
        CtlCommand::Announce { .. }
        | CtlCommand::Port { .. }
        | CtlCommand::LogLevel { .. }
        | CtlCommand::Reload { .. }
        | CtlCommand::Ping { .. }
        | CtlCommand::Traceroute { .. }
        | CtlCommand::IcmpSend { .. }
        | CtlCommand::IcmpPoll { .. }
        | CtlCommand::Event { .. }
        | CtlCommand::EventsSince { .. }
        | CtlCommand::Peer { .. } => return Err("not a report".into()),
    })
}

fn to_value<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// A peer's stats with what the node knows of its link.
pub struct PeerRow {
    stats: crate::tunnel::PeerStats,
    address: Option<std::net::IpAddr>,
    hardif_mac: Option<MacAddr>,
    link_up: bool,
}

pub(super) fn peers_copy(node: &Node) -> Vec<PeerRow> {
    node.tunnels
        .peer_stats()
        .into_iter()
        .map(|stats| {
            let peer = node.peers.iter().find(|p| p.0 == stats.peer);
            let link = peer.and_then(|(id, _)| node.bridge.link(*id));
            PeerRow {
                address: peer.map(|p| p.1),
                hardif_mac: link.map(|l| l.mac),
                link_up: link.is_some_and(|l| l.up),
                stats,
            }
        })
        .collect()
}

pub(super) fn peers_json(rows: Vec<PeerRow>) -> Value {
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let list: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut v = to_value(&r.stats);
            if let Value::Object(m) = &mut v {
                m.insert("address".into(), json!(r.address));
                m.insert("hardif_mac".into(), json!(r.hardif_mac));
                m.insert("link_up".into(), json!(r.link_up));
                let ago = m
                    .get("last_handshake")
                    .and_then(Value::as_u64)
                    .map(|t| format!("{}s ago", unix_now.saturating_sub(t)));
                m.insert("last_handshake_ago".into(), json!(ago));
            }
            v
        })
        .collect();
    Value::Array(list)
}

/// Each originator with the name of the peer its next hop is reached through.
fn originators_copy(node: &Node) -> Vec<(crate::mesh::OriginatorInfo, Option<String>)> {
    node.bridge
        .mesh
        .originators()
        .into_iter()
        .map(|o| {
            let via = o
                .hardif
                .and_then(|h| node.bridge.link_by_hardif(h))
                .map(|l| l.name.clone());
            (o, via)
        })
        .collect()
}

fn originators_json(list: Vec<(crate::mesh::OriginatorInfo, Option<String>)>) -> Value {
    let list: Vec<Value> = list
        .iter()
        .map(|(o, via)| {
            let mut v = to_value(o);
            if let Value::Object(m) = &mut v {
                if let Some(orig) = m.get("orig").cloned() {
                    m.insert("originator".into(), orig);
                }
                m.insert("via".into(), json!(via));
            }
            v
        })
        .collect();
    Value::Array(list)
}

/// Streams a report's data as JSON into the client's connection.
fn write<T: serde::Serialize>(out: &mut dyn std::io::Write, t: &T) -> std::io::Result<()> {
    serde_json::to_writer(out, t).map_err(std::io::Error::other)
}

/// One row of `ctl fdb` (fields in the order `json!` gave them).
#[derive(serde::Serialize)]
struct FdbRow<'a> {
    age_ms: Option<u64>,
    location: std::borrow::Cow<'a, str>,
    mac: MacAddr,
    source: FdbSource,
    vlan: u16,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum FdbSource {
    Learned(crate::switch::Source),
    Named(&'static str),
}

/// The FDB, and the clients known only from the translation table (that
/// is where unicast to them goes): one pass over each, joined by a set,
/// serialized row by row as they are made (no table of rows, no text of
/// the whole answer in memory).
struct FdbRows<'a> {
    entries: &'a [crate::switch::FdbInfo],
    tt: Vec<TtGlobalInfo>,
    known: std::collections::HashSet<(MacAddr, u16)>,
}

impl<'a> FdbRows<'a> {
    fn new(entries: &'a [crate::switch::FdbInfo], mut tt: Vec<TtGlobalInfo>) -> FdbRows<'a> {
        tt.sort_by_key(|e| (e.mac, e.vid, e.orig));
        let known = entries.iter().map(|e| (e.mac, e.vid & 0x0fff)).collect();
        FdbRows { entries, tt, known }
    }
}

impl serde::Serialize for FdbRows<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fdb = self.entries.iter().map(|e| FdbRow {
            age_ms: Some(e.age_ms),
            location: std::borrow::Cow::Borrowed(&e.location),
            mac: e.mac,
            source: FdbSource::Learned(e.learned),
            vlan: e.vid & 0x0fff,
        });
        let tt = (self.tt.iter())
            .filter(|g| !self.known.contains(&(g.mac, g.vid & 0x0fff)))
            .map(|g| FdbRow {
                age_ms: None,
                location: std::borrow::Cow::Owned(format!("originator {}", g.orig)),
                mac: g.mac,
                source: FdbSource::Named("translation-table"),
                vlan: g.vid & 0x0fff,
            });
        s.collect_seq(fdb.chain(tt))
    }
}

pub(super) fn port_list(node: &Node, ports: &Ports) -> Value {
    // Worker 0's queues are at hand; the others' counts are what they last
    // published.
    let others = node.board.reports();
    let list: Vec<Value> = ports
        .info()
        .iter_mut()
        .map(|p| {
            for r in others.iter().filter(|r| r.worker != 0) {
                for (_, c) in r.ports.iter().filter(|(id, _)| *id == p.id) {
                    p.counters.add(c);
                }
            }
            let c = &p.counters;
            let drops = c.rx_drop_short
                + c.rx_drop_oversize
                + c.rx_errors
                + c.rx_drop_ring
                + c.tx_drop_short
                + c.tx_drop_oversize
                + c.tx_drop_busy
                + c.tx_errors;
            let hooks = node.bridge.hooks.port_counters(p.id);
            let drops = drops + hooks.drops();
            let mut v = to_value(p);
            if let Value::Object(m) = &mut v {
                m.insert("policy".into(), to_value(&hooks));
                // The port's policy settings, and an address its DHCP ACK
                // taught it.
                let settings = node.bridge.hooks.policy(p.id);
                m.insert("settings".into(), to_value(&settings));
                let learned = node.bridge.hooks.learned_v4(p.id);
                m.insert("learned_ipv4".into(), json!(learned));
                m.insert("rx_frames".into(), json!(c.rx_frames));
                m.insert("tx_frames".into(), json!(c.tx_frames));
                m.insert("rx_bytes".into(), json!(c.rx_bytes));
                m.insert("tx_bytes".into(), json!(c.tx_bytes));
                m.insert("drops".into(), json!(drops));
            }
            v
        })
        .collect();
    Value::Array(list)
}

pub(super) fn stats(node: &Node, ports: &Ports) -> Value {
    // The node's own path (timers, control) plus every worker's.
    let workers = node.board.reports();
    let mut tunnel = node.tunnels.counters().clone();
    for w in &workers {
        tunnel.add(&w.tunnel);
    }
    let mut bridge = to_value(node.bridge.counters());
    if let Value::Object(m) = &mut bridge {
        let refused: u64 = workers.iter().map(|w| w.tunnel_send_errors).sum();
        m.insert("tunnel_send_errors".into(), json!(refused));
    }
    json!({
        "node": bridge,
        "hooks": to_value(node.bridge.hooks.counters()),
        "arp_nd": to_value(&node.bridge.arp_nd_counters()),
        "mcast_snoop": to_value(&node.bridge.snoop_counters()),
        "tunnel": to_value(&tunnel),
        "mesh": to_value(node.bridge.mesh.counters()),
        "switch": to_value(node.bridge.switch.counters()),
        "ports": to_value(ports.counters()),
        "workers": to_value(&workers),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::switch::{FdbInfo, Source};

    /// The rows keep the keys and values scripts read (`ctl fdb --json`),
    /// and a TT entry the FDB also holds is listed once.
    #[test]
    fn fdb_rows_keep_their_json_shape() {
        let mac = |b: u8| MacAddr([2, 0, 0, 0, 0, b]);
        let entries = vec![FdbInfo {
            mac: mac(1),
            vid: 0x8000 | 10,
            location: "port vm1".into(),
            port: Some(0),
            originator: None,
            age_ms: 7,
            learned: Source::Port,
        }];
        let tt = vec![
            TtGlobalInfo {
                mac: mac(1),
                vid: 0x8000 | 10,
                orig: mac(9),
                flags: 0,
            },
            TtGlobalInfo {
                mac: mac(2),
                vid: 0,
                orig: mac(9),
                flags: 0,
            },
        ];
        let v = to_value(&FdbRows::new(&entries, tt));
        assert_eq!(
            v,
            json!([
                {"mac": mac(1), "vlan": 10, "location": "port vm1", "source": "port", "age_ms": 7},
                {"mac": mac(2), "vlan": 0, "location": format!("originator {}", mac(9)),
                 "source": "translation-table", "age_ms": null},
            ])
        );
        // The text a client receives is that, key for key.
        let mut text = Vec::new();
        write(&mut text, &FdbRows::new(&entries, Vec::new())).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(
            text,
            format!(
                r#"[{{"age_ms":7,"location":"port vm1","mac":"{}","source":"port","vlan":10}}]"#,
                mac(1)
            )
        );
    }
}
