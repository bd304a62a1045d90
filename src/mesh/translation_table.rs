//! Translation table (`translation-table.c`): which originator serves which
//! client (MAC, vid). The local table holds our clients and is announced in
//! every OGM as TTVN + per-VLAN CRC32C, with the changes of the last commit
//! repeated in `TT_OGM_APPEND_MAX` OGMs; the global table is what the other
//! originators announce. A gap in TTVN or a CRC mismatch triggers a
//! TT_REQUEST, answered with a full-table TT_RESPONSE.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use crate::wire::batman::tvlv::{tt_client, TtChange, TtVlan};
use crate::wire::MacAddr;

/// Bound on our own clients.
pub const MAX_TT_LOCAL: usize = 4096;
/// Bound on (client, vid) entries learned from the mesh.
pub const MAX_TT_GLOBAL: usize = 65536;
/// One originator's share of the global table: an eighth, so one peer (or
/// an originator it invents) cannot fill it for everyone. A 500-node mesh
/// averages 131 clients per node against 8192 here; a node bridging a LAN
/// of more than 8192 MACs would be cut (its extra clients flood instead).
pub const MAX_TT_PER_ORIG: usize = MAX_TT_GLOBAL / 8;
/// Bound on originators announcing the same client.
const MAX_ORIGS_PER_CLIENT: usize = 8;
/// Bound on roamed clients per originator whose CRC removal waits for
/// that originator's next TT update; past it they leave the CRC at once
/// (at worst one TT request).
const MAX_ROAMS_COUNTED: usize = 256;
/// `BATADV_TT_OGM_APPEND_MAX`.
const TT_OGM_APPEND_MAX: u8 = 3;
/// Largest TT TVLV value we put in one unfragmented packet: fits a
/// 1382-byte gretap-equivalent link. TT responses on links that fragment
/// may be larger (`tt_tvlv.rs`); a diff too big for an OGM is left out of
/// it (receivers then request the table, as with the kernel).
pub(super) const MAX_TT_TVLV_VALUE: usize = 1280;
/// Local-only entry flags (bits 8..15 of `batadv_tt_client_flags`).
const CLIENT_NEW: u16 = 1 << 9;
const CLIENT_PENDING: u16 = 1 << 10;

/// `crc32c()` as the kernel's lib/crc32c: the raw register, no pre/post inversion.
fn kernel_crc32c(seed: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!seed, data)
}

/// CRC of one client, as `batadv_tt_local_crc` / `batadv_tt_global_crc`
/// compute it before XOR-ing all clients of a VLAN together: CRC32C over the
/// vid (network order), then the sync flags, then the MAC.
pub(crate) fn tt_entry_crc(mac: MacAddr, vid: u16, flags: u8) -> u32 {
    let c = kernel_crc32c(0, &vid.to_be_bytes());
    let c = kernel_crc32c(c, &[flags & tt_client::SYNC_MASK]);
    kernel_crc32c(c, mac.as_bytes())
}

/// Per-originator TT state, kept in its originator entry.
#[derive(Debug, Default)]
pub struct OrigTt {
    pub last_ttvn: u8,
    pub initialised: bool,
    pub crc_ok: bool,
    pub last_request: Option<Instant>,
    /// vid -> (CRC of that originator's clients as we hold them, count).
    pub vlans: BTreeMap<u16, (u32, u32)>,
    /// Clients we marked ROAM (they came to us) that still count in
    /// `vlans`, with the flags they were counted with. The kernel keeps its
    /// CRC of an originator as computed at the last TT update from it, so
    /// until that originator's next diff its OGMs still include them;
    /// dropping them at once would make a CRC mismatch and a TT request.
    pub roams_counted: Vec<(MacAddr, u16, u8)>,
}

impl OrigTt {
    /// Whether this originator holds its whole share of the global table.
    pub fn share_full(&self) -> bool {
        self.vlans.values().map(|v| v.1 as usize).sum::<usize>() >= MAX_TT_PER_ORIG
    }

    pub(super) fn account(&mut self, mac: MacAddr, vid: u16, flags: u8, add: bool) {
        if flags & tt_client::ROAM != 0 {
            return; // roaming entries are not part of the CRC
        }
        let e = self.vlans.entry(vid).or_insert((0, 0));
        e.0 ^= tt_entry_crc(mac, vid, flags);
        e.1 = if add { e.1 + 1 } else { e.1.saturating_sub(1) };
        if e.1 == 0 {
            self.vlans.remove(&vid);
        }
    }

    /// Takes a client out of `roams_counted`: the flags it counts with.
    fn take_roam_counted(&mut self, mac: MacAddr, vid: u16) -> Option<u8> {
        let i = self
            .roams_counted
            .iter()
            .position(|(m, v, _)| *m == mac && *v == vid)?;
        Some(self.roams_counted.swap_remove(i).2)
    }

    /// Un-counts an entry we hold with `flags`, wherever it is counted.
    fn uncount(&mut self, mac: MacAddr, vid: u16, flags: u8) {
        let counted = self.take_roam_counted(mac, vid).unwrap_or(flags);
        self.account(mac, vid, counted, false);
    }

    /// After applying an update from the originator: roaming clients leave
    /// the CRC now, as `batadv_tt_global_update_crc` skips them.
    pub(super) fn settle_roams(&mut self) {
        for (mac, vid, flags) in std::mem::take(&mut self.roams_counted) {
            self.account(mac, vid, flags, false);
        }
    }

    /// `batadv_tt_global_check_crc`.
    pub(crate) fn check_crc(&self, announced: &[TtVlan]) -> bool {
        announced
            .iter()
            .all(|v| self.vlans.get(&v.vid).is_some_and(|(c, _)| *c == v.crc))
            && self.vlans.len() <= announced.len()
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TtGlobalInfo {
    pub mac: MacAddr,
    pub vid: u16,
    pub orig: MacAddr,
    pub flags: u8,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TtLocalInfo {
    pub mac: MacAddr,
    pub vid: u16,
    /// Not yet announced in an OGM.
    pub new: bool,
    /// Deleted, leaves with the next OGM.
    pub pending_delete: bool,
}

#[derive(Debug, Default)]
pub struct TranslationTable {
    /// (mac, vid) -> local flags.
    pub(super) local: BTreeMap<(MacAddr, u16), u16>,
    pub(super) changes: Vec<TtChange>,
    pub ttvn: u8,
    pub(super) last_changeset: Vec<TtChange>,
    pub(super) append_cnt: u8,
    pub(super) local_vlans: BTreeMap<u16, u32>,
    /// (mac, vid) -> announcing originators with their flags.
    pub(super) global: HashMap<(MacAddr, u16), Vec<(MacAddr, u8)>>,
}

impl TranslationTable {
    /// False when the table is full.
    pub fn local_add(&mut self, mac: MacAddr, vid: u16) -> bool {
        if let Some(f) = self.local.get_mut(&(mac, vid)) {
            if *f & CLIENT_PENDING != 0 {
                // deleted and back before the next OGM: cancel the delete
                *f &= !CLIENT_PENDING;
                self.changes.retain(|c| !(c.addr == mac && c.vid == vid));
            }
            return true;
        }
        if self.local.len() >= MAX_TT_LOCAL {
            return false;
        }
        self.local.insert((mac, vid), CLIENT_NEW);
        self.changes.push(TtChange {
            flags: 0,
            addr: mac,
            vid,
        });
        true
    }

    /// Is this client ours (announced or about to be, not being deleted)?
    pub fn local_serves(&self, mac: MacAddr, vid: u16) -> bool {
        self.local
            .get(&(mac, vid))
            .is_some_and(|f| f & CLIENT_PENDING == 0)
    }

    /// Is this client ours but being deleted (roamed away)?
    pub fn local_leaving(&self, mac: MacAddr, vid: u16) -> bool {
        self.local
            .get(&(mac, vid))
            .is_some_and(|f| f & CLIENT_PENDING != 0)
    }

    pub fn local_del(&mut self, mac: MacAddr, vid: u16) {
        let Some(f) = self.local.get_mut(&(mac, vid)) else {
            return;
        };
        if *f & CLIENT_NEW != 0 {
            // never announced: forget it silently
            self.local.remove(&(mac, vid));
            self.changes.retain(|c| !(c.addr == mac && c.vid == vid));
        } else if *f & CLIENT_PENDING == 0 {
            *f |= CLIENT_PENDING;
            self.changes.push(TtChange {
                flags: tt_client::DEL,
                addr: mac,
                vid,
            });
        }
    }

    /// `batadv_tt_local_commit_changes`: before each own OGM.
    pub(super) fn commit(&mut self) {
        if self.changes.is_empty() {
            return;
        }
        self.local.retain(|_, f| *f & CLIENT_PENDING == 0);
        for f in self.local.values_mut() {
            *f &= !CLIENT_NEW;
        }
        self.ttvn = self.ttvn.wrapping_add(1);
        self.local_vlans.clear();
        for ((mac, vid), f) in &self.local {
            *self.local_vlans.entry(*vid).or_insert(0) ^= tt_entry_crc(*mac, *vid, *f as u8);
        }
        self.last_changeset = std::mem::take(&mut self.changes);
        self.append_cnt = TT_OGM_APPEND_MAX;
    }

    pub(super) fn vlan_data(&self) -> Vec<TtVlan> {
        self.local_vlans
            .iter()
            .map(|(vid, crc)| TtVlan {
                crc: *crc,
                vid: *vid,
            })
            .collect()
    }

    /// Our whole (announced) table as TT changes, for a TT_RESPONSE.
    pub(super) fn full_table(&self) -> Vec<TtChange> {
        self.local
            .iter()
            .filter(|(_, f)| **f & CLIENT_NEW == 0)
            .map(|((mac, vid), f)| TtChange {
                flags: (*f as u8) & !tt_client::DEL,
                addr: *mac,
                vid: *vid,
            })
            .collect()
    }

    pub(crate) fn global_add(&mut self, ott: &mut OrigTt, orig: MacAddr, c: &TtChange) -> bool {
        let key = (c.addr, c.vid);
        if !self.global.contains_key(&key) && self.global.len() >= MAX_TT_GLOBAL {
            return false;
        }
        let list = self.global.entry(key).or_default();
        let flags = c.flags & (tt_client::SYNC_MASK | tt_client::ROAM);
        if let Some(e) = list.iter_mut().find(|(o, _)| *o == orig) {
            ott.uncount(c.addr, c.vid, e.1);
            e.1 = flags;
        } else if ott.share_full() {
            if list.is_empty() {
                self.global.remove(&key);
            }
            return false;
        } else if list.len() < MAX_ORIGS_PER_CLIENT {
            list.push((orig, flags));
        } else {
            return false;
        }
        ott.account(c.addr, c.vid, flags, true);
        true
    }

    pub(super) fn global_del(&mut self, ott: &mut OrigTt, orig: MacAddr, mac: MacAddr, vid: u16) {
        let key = (mac, vid);
        let Some(list) = self.global.get_mut(&key) else {
            return;
        };
        if let Some(i) = list.iter().position(|(o, _)| *o == orig) {
            let (_, f) = list.swap_remove(i);
            ott.uncount(mac, vid, f);
        }
        if list.is_empty() {
            self.global.remove(&key);
        }
    }

    /// Marks a client as roaming away from every originator that announced
    /// it (a ROAM entry leaves their CRC) and returns those originators.
    pub(super) fn global_mark_roam(
        &mut self,
        origs: &mut super::originator::OrigTable,
        mac: MacAddr,
        vid: u16,
    ) -> Vec<MacAddr> {
        let Some(list) = self.global.get_mut(&(mac, vid)) else {
            return Vec::new();
        };
        let mut roamed = Vec::new();
        for (o, f) in list.iter_mut().filter(|(_, f)| *f & tt_client::ROAM == 0) {
            if let Some(node) = origs.get_mut(o) {
                // Counted until its originator's next update (settle_roams).
                if node.tt.roams_counted.len() < MAX_ROAMS_COUNTED {
                    node.tt.roams_counted.push((mac, vid, *f));
                } else {
                    node.tt.account(mac, vid, *f, false);
                }
            }
            *f |= tt_client::ROAM;
            roamed.push(*o);
        }
        roamed
    }

    /// Drops every client of an originator (it was purged).
    pub fn global_del_orig(&mut self, orig: MacAddr) {
        self.global.retain(|_, list| {
            list.retain(|(o, _)| *o != orig);
            !list.is_empty()
        });
    }

    pub fn global_lookup(
        &self,
        mac: MacAddr,
        vid: u16,
        tq_of: impl Fn(MacAddr) -> u8,
    ) -> Option<MacAddr> {
        let list = self.global.get(&(mac, vid))?;
        let mut best: Option<(MacAddr, u8)> = None;
        for (o, _) in list {
            let tq = tq_of(*o);
            if best.is_none_or(|(_, b)| tq > b) {
                best = Some((*o, tq));
            }
        }
        best.map(|(o, _)| o)
    }

    pub fn global_entries(&self) -> Vec<TtGlobalInfo> {
        let mut v = self.global_copy();
        v.sort_by_key(|e| (e.mac, e.vid, e.orig));
        v
    }

    /// The global entries unsorted: a copy cheap enough to take under the
    /// node lock (`ctl fdb` sorts it after letting go).
    pub fn global_copy(&self) -> Vec<TtGlobalInfo> {
        self.global
            .iter()
            .flat_map(|((mac, vid), list)| {
                list.iter().map(move |(o, f)| TtGlobalInfo {
                    mac: *mac,
                    vid: *vid,
                    orig: *o,
                    flags: *f,
                })
            })
            .collect()
    }

    pub fn local_entries(&self) -> Vec<TtLocalInfo> {
        self.local
            .iter()
            .map(|((mac, vid), f)| TtLocalInfo {
                mac: *mac,
                vid: *vid,
                new: f & CLIENT_NEW != 0,
                pending_delete: f & CLIENT_PENDING != 0,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_crc_matches_kernel_crc32c_register_semantics() {
        // Reference from a bit-by-bit implementation of the kernel's
        // __crc32c_le (seed 0, no inversion) over vid, flags, MAC.
        let mac = MacAddr([2, 0, 0, 0, 0x0a, 0]);
        assert_eq!(tt_entry_crc(mac, 0, 0), 0x61dd_5395);
        assert_eq!(tt_entry_crc(mac, 0x8000, 0), 0xc7b5_567e);
        assert_eq!(tt_entry_crc(mac, 0, 0x10), 0xfd86_a933);
        // Local-only and non-sync flags do not change it.
        assert_eq!(tt_entry_crc(mac, 0, 0x03), 0x61dd_5395);
    }

    #[test]
    fn one_originator_fills_its_share_only() {
        let mut t = TranslationTable::default();
        let (mut filler, mut honest) = (OrigTt::default(), OrigTt::default());
        let (f, h) = (MacAddr([2, 0x66, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        let change = |i: usize, tag: u8| TtChange {
            flags: 0,
            addr: MacAddr([2, tag, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]),
            vid: 0,
        };
        let added = (0..MAX_TT_PER_ORIG + 100)
            .filter(|&i| t.global_add(&mut filler, f, &change(i, 0x66)))
            .count();
        assert_eq!(added, MAX_TT_PER_ORIG);
        assert_eq!(t.global.len(), MAX_TT_PER_ORIG);
        // An update of a held entry still goes through.
        assert!(t.global_add(&mut filler, f, &change(0, 0x66)));
        assert!(t.global_add(&mut honest, h, &change(1, 0x42)));
        assert!(filler.share_full() && !honest.share_full());
    }

    #[test]
    fn local_commit_cycle() {
        let mut t = TranslationTable::default();
        let a = MacAddr([2, 0, 0, 0, 1, 1]);
        let b = MacAddr([2, 0, 0, 0, 1, 2]);
        t.local_add(a, 0);
        t.local_add(b, 0);
        t.local_del(b, 0); // never announced: vanishes without a change
        t.commit();
        assert_eq!(t.ttvn, 1);
        assert_eq!(t.last_changeset.len(), 1);
        assert_eq!(
            t.vlan_data(),
            vec![TtVlan {
                crc: tt_entry_crc(a, 0, 0),
                vid: 0
            }]
        );
        t.commit(); // nothing pending: no new version
        assert_eq!(t.ttvn, 1);
        t.local_del(a, 0);
        t.local_add(a, 0); // back before the OGM: nothing to announce
        t.commit();
        assert_eq!(t.ttvn, 1);
        t.local_del(a, 0);
        t.commit();
        assert_eq!((t.ttvn, t.local.len(), t.vlan_data().len()), (2, 0, 0));
        assert_eq!(t.last_changeset[0].flags, tt_client::DEL);
    }
}
