//! The forwarding decision for a VM frame: local port, remote originator,
//! flood, or drop; and MAC learning from ports and from the mesh.
//!
//! Sans-I/O: the dataplane hands in a frame and gets a [`Decision`] back.
//! The unicast path is two hash lookups and no allocation.
//!
//! Rules (and why):
//! - A frame never leaves by the port it came in on. If its destination was
//!   learned on that same port, a bridge behind the TAP already delivered
//!   it: drop.
//! - A frame from the mesh never goes back to the mesh (no loops); it goes
//!   to the port that has its destination, or to all local ports.
//! - A group or zero source MAC is never learned and the frame is dropped.
//! - Migration: a mesh-learned location replaces a local one only if the
//!   local one has not been seen for more than `mesh_override_after` (1 s).
//!   A VM that still talks on our port is here, whatever an old broadcast
//!   from the mesh claims; one that went silent and now speaks from another
//!   node has moved away. The migration work refines this.

pub mod fdb;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use crate::port::PortId;
use crate::wire::ethernet::Frame;
use crate::wire::MacAddr;
use fdb::{Fdb, FdbKey};
pub use fdb::{FdbConfig, FdbCounters, FdbEntry, Learn, Location, Source};

/// Bounds the queue of MACs that moved from a local port to the mesh.
pub const MAX_PENDING_WITHDRAWALS: usize = 4096;

#[derive(Debug, Clone, Copy)]
pub struct SwitchConfig {
    pub fdb: FdbConfig,
    /// How long a local entry must be silent before a mesh claim replaces it.
    pub mesh_override_after: Duration,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig {
            fdb: FdbConfig::default(),
            mesh_override_after: Duration::from_secs(1),
        }
    }
}

/// Where a frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Out of this local port.
    Port(PortId),
    /// Unicast over the mesh to this originator.
    Originator(MacAddr),
    /// All local ports except `except`, and the mesh as broadcast if `mesh`.
    Flood {
        except: Option<PortId>,
        mesh: bool,
    },
    /// Destination unknown to the FDB: the dataplane asks the mesh's
    /// translation table, else floods.
    Unknown {
        except: Option<PortId>,
    },
    Drop(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Shorter than an Ethernet header (or its 802.1Q tag).
    Truncated,
    /// Source MAC is a group address or all zeros.
    InvalidSource,
    /// The destination is behind the port the frame came from.
    SamePort,
    /// A mesh frame for a client the FDB places at another originator:
    /// sending it back to the mesh would loop.
    RemoteDestination,
}

/// A new local client or a move: the dataplane tells the mesh (TT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learned {
    pub mac: MacAddr,
    pub vid: u16,
    pub moved_from: Option<Location>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SwitchCounters {
    pub from_port: u64,
    pub from_mesh: u64,
    pub to_port: u64,
    pub to_originator: u64,
    pub flooded: u64,
    pub unknown: u64,
    pub drop_truncated: u64,
    pub drop_invalid_source: u64,
    pub drop_same_port: u64,
    pub drop_remote_destination: u64,
    pub learned_new: u64,
    pub learned_moved: u64,
    /// A mesh claim on a MAC that is still active on a local port.
    pub mesh_claim_ignored: u64,
    /// Local MACs that roamed to the mesh while the withdrawal queue was full.
    pub withdrawals_lost: u64,
    pub fdb: FdbCounters,
}

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

#[derive(Debug)]
pub struct Switch {
    cfg: SwitchConfig,
    fdb: Fdb,
    port_names: HashMap<PortId, String>,
    /// Local clients that a mesh frame showed to be elsewhere now; the
    /// dataplane drains them with [`Switch::take_withdrawals`].
    withdrawals: Vec<FdbKey>,
    counters: SwitchCounters,
}

impl Switch {
    pub fn new(cfg: SwitchConfig) -> Switch {
        Switch {
            cfg,
            fdb: Fdb::new(cfg.fdb),
            port_names: HashMap::new(),
            withdrawals: Vec::new(),
            counters: SwitchCounters::default(),
        }
    }

    /// Names a port for `fdb_entries` (display only).
    pub fn set_port_name(&mut self, port: PortId, name: &str) {
        self.port_names.insert(port, name.to_owned());
    }

    /// A frame from a local port: learn its source there (returns
    /// Some(Learned) when the MAC is new on this port or moved here), decide
    /// where it goes.
    pub fn from_port(
        &mut self,
        now: Instant,
        port: PortId,
        frame: &[u8],
    ) -> (Decision, Option<Learned>) {
        self.counters.from_port += 1;
        let Some((src, dst, vid)) = self.parse(frame) else {
            return (self.drop_counted(DropReason::Truncated), None);
        };
        if !valid_source(src) {
            return (self.drop_counted(DropReason::InvalidSource), None);
        }
        let learned = self.learn_local(now, port, src, vid);
        let decision = if dst.is_multicast() {
            Decision::Flood {
                except: Some(port),
                mesh: true,
            }
        } else {
            match self.fdb.lookup(now, (dst, vid)).map(|e| e.location) {
                Some(Location::Port(p)) if p == port => Decision::Drop(DropReason::SamePort),
                Some(Location::Port(p)) => Decision::Port(p),
                Some(Location::Originator(o)) => Decision::Originator(o),
                None => Decision::Unknown { except: Some(port) },
            }
        };
        (self.count(decision), learned)
    }

    fn learn_local(
        &mut self,
        now: Instant,
        port: PortId,
        src: MacAddr,
        vid: u16,
    ) -> Option<Learned> {
        let moved_from =
            match self
                .fdb
                .learn(now, (src, vid), Location::Port(port), Source::Port, None)
            {
                Learn::New => None,
                Learn::Moved { from } => Some(from),
                Learn::Refreshed | Learn::Refused => return None,
            };
        if moved_from.is_some() {
            self.counters.learned_moved += 1;
        } else {
            self.counters.learned_new += 1;
        }
        Some(Learned {
            mac: src,
            vid,
            moved_from,
        })
    }

    /// A frame from the mesh; `source_orig` = Some(orig) when known (batman
    /// broadcasts carry it): learn src -> Originator(orig). Never returns
    /// Originator or a mesh flood: a mesh frame only goes to local ports.
    pub fn from_mesh(
        &mut self,
        now: Instant,
        frame: &[u8],
        source_orig: Option<MacAddr>,
    ) -> Decision {
        self.counters.from_mesh += 1;
        let Some((src, dst, vid)) = self.parse(frame) else {
            return self.drop_counted(DropReason::Truncated);
        };
        if !valid_source(src) {
            return self.drop_counted(DropReason::InvalidSource);
        }
        if let Some(orig) = source_orig {
            self.learn_remote(now, src, vid, orig, Source::Mesh);
        }
        let decision = if dst.is_multicast() {
            Decision::Flood {
                except: None,
                mesh: false,
            }
        } else {
            match self.fdb.lookup(now, (dst, vid)).map(|e| e.location) {
                Some(Location::Port(p)) => Decision::Port(p),
                Some(Location::Originator(_)) => Decision::Drop(DropReason::RemoteDestination),
                None => Decision::Flood {
                    except: None,
                    mesh: false,
                },
            }
        };
        self.count(decision)
    }

    /// Caches an answer of the mesh's translation table (tt_global) so the
    /// next frame to `mac` goes straight to `orig`. Same override rule as
    /// a mesh frame.
    pub fn learn_from_tt(&mut self, now: Instant, mac: MacAddr, vid: u16, orig: MacAddr) {
        if valid_source(mac) {
            self.learn_remote(now, mac, vid, orig, Source::TranslationTable);
        }
        self.counters.fdb = *self.fdb.counters();
    }

    fn learn_remote(&mut self, now: Instant, mac: MacAddr, vid: u16, orig: MacAddr, how: Source) {
        let keep = Some(self.cfg.mesh_override_after);
        match self
            .fdb
            .learn(now, (mac, vid), Location::Originator(orig), how, keep)
        {
            Learn::Moved {
                from: Location::Port(_),
            } => {
                // A local client now lives elsewhere: stop announcing it.
                if self.withdrawals.len() < MAX_PENDING_WITHDRAWALS {
                    self.withdrawals.push((mac, vid));
                } else {
                    self.counters.withdrawals_lost += 1;
                }
            }
            Learn::Refused
                if self
                    .fdb
                    .lookup(now, (mac, vid))
                    .is_some_and(|e| e.location.is_local()) =>
            {
                self.counters.mesh_claim_ignored += 1;
            }
            _ => {}
        }
    }

    /// Local MACs that a mesh frame moved to another node since the last
    /// call: the dataplane withdraws them from the local TT.
    pub fn take_withdrawals(&mut self) -> Vec<(MacAddr, u16)> {
        std::mem::take(&mut self.withdrawals)
    }

    /// Forgets the MACs of a removed port and returns them so the dataplane
    /// can withdraw them from TT.
    pub fn port_removed(&mut self, port: PortId) -> Vec<(MacAddr, u16)> {
        self.port_names.remove(&port);
        let keys = self.fdb.remove_port(port);
        self.counters.fdb = *self.fdb.counters();
        keys
    }

    /// Reaps aged entries; returns the local MACs to withdraw from TT.
    pub fn expire(&mut self, now: Instant) -> Vec<(MacAddr, u16)> {
        let keys = self.fdb.expire(now);
        self.counters.fdb = *self.fdb.counters();
        keys
    }

    /// The live entry for (mac, vid), if any.
    pub fn lookup(&self, now: Instant, mac: MacAddr, vid: u16) -> Option<FdbEntry> {
        self.fdb.lookup(now, (mac, vid)).copied()
    }

    pub fn fdb_len(&self) -> usize {
        self.fdb.len()
    }

    /// The FDB for `meshwire ctl`, sorted by (vid, mac).
    pub fn fdb_entries(&self, now: Instant) -> Vec<FdbInfo> {
        let mut v: Vec<FdbInfo> = self
            .fdb
            .iter()
            .map(|(&(mac, vid), e)| {
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

    /// Counters, with the FDB's own folded in.
    pub fn counters(&self) -> &SwitchCounters {
        &self.counters
    }

    fn parse(&mut self, frame: &[u8]) -> Option<(MacAddr, MacAddr, u16)> {
        let f = Frame::new_checked(frame).ok()?;
        Some((f.src_addr(), f.dst_addr(), f.batman_vid()))
    }

    fn drop_counted(&mut self, why: DropReason) -> Decision {
        self.count(Decision::Drop(why))
    }

    fn count(&mut self, d: Decision) -> Decision {
        self.counters.fdb = *self.fdb.counters();
        let c = &mut self.counters;
        match d {
            Decision::Port(_) => c.to_port += 1,
            Decision::Originator(_) => c.to_originator += 1,
            Decision::Flood { .. } => c.flooded += 1,
            Decision::Unknown { .. } => c.unknown += 1,
            Decision::Drop(DropReason::Truncated) => c.drop_truncated += 1,
            Decision::Drop(DropReason::InvalidSource) => c.drop_invalid_source += 1,
            Decision::Drop(DropReason::SamePort) => c.drop_same_port += 1,
            Decision::Drop(DropReason::RemoteDestination) => c.drop_remote_destination += 1,
        }
        d
    }
}

/// A client address: unicast and not all zeros.
fn valid_source(mac: MacAddr) -> bool {
    mac.is_unicast() && !mac.is_zero()
}
