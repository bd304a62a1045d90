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
//!   to the port that has its destination, or to all local ports. The one
//!   exception is explicit and separate: [`Switch::redirect_for`], see below.
//! - Every move of a MAC is queued for [`Switch::take_moves`] (logs, events).
//! - A group or zero source MAC is never learned and the frame is dropped.
//!
//! Migration (issue 4). A VM that arrives here must win at once; a VM that is
//! still here must not be stolen by an old or echoed claim.
//! - Port over mesh, always at once: any frame from a local port moves its
//!   source MAC here, whatever the mesh said (the VM talks on our port, so
//!   it is here). `Learned::moved_from` names where it was.
//! - Announcements ([`Announce`]: gratuitous ARP, qemu's RARP, unsolicited
//!   NA) from a port always return [`Learned`], even when the entry already
//!   pointed here: a re-announcement must re-claim the MAC in the mesh (new
//!   TT entry, out-of-cycle OGM, ROAM_ADV), since another node may have
//!   claimed it in between. Only bursts are damped: a re-announcement
//!   within `reclaim_interval` (40 ms) of the last claim is counted
//!   (`announce_damped`), not reported, so a VM spraying gratuitous ARPs
//!   cannot make this node originate an OGM per frame. qemu's rounds are 50
//!   ms and more apart; a move (`moved_from` set) is never damped.
//! - Mesh over port, ordinary frames: a mesh-learned location replaces a
//!   local one only if the local one has been silent for more than
//!   `mesh_override_after` (1 s). An old broadcast from the mesh must not
//!   steal a VM that still talks here.
//! - Mesh over port, announcements: a mesh broadcast (originator known)
//!   carrying an announcement moves a local MAC to that originator unless
//!   the local entry saw a frame within `announce_keep_local` (100 ms). A
//!   migrating VM is paused for at least the stop-and-copy phase and qemu's
//!   first RARP comes ~50 ms after it resumes; a VM that spoke on our port
//!   within 100 ms is still here (counted as `mesh_announce_ignored`), and
//!   qemu's later rounds or the guest's own announcement win if the first
//!   one came too early.
//! - ROAM adverts ([`Switch::roamed`]) move a local MAC at once: the new
//!   node saw the VM speak after its last frame here (a VM paused for a
//!   migration is silent here for about qemu's downtime, often under
//!   100 ms, which is why the announcement rule above cannot decide it).
//!   Were the VM still here, its next frame would move it back.
//! - Translation-table claims ([`Switch::tt_claim`]) move a remote entry
//!   that an older broadcast taught to the originator that now announces
//!   the MAC: without it a third node kept a silently migrated VM at its
//!   old node until the entry aged out.
//! - The old node: a MAC that left one of our ports for an originator keeps
//!   that fact (`FdbEntry::departed`) for `redirect_window`. Frames the mesh
//!   still delivers to us as UNICAST for it are stale routing in another
//!   node; [`Switch::redirect_for`] names the new originator and the bridge
//!   (`bridge/forward.rs`) sends them on instead of dropping them. Broadcasts are
//!   never redirected (they already reached every node), nor MACs that never
//!   lived here. Two nodes can each believe the other has a MAC only when it
//!   really lives on both (a duplicate MAC, both silent and announcing); the
//!   switch cannot see a frame's history, so the bound on such a ping-pong
//!   must come from the mesh: the redirected packet has to keep the received
//!   unicast TTL minus one (as batman-adv's own reroute does), never a fresh
//!   one.

#![forbid(unsafe_code)]

pub mod announce;
pub mod fdb;
mod info;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

pub use crate::port::PortId;
use crate::wire::ethernet::Frame;
use crate::wire::MacAddr;
pub use announce::Announce;
use fdb::{Fdb, FdbKey};
pub use fdb::{FdbConfig, FdbCounters, FdbEntry, Learn, Location, Source};
pub use info::{FdbInfo, FdbSnapshot};

/// Bounds the queue of MACs that moved from a local port to the mesh.
pub const MAX_PENDING_WITHDRAWALS: usize = 4096;

#[derive(Debug, Clone, Copy)]
pub struct SwitchConfig {
    pub fdb: FdbConfig,
    /// How long a local entry must be silent before a mesh claim replaces it.
    pub mesh_override_after: Duration,
    /// How long a local entry must be silent before a mesh announcement
    /// (gratuitous ARP, RARP, unsolicited NA in a broadcast) replaces it.
    pub announce_keep_local: Duration,
    /// How long after a MAC left a local port for the mesh this node still
    /// forwards unicast frames for it to its new originator: long enough for
    /// every node's TT to catch up (OGM intervals, TT requests).
    pub redirect_window: Duration,
    /// Minimum time between two re-claims of an unmoved local client.
    pub reclaim_interval: Duration,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig {
            fdb: FdbConfig::default(),
            mesh_override_after: Duration::from_secs(1),
            announce_keep_local: Duration::from_millis(100),
            redirect_window: Duration::from_secs(10),
            reclaim_interval: Duration::from_millis(40),
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

/// A new local client, a move, or an announcement: the dataplane tells the
/// mesh (TT entry; on a move or announcement also an immediate OGM, and a
/// ROAM_ADV to `moved_from` when that is an originator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learned {
    pub mac: MacAddr,
    pub vid: u16,
    /// Where the MAC was before: an originator (it migrated here) or
    /// another local port. None for a new MAC or a re-announcement.
    pub moved_from: Option<Location>,
    /// The frame was an announcement (always reported, even unmoved).
    pub announce: Option<Announce>,
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
    /// Announcements from local ports (each returned as `Learned`).
    pub announce_from_port: u64,
    /// Re-announcements of an unmoved local client within
    /// `reclaim_interval` of its last claim: not reported again.
    pub announce_damped: u64,
    /// Announcements in mesh broadcasts (originator known).
    pub announce_from_mesh: u64,
    /// Mesh announcements that moved a local MAC away at once.
    pub mesh_announce_moved: u64,
    /// Mesh announcements for a MAC that spoke on a local port within
    /// `announce_keep_local`: the VM is still here, the claim is ignored.
    pub mesh_announce_ignored: u64,
    /// Local MACs that roamed to the mesh while the withdrawal queue was full.
    pub withdrawals_lost: u64,
    pub fdb: FdbCounters,
}

/// A MAC that changed place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub mac: MacAddr,
    pub vid: u16,
    pub from: Location,
    pub to: Location,
}

#[derive(Debug)]
pub struct Switch {
    cfg: SwitchConfig,
    fdb: Fdb,
    port_names: HashMap<PortId, String>,
    /// Local clients that a mesh frame showed to be elsewhere now; the
    /// dataplane drains them with [`Switch::take_withdrawals`].
    withdrawals: Vec<FdbKey>,
    /// MACs that changed place, for [`Switch::take_moves`].
    moves: Vec<Move>,
    counters: SwitchCounters,
}

impl Switch {
    pub fn new(cfg: SwitchConfig) -> Switch {
        Switch {
            cfg,
            fdb: Fdb::new(cfg.fdb),
            port_names: HashMap::new(),
            withdrawals: Vec::new(),
            moves: Vec::new(),
            counters: SwitchCounters::default(),
        }
    }

    /// Names a port for `fdb_entries` (display only).
    pub fn set_port_name(&mut self, port: PortId, name: &str) {
        self.port_names.insert(port, name.to_owned());
    }

    /// A port's name for tables and logs (its id until it has one).
    pub fn port_name(&self, port: PortId) -> String {
        self.port_names
            .get(&port)
            .cloned()
            .unwrap_or_else(|| port.to_string())
    }

    /// A frame from a local port: learn its source there (returns
    /// Some(Learned) when the MAC is new on this port, moved here, or the
    /// frame is an announcement), decide where it goes.
    pub fn from_port(
        &mut self,
        now: Instant,
        port: PortId,
        frame: &[u8],
    ) -> (Decision, Option<Learned>) {
        self.counters.from_port += 1;
        let Ok(f) = Frame::new_checked(frame) else {
            return (self.drop_counted(DropReason::Truncated), None);
        };
        let (src, dst, vid) = (f.src_addr(), f.dst_addr(), f.batman_vid());
        if !valid_source(src) {
            return (self.drop_counted(DropReason::InvalidSource), None);
        }
        let announce = Announce::detect(&f);
        let learned = self.learn_local(now, port, src, vid, announce);
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

    /// Port over mesh, always: a local frame takes any entry at once.
    fn learn_local(
        &mut self,
        now: Instant,
        port: PortId,
        src: MacAddr,
        vid: u16,
        announce: Option<Announce>,
    ) -> Option<Learned> {
        if announce.is_some() {
            self.counters.announce_from_port += 1;
        }
        let moved_from =
            match self
                .fdb
                .learn(now, (src, vid), Location::Port(port), Source::Port, None)
            {
                Learn::New => {
                    self.counters.learned_new += 1;
                    None
                }
                Learn::Moved { from } => {
                    self.counters.learned_moved += 1;
                    self.note_move(src, vid, from, Location::Port(port));
                    Some(from)
                }
                // A re-announcement re-claims even when nothing changed here,
                // unless it is part of a burst.
                Learn::Refreshed if announce.is_some() => {
                    if !self.fdb.reclaim(now, (src, vid), self.cfg.reclaim_interval) {
                        self.counters.announce_damped += 1;
                        return None;
                    }
                    None
                }
                // Refused: a full table or port limit, counted by the FDB;
                // a MAC we do not hold must not be claimed in the mesh.
                Learn::Refreshed | Learn::Refused => return None,
            };
        Some(Learned {
            mac: src,
            vid,
            moved_from,
            announce,
        })
    }

    /// A frame from the mesh; `source_orig` = Some(orig) when known (batman
    /// broadcasts carry it): learn src -> Originator(orig), at once for an
    /// announcement (see the module rules). Never returns Originator or a
    /// mesh flood: a mesh frame only goes to local ports. A unicast frame
    /// for a MAC at another originator is `Drop(RemoteDestination)`; for
    /// frames the mesh delivered as batman UNICAST the dataplane then asks
    /// [`Switch::redirect_for`] whether to send them on.
    pub fn from_mesh(
        &mut self,
        now: Instant,
        frame: &[u8],
        source_orig: Option<MacAddr>,
    ) -> Decision {
        self.counters.from_mesh += 1;
        let Ok(f) = Frame::new_checked(frame) else {
            return self.drop_counted(DropReason::Truncated);
        };
        let (src, dst, vid) = (f.src_addr(), f.dst_addr(), f.batman_vid());
        if !valid_source(src) {
            return self.drop_counted(DropReason::InvalidSource);
        }
        if let Some(orig) = source_orig {
            let announce = Announce::detect(&f);
            if announce.is_some() {
                self.counters.announce_from_mesh += 1;
            }
            self.learn_remote(now, src, vid, orig, Source::Mesh, announce.is_some());
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

    /// For a frame the mesh delivered to us as UNICAST (never a broadcast):
    /// the originator to send it on to, when its destination left one of
    /// our ports for that originator within `redirect_window`. This is the
    /// old node of a migration forwarding in-flight frames to the new one.
    /// None: deliver or drop as [`Switch::from_mesh`] decides.
    pub fn redirect_for(&self, now: Instant, frame: &[u8]) -> Option<MacAddr> {
        let f = Frame::new_checked(frame).ok()?;
        let dst = f.dst_addr();
        if !dst.is_unicast() {
            return None;
        }
        let e = self.fdb.lookup(now, (dst, f.batman_vid()))?;
        let Location::Originator(o) = e.location else {
            return None;
        };
        let departed = e.departed?;
        (now.saturating_duration_since(departed) <= self.cfg.redirect_window).then_some(o)
    }

    /// Caches an answer of the mesh's translation table (tt_global) so the
    /// next frame to `mac` goes straight to `orig`. Same override rule as
    /// an ordinary mesh frame.
    pub fn learn_from_tt(&mut self, now: Instant, mac: MacAddr, vid: u16, orig: MacAddr) {
        if valid_source(mac) {
            self.learn_remote(now, mac, vid, orig, Source::TranslationTable, false);
        }
        self.counters.fdb = *self.fdb.counters();
    }

    /// A ROAM advert: the mesh says `orig` now serves this client (the VM
    /// spoke there, after its last frame here). The entry moves at once,
    /// marked departed so that frames still in flight to us are sent on:
    /// a frame from before the migration must not make this node keep (and
    /// claim back) a VM that now lives elsewhere. If the VM is really still
    /// here, its next frame moves it back (port over mesh, always).
    pub fn roamed(&mut self, now: Instant, mac: MacAddr, vid: u16, orig: MacAddr) {
        if valid_source(mac) {
            self.learn_remote_keep(now, mac, vid, orig, Source::TranslationTable, None);
        }
        self.counters.fdb = *self.fdb.counters();
    }

    /// Another originator announced this client in its translation table
    /// (a TT change, a full table or a ROAM advert). An entry this table
    /// holds at a *different* originator (taught by an older broadcast)
    /// follows it; local entries are left to ROAM adverts and frames, and
    /// MACs the table does not hold stay unknown (the TT answers for them).
    /// True when the entry moved.
    pub fn tt_claim(&mut self, now: Instant, mac: MacAddr, vid: u16, orig: MacAddr) -> bool {
        let stale = self
            .fdb
            .lookup(now, (mac, vid))
            .is_some_and(|e| matches!(e.location, Location::Originator(o) if o != orig));
        if stale {
            self.learn_remote(now, mac, vid, orig, Source::TranslationTable, false);
        }
        self.counters.fdb = *self.fdb.counters();
        stale
    }

    /// Mesh over port: only after `mesh_override_after` of local silence,
    /// or `announce_keep_local` for an announcement.
    fn learn_remote(
        &mut self,
        now: Instant,
        mac: MacAddr,
        vid: u16,
        orig: MacAddr,
        how: Source,
        announce: bool,
    ) {
        let keep = if announce {
            self.cfg.announce_keep_local
        } else {
            self.cfg.mesh_override_after
        };
        match self.learn_remote_keep(now, mac, vid, orig, how, Some(keep)) {
            Some(true) if announce => self.counters.mesh_announce_moved += 1,
            None if announce => self.counters.mesh_announce_ignored += 1,
            None => self.counters.mesh_claim_ignored += 1,
            _ => {}
        }
    }

    /// Learns `mac` at `orig` unless a local entry heard within `keep`
    /// holds it (None: a local entry never holds it). Some(true): a local client moved away (and is queued for
    /// withdrawal); Some(false): anything else learned or refused; None:
    /// a local client kept its place.
    fn learn_remote_keep(
        &mut self,
        now: Instant,
        mac: MacAddr,
        vid: u16,
        orig: MacAddr,
        how: Source,
        keep: Option<Duration>,
    ) -> Option<bool> {
        let to = Location::Originator(orig);
        match self.fdb.learn(now, (mac, vid), to, how, keep) {
            Learn::Moved { from } => {
                self.note_move(mac, vid, from, to);
                let Location::Port(_) = from else {
                    return Some(false);
                };
                // A local client now lives elsewhere: stop announcing it.
                if self.withdrawals.len() < MAX_PENDING_WITHDRAWALS {
                    self.withdrawals.push((mac, vid));
                } else {
                    self.counters.withdrawals_lost += 1;
                }
                Some(true)
            }
            Learn::Refused
                if self
                    .fdb
                    .lookup(now, (mac, vid))
                    .is_some_and(|e| e.location.is_local()) =>
            {
                None
            }
            _ => Some(false),
        }
    }

    fn note_move(&mut self, mac: MacAddr, vid: u16, from: Location, to: Location) {
        if self.moves.len() < MAX_PENDING_WITHDRAWALS {
            self.moves.push(Move { mac, vid, from, to });
        }
    }

    /// The moves since the last call (for logs and events), at most
    /// `MAX_PENDING_WITHDRAWALS` of them.
    pub fn take_moves(&mut self) -> Vec<Move> {
        std::mem::take(&mut self.moves)
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

    /// The live clients behind `port`, sorted: for `meshwire ctl announce`
    /// without `--mac` (a scan; control path only).
    pub fn port_clients(&self, now: Instant, port: PortId) -> Vec<(MacAddr, u16)> {
        let mut v: Vec<(MacAddr, u16)> = self
            .fdb
            .iter()
            .filter(|(k, e)| {
                e.location == Location::Port(port) && self.fdb.lookup(now, **k).is_some()
            })
            .map(|(k, _)| *k)
            .collect();
        v.sort();
        v
    }

    /// The live entry for (mac, vid), if any.
    pub fn lookup(&self, now: Instant, mac: MacAddr, vid: u16) -> Option<FdbEntry> {
        self.fdb.lookup(now, (mac, vid)).copied()
    }

    pub fn fdb_len(&self) -> usize {
        self.fdb.len()
    }

    /// Counters, with the FDB's own folded in.
    pub fn counters(&self) -> &SwitchCounters {
        &self.counters
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
