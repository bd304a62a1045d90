//! The copy of the node's reports that the metrics endpoint renders,
//! taken by worker 0 while it holds the node for its timers (see
//! `crate::metrics`): the same values as `ctl stats`, `ctl peers` and
//! `ctl ports`. The peer list (the longest: up to 4096 peers with their
//! keys) is turned into JSON after the node is let go.

use std::time::SystemTime;

use serde_json::Value;

use super::report::{self, PeerRow};
use super::Node;
use crate::metrics::{Sizes, Snapshot};
use crate::port::Ports;

pub struct Copy {
    taken: SystemTime,
    originator: String,
    stats: Value,
    peers: Vec<PeerRow>,
    ports: Value,
    sizes: Sizes,
}

/// Under the node lock: counters and table sizes, no table walks.
pub fn copy(node: &Node, ports: &Ports) -> Copy {
    let mesh = &node.bridge.mesh;
    Copy {
        taken: SystemTime::now(),
        originator: node.originator().to_string(),
        stats: report::stats(node, ports),
        peers: report::peers_copy(node),
        ports: report::port_list(node, ports),
        sizes: Sizes {
            fdb: node.bridge.switch.fdb_len(),
            tt_local: mesh.tt_local_len(),
            tt_global: mesh.tt_global_len(),
            originators: mesh.originator_count(),
        },
    }
}

impl Copy {
    /// After the node is let go.
    pub fn finish(self) -> Snapshot {
        Snapshot {
            taken: self.taken,
            originator: self.originator,
            stats: self.stats,
            peers: report::peers_json(self.peers),
            ports: self.ports,
            sizes: self.sizes,
        }
    }
}
