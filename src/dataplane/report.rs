//! Answers to control requests, built from the live tables of each layer.
//! The keys of these JSON objects are what `meshwire ctl --json` prints and
//! what scripts read: extend, never rename.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::Node;
use crate::control::CtlCommand;
use crate::port::Ports;
use crate::wire::MacAddr;

/// `ports` are worker 0's queues (the others' counts come from the board).
pub fn answer(node: &Node, ports: &Ports, cmd: &CtlCommand, now: Instant) -> Result<Value, String> {
    Ok(match cmd {
        CtlCommand::Peers => peers(node),
        CtlCommand::Originators => originators(node),
        CtlCommand::Fdb => fdb(node, now),
        CtlCommand::Ports => port_list(node, ports),
        CtlCommand::Stats => stats(node, ports),
        // Commands that change state are the daemon's, not a report's.
        CtlCommand::Announce { .. } | CtlCommand::Port { .. } => return Err("not a report".into()),
    })
}

fn to_value<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

fn peers(node: &Node) -> Value {
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let list: Vec<Value> = node
        .tunnels
        .peer_stats()
        .iter()
        .map(|s| {
            let mut v = to_value(s);
            let peer = node.peers.iter().find(|p| p.0 == s.peer);
            let link = peer.and_then(|(id, _)| node.bridge.link(*id));
            if let Value::Object(m) = &mut v {
                m.insert("address".into(), json!(peer.map(|p| p.1)));
                m.insert("hardif_mac".into(), json!(link.map(|l| l.mac)));
                m.insert("link_up".into(), json!(link.is_some_and(|l| l.up)));
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

fn originators(node: &Node) -> Value {
    let list: Vec<Value> = node
        .bridge
        .mesh
        .originators()
        .iter()
        .map(|o| {
            let mut v = to_value(o);
            if let Value::Object(m) = &mut v {
                if let Some(orig) = m.get("orig").cloned() {
                    m.insert("originator".into(), orig);
                }
                // Name the peer the next hop is reached through, for people.
                let via = m
                    .get("hardif")
                    .and_then(Value::as_u64)
                    .and_then(|h| u32::try_from(h).ok())
                    .and_then(|h| node.bridge.link_by_hardif(h))
                    .map(|l| l.name.clone());
                m.insert("via".into(), json!(via));
            }
            v
        })
        .collect();
    Value::Array(list)
}

fn fdb(node: &Node, now: Instant) -> Value {
    let entries = node.bridge.switch.fdb_entries(now);
    // Clients known only from the translation table are part of the picture:
    // that is where unicast to them goes. (A set, not a scan per entry: the
    // node is held while this runs, and both tables can hold thousands.)
    let known: std::collections::HashSet<(MacAddr, u16)> =
        entries.iter().map(|e| (e.mac, e.vid & 0x0fff)).collect();
    let mut list: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "mac": e.mac,
                "vlan": e.vid & 0x0fff,
                "location": e.location,
                "source": to_value(&e.learned),
                "age_ms": e.age_ms,
            })
        })
        .collect();
    for g in node.bridge.mesh.tt_global_entries() {
        if known.contains(&(g.mac, g.vid & 0x0fff)) {
            continue;
        }
        list.push(json!({
            "mac": g.mac,
            "vlan": g.vid & 0x0fff,
            "location": format!("originator {}", g.orig),
            "source": "translation-table",
            "age_ms": null,
        }));
    }
    Value::Array(list)
}

fn port_list(node: &Node, ports: &Ports) -> Value {
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

fn stats(node: &Node, ports: &Ports) -> Value {
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
        "tunnel": to_value(&tunnel),
        "mesh": to_value(node.bridge.mesh.counters()),
        "switch": to_value(node.bridge.switch.counters()),
        "ports": to_value(ports.counters()),
        "workers": to_value(&workers),
    })
}
