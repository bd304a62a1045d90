//! The mesh reports of `meshwire ctl`: the translation table (`tt`, like
//! `batctl tl`/`tg`), which node serves a MAC (`translate`, like `batctl
//! translate`), and the mesh as Graphviz DOT (`graph`, like batadv-vis).
//! The tables are copied while the node is held and formatted after.

use std::fmt::Write as _;
use std::time::Instant;

use serde_json::{json, Value};

use super::Node;
use crate::mesh::{OriginatorInfo, TtGlobalInfo, TtLocalInfo};
use crate::switch::Location;
use crate::wire::ethernet::BATMAN_VLAN_HAS_TAG;
use crate::wire::MacAddr;

/// The batman vid of a VLAN id given on the command line (None: untagged).
fn vid_of(vlan: Option<u16>) -> u16 {
    vlan.map_or(0, |v| v | BATMAN_VLAN_HAS_TAG)
}

/// The VLAN id shown for a batman vid (untagged: 0, as `ctl fdb` does).
fn vlan_of(vid: u16) -> u16 {
    vid & 0x0fff
}

/// The translation table, copied under the node lock.
pub(super) struct TtCopy {
    own: MacAddr,
    local: Vec<TtLocalInfo>,
    global: Vec<TtGlobalInfo>,
}

pub(super) fn tt_copy(node: &Node) -> TtCopy {
    let mesh = &node.bridge.mesh;
    TtCopy {
        own: mesh.originator(),
        local: mesh.tt_local_entries(),
        global: mesh.tt_global_copy(),
    }
}

pub(super) fn tt_json(mut c: TtCopy) -> Value {
    c.local.sort_by_key(|e| (e.vid, e.mac));
    c.global.sort_by_key(|e| (e.vid, e.mac, e.orig));
    let local: Vec<Value> = (c.local.iter())
        .map(|e| {
            json!({
                "mac": e.mac,
                "vlan": vlan_of(e.vid),
                "new": e.new,
                "pending_delete": e.pending_delete,
            })
        })
        .collect();
    let global: Vec<Value> = (c.global.iter())
        .map(|e| {
            json!({
                "mac": e.mac,
                "vlan": vlan_of(e.vid),
                "originator": e.orig,
                "flags": e.flags,
            })
        })
        .collect();
    json!({ "originator": c.own, "local": local, "global": global })
}

/// Which node serves (mac, vlan): one of our ports (the FDB), an
/// originator (the translation table, else what the FDB learned from the
/// mesh), or nobody known. Two lookups: answered while the node is held.
pub(super) fn translate(node: &Node, mac: MacAddr, vlan: Option<u16>, now: Instant) -> Value {
    let vid = vid_of(vlan);
    let b = &node.bridge;
    let fdb = b.switch.lookup(now, mac, vid).map(|e| e.location);
    let (served_by, port, orig, source) = match (fdb, b.mesh.tt_global_lookup(mac, vid)) {
        (Some(Location::Port(p)), _) => {
            let name = b.switch.port_name(p);
            (Some(format!("port {name}")), Some(name), None, "fdb")
        }
        (_, Some(o)) => (
            Some(format!("originator {o}")),
            None,
            Some(o),
            "translation-table",
        ),
        (Some(Location::Originator(o)), None) => {
            (Some(format!("originator {o}")), None, Some(o), "fdb")
        }
        (None, None) => (None, None, None, "unknown"),
    };
    let route = orig.and_then(|o| {
        b.mesh
            .originators()
            .into_iter()
            .find(|i| i.orig == o)
            .map(|i| (i.next_hop, i.tq))
    });
    json!({
        "mac": mac,
        "vlan": vlan.unwrap_or(0),
        "served_by": served_by,
        "port": port,
        "originator": orig,
        "next_hop": route.and_then(|r| r.0),
        "tq": route.map(|r| r.1),
        "source": source,
    })
}

/// The originator table and our own address, copied under the node lock.
pub(super) struct GraphCopy {
    own: MacAddr,
    origs: Vec<OriginatorInfo>,
}

pub(super) fn graph_copy(node: &Node) -> GraphCopy {
    GraphCopy {
        own: node.bridge.mesh.originator(),
        origs: node.bridge.mesh.originators(),
    }
}

/// The mesh from this node's view, as DOT: an edge to each neighbour it
/// routes through (labelled with the best TQ through it), and from that
/// neighbour to each originator routed through it (the route's TQ).
/// Neighbours are named by the hard interface address batman uses on the
/// link, as batadv-vis names secondary interfaces.
pub(super) fn graph_dot(mut c: GraphCopy) -> String {
    c.origs.sort_by_key(|o| o.orig);
    let mut dot = String::from("digraph meshwire {\n");
    let _ = writeln!(
        dot,
        "  \"{}\" [label=\"{}\\n(this node)\", shape=box];",
        c.own, c.own
    );
    let mut neighbours: Vec<(MacAddr, u8)> = Vec::new();
    for o in &c.origs {
        let Some(nh) = o.next_hop else { continue };
        match neighbours.iter_mut().find(|(n, _)| *n == nh) {
            Some((_, tq)) => *tq = (*tq).max(o.tq),
            None => neighbours.push((nh, o.tq)),
        }
    }
    for (nh, tq) in &neighbours {
        let _ = writeln!(dot, "  \"{}\" -> \"{nh}\" [label=\"{tq}\"];", c.own);
    }
    for o in &c.origs {
        match o.next_hop {
            Some(nh) if nh != o.orig => {
                let _ = writeln!(dot, "  \"{nh}\" -> \"{}\" [label=\"{}\"];", o.orig, o.tq);
            }
            Some(_) => {}
            None => {
                let _ = writeln!(dot, "  \"{}\" [style=dashed];", o.orig);
            }
        }
    }
    dot.push_str("}\n");
    dot
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orig(o: u8, nh: Option<u8>, tq: u8) -> OriginatorInfo {
        let m = |b: u8| MacAddr([2, 0, 0, 0, 0, b]);
        OriginatorInfo {
            orig: m(o),
            next_hop: nh.map(m),
            hardif: None,
            tq,
            last_seen_ms: 0,
            ttvn: 0,
            tt_crc_ok: true,
            mcast_flags: None,
            neighbours: Vec::new(),
        }
    }

    #[test]
    fn the_graph_has_an_edge_per_neighbour_and_per_relayed_originator() {
        let c = GraphCopy {
            own: MacAddr([2, 0, 0, 0, 0, 1]),
            origs: vec![
                orig(2, Some(2), 250),
                orig(3, Some(2), 200),
                orig(4, Some(4), 240),
                orig(5, None, 0),
            ],
        };
        let dot = graph_dot(c);
        assert!(dot.starts_with("digraph meshwire {\n") && dot.ends_with("}\n"));
        assert!(dot.contains("\"02:00:00:00:00:01\" -> \"02:00:00:00:00:02\" [label=\"250\"];"));
        assert!(dot.contains("\"02:00:00:00:00:01\" -> \"02:00:00:00:00:04\" [label=\"240\"];"));
        assert!(dot.contains("\"02:00:00:00:00:02\" -> \"02:00:00:00:00:03\" [label=\"200\"];"));
        assert!(dot.contains("\"02:00:00:00:00:05\" [style=dashed];"));
        assert_eq!(dot.matches(" -> ").count(), 3);
    }
}
