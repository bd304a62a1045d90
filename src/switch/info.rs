//! The FDB as `meshwire ctl` shows it: a plain copy taken while the node
//! is held ([`Switch::fdb_snapshot`]), turned into named, sorted rows
//! after the node is let go.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;

use super::fdb::FdbKey;
use super::{FdbEntry, Location, Source, Switch};
use crate::port::PortId;
use crate::wire::MacAddr;

/// One FDB entry for `meshwire ctl`.
#[derive(Debug, Clone, Serialize)]
pub struct FdbInfo {
    pub mac: MacAddr,
    pub vid: u16,
    /// "port NAME" (or "port ID" before a name is known) / "originator MAC".
    pub location: String,
    pub port: Option<PortId>,
    pub originator: Option<MacAddr>,
    pub age_ms: u64,
    pub learned: Source,
}

/// A copy of the FDB taken under the node lock (see [`Switch::fdb_snapshot`]).
#[derive(Debug, Clone)]
pub struct FdbSnapshot {
    entries: Vec<(FdbKey, FdbEntry)>,
    port_names: HashMap<PortId, String>,
}

impl FdbSnapshot {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries for people and scripts, sorted by VLAN and MAC.
    pub fn entries(&self, now: Instant) -> Vec<FdbInfo> {
        let mut v: Vec<FdbInfo> = self
            .entries
            .iter()
            .map(|&((mac, vid), e)| {
                let (location, port, originator) = match e.location {
                    Location::Port(p) => {
                        let name = self
                            .port_names
                            .get(&p)
                            .cloned()
                            .unwrap_or_else(|| p.to_string());
                        (format!("port {name}"), Some(p), None)
                    }
                    Location::Originator(o) => (format!("originator {o}"), None, Some(o)),
                };
                let age = now.saturating_duration_since(e.last_seen);
                FdbInfo {
                    mac,
                    vid,
                    location,
                    port,
                    originator,
                    age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
                    learned: e.learned,
                }
            })
            .collect();
        v.sort_by_key(|i| (i.vid, i.mac));
        v
    }
}

impl Switch {
    /// The FDB for `meshwire ctl`, sorted by (vid, mac).
    pub fn fdb_entries(&self, now: Instant) -> Vec<FdbInfo> {
        self.fdb_snapshot().entries(now)
    }

    pub fn fdb_entries_len(&self) -> usize {
        self.fdb.len()
    }

    /// A plain copy of the FDB (no strings, no sorting): what `ctl fdb`
    /// takes while the node is held, to format after letting go.
    pub fn fdb_snapshot(&self) -> FdbSnapshot {
        FdbSnapshot {
            entries: self.fdb.iter().map(|(k, e)| (*k, *e)).collect(),
            port_names: self.port_names.clone(),
        }
    }
}
