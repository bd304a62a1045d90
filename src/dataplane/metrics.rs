//! The copy of the node's reports that the metrics endpoint renders,
//! taken by worker 0 while it holds the node for its timers (see
//! `crate::metrics`): the same values as `ctl stats`, `ctl peers` and
//! `ctl ports`.

use std::time::SystemTime;

use super::{report, Node};
use crate::metrics::{Sizes, Snapshot};
use crate::port::Ports;

pub fn snapshot(node: &Node, ports: &Ports) -> Snapshot {
    let mesh = &node.bridge.mesh;
    Snapshot {
        taken: SystemTime::now(),
        originator: node.originator().to_string(),
        stats: report::stats(node, ports),
        peers: report::peers_json(report::peers_copy(node)),
        ports: report::port_list(node, ports),
        sizes: Sizes {
            fdb: node.bridge.switch.fdb_len(),
            tt_local: mesh.tt_local_len(),
            tt_global: mesh.tt_global_len(),
            originators: mesh.originator_count(),
        },
    }
}
