//! The MAC table (FDB) and the translation table kept in step, in one
//! place. The FDB says where a MAC is for forwarding; the translation table
//! is what the mesh announces and believes. They meet at four points:
//!
//! - a client learned on (or moved to, or announced on) a local port is
//!   claimed in the mesh at once: local TT entry, an out-of-cycle OGM, a
//!   ROAM advert to the originator that had it ([`Bridge::claim`]);
//! - a local client the mesh showed to be elsewhere (a mesh frame from it,
//!   a ROAM advert about it) leaves the local TT ([`Bridge::sync_mesh`]);
//! - a ROAM advert about one of our clients moves it in the FDB at once:
//!   the new node saw the VM speak, which a frame of ours from before the
//!   migration cannot outweigh (the VM's next frame here would win it back);
//! - a client another originator announces (a TT diff, a full table, a
//!   ROAM advert) moves a remote FDB entry that a broadcast once taught us:
//!   the TT is newer than the broadcast, and without this a third node kept
//!   sending a silently migrated VM's traffic to its old node.
//!
//! Ageing and port removal withdraw local clients too (`mod.rs`).

use std::time::Instant;

use tracing::info;

use super::Bridge;
use crate::log::RateLimit;
use crate::switch::{Learned, Location};
use crate::wire::MacAddr;

impl Bridge {
    /// A new local client, a move or an announcement: claim it at once. The
    /// mesh sends ROAM adverts to an originator that still announces it,
    /// which then sends frames in flight on to us.
    pub(super) fn claim(&mut self, l: Learned) {
        self.mesh.tt_local_add_announce(l.mac, l.vid, &mut self.out);
    }

    /// After the mesh handled packets: what it learned about clients goes
    /// into the FDB, and what the FDB learned from mesh frames goes back
    /// into the local TT.
    pub(super) fn sync_mesh(&mut self, now: Instant) {
        for (mac, vid, orig) in self.mesh.take_roamed_away() {
            // The mesh already dropped the local TT entry: the FDB follows.
            self.switch.roamed(now, mac, vid, orig);
        }
        let own = self.mesh.originator();
        for (mac, vid, orig) in self.mesh.take_tt_claims() {
            if orig != own && self.switch.tt_claim(now, mac, vid, orig) {
                self.counters.tt_claims_applied += 1;
            }
        }
        self.withdraw();
        self.log_moves(now);
    }

    /// Local MACs a mesh frame showed to live elsewhere leave the local
    /// translation table.
    pub(super) fn withdraw(&mut self) {
        for (mac, vid) in self.switch.take_withdrawals() {
            self.mesh.tt_local_del(mac, vid);
        }
    }

    /// Counts and logs the MAC moves the switch made.
    pub(super) fn log_moves(&mut self, now: Instant) {
        for m in self.switch.take_moves() {
            self.counters.moves += 1;
            let from = self.place(m.from);
            let to = self.place(m.to);
            if self.flaps.moved(now, m.mac, m.vid, &to) {
                self.counters.mac_flaps += 1;
            }
            self.moves_log.moved(now, m.mac, m.vid, &from, &to);
            self.event(super::events::EventKind::Move {
                mac: m.mac,
                vlan: m.vid & 0x0fff,
                from,
                to,
            });
        }
    }

    fn place(&self, l: Location) -> String {
        match l {
            Location::Port(p) => format!("port {}", self.switch.port_name(p)),
            Location::Originator(o) => format!("originator {o}"),
        }
    }
}

/// Logs VM moves, at most [`MOVE_LOG_BURST`] lines per second: a VM that
/// flaps between ports (or a hostile one that makes it look so) must not
/// flood the log. What was left out is counted in the next line.
#[derive(Debug)]
pub(super) struct MoveLog(RateLimit);

const MOVE_LOG_BURST: u32 = 20;

impl MoveLog {
    pub(super) fn new() -> MoveLog {
        MoveLog(RateLimit::new(MOVE_LOG_BURST))
    }

    fn moved(&mut self, now: Instant, mac: MacAddr, vid: u16, from: &str, to: &str) {
        if let Some(suppressed) = self.0.allow(now) {
            info!(%mac, vlan = vid & 0x0fff, from, to, suppressed, "client moved");
        }
    }
}
