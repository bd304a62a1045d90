//! Translation table (`translation-table.c`): which originator serves which
//! client (MAC, vid). The local table holds our clients and is announced in
//! every OGM as TTVN + per-VLAN CRC32C, with the changes of the last commit
//! repeated in `TT_OGM_APPEND_MAX` OGMs; the global table is what the other
//! originators announce. A gap in TTVN or a CRC mismatch triggers a
//! TT_REQUEST, answered with a full-table TT_RESPONSE.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::{Mesh, MeshOutput};
use crate::wire::batman::tvlv::{
    self, tt_client, tt_flags, tvlv_type, RoamAdv, TtChange, TtData, TtVlan, TvlvIter,
};
use crate::wire::MacAddr;

/// Bound on our own clients.
pub const MAX_TT_LOCAL: usize = 4096;
/// Bound on (client, vid) entries learned from the mesh.
pub const MAX_TT_GLOBAL: usize = 65536;
/// Bound on originators announcing the same client.
const MAX_ORIGS_PER_CLIENT: usize = 8;
/// `BATADV_TT_OGM_APPEND_MAX`.
const TT_OGM_APPEND_MAX: u8 = 3;
/// `BATADV_TT_REQUEST_TIMEOUT`: at most one outstanding request per originator.
const TT_REQUEST_TIMEOUT: Duration = Duration::from_millis(3000);
/// Largest TT TVLV value we put in one packet. Fragmentation is not
/// implemented yet, so a diff or full table must fit an unfragmented
/// packet on a 1382-byte gretap-equivalent link; a larger diff is left out
/// of the OGM (receivers then request the table, as the kernel does).
const MAX_TT_TVLV_VALUE: usize = 1280;
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
}

impl OrigTt {
    fn account(&mut self, mac: MacAddr, vid: u16, flags: u8, add: bool) {
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

    /// `batadv_tt_global_check_crc`.
    fn check_crc(&self, announced: &[TtVlan]) -> bool {
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
    local: BTreeMap<(MacAddr, u16), u16>,
    changes: Vec<TtChange>,
    pub ttvn: u8,
    last_changeset: Vec<TtChange>,
    append_cnt: u8,
    local_vlans: BTreeMap<u16, u32>,
    /// (mac, vid) -> announcing originators with their flags.
    global: HashMap<(MacAddr, u16), Vec<(MacAddr, u8)>>,
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
    fn commit(&mut self) {
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

    fn vlan_data(&self) -> Vec<TtVlan> {
        self.local_vlans
            .iter()
            .map(|(vid, crc)| TtVlan {
                crc: *crc,
                vid: *vid,
            })
            .collect()
    }

    /// Our whole (announced) table as TT changes, for a TT_RESPONSE.
    fn full_table(&self) -> Vec<TtChange> {
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

    fn global_add(&mut self, ott: &mut OrigTt, orig: MacAddr, c: &TtChange) -> bool {
        let key = (c.addr, c.vid);
        if !self.global.contains_key(&key) && self.global.len() >= MAX_TT_GLOBAL {
            return false;
        }
        let list = self.global.entry(key).or_default();
        let flags = c.flags & (tt_client::SYNC_MASK | tt_client::ROAM);
        if let Some(e) = list.iter_mut().find(|(o, _)| *o == orig) {
            ott.account(c.addr, c.vid, e.1, false);
            e.1 = flags;
        } else if list.len() < MAX_ORIGS_PER_CLIENT {
            list.push((orig, flags));
        } else {
            return false;
        }
        ott.account(c.addr, c.vid, flags, true);
        true
    }

    fn global_del(&mut self, ott: &mut OrigTt, orig: MacAddr, mac: MacAddr, vid: u16) {
        let key = (mac, vid);
        let Some(list) = self.global.get_mut(&key) else {
            return;
        };
        if let Some(i) = list.iter().position(|(o, _)| *o == orig) {
            let (_, f) = list.swap_remove(i);
            ott.account(mac, vid, f, false);
        }
        if list.is_empty() {
            self.global.remove(&key);
        }
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
        let mut v: Vec<TtGlobalInfo> = self
            .global
            .iter()
            .flat_map(|((mac, vid), list)| {
                list.iter().map(move |(o, f)| TtGlobalInfo {
                    mac: *mac,
                    vid: *vid,
                    orig: *o,
                    flags: *f,
                })
            })
            .collect();
        v.sort_by_key(|e| (e.mac, e.vid, e.orig));
        v
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

/// Encodes a TT TVLV container.
fn tt_container(flags: u8, ttvn: u8, vlans: &[TtVlan], changes: &[TtChange]) -> Vec<u8> {
    let mut value = Vec::with_capacity(4 + 8 * vlans.len() + 12 * changes.len());
    tvlv::emit_tt_data(&mut value, flags, ttvn, vlans, changes);
    let mut out = Vec::with_capacity(value.len() + 4);
    // cannot fail: callers keep values under MAX_TT_TVLV_VALUE
    let _ = tvlv::emit(&mut out, tvlv_type::TT, 1, &value);
    out
}

/// Largest TT value in our OGM: a kernel ignores every OGM of an aggregate
/// that ends past `BATADV_MAX_AGGREGATION_BYTES` (512), and ours carries the
/// primary OGM (24 + 4 TVLV header + value) and a 24-byte secondary OGM.
const MAX_OGM_TT_VALUE: usize = 512 - 24 - 4 - 24;

/// How many changes fit next to `num_vlan` VLAN records in `max_value` bytes.
fn max_changes(max_value: usize, num_vlan: usize) -> usize {
    max_value.saturating_sub(tvlv::TT_DATA_LEN + tvlv::TT_VLAN_LEN * num_vlan) / tvlv::TT_CHANGE_LEN
}

impl Mesh {
    /// Commits pending local changes and returns the OGM's TVLV region: only
    /// the TT container. No DAT and no MCAST container on purpose: without
    /// DAT kernels never pick us as DHT candidate, without MCAST they flood
    /// multicast to us as broadcast.
    pub(crate) fn tt_ogm_tvlv(&mut self) -> Vec<u8> {
        self.tt.commit();
        let vlans = self.tt.vlan_data();
        let mut changes: &[TtChange] = &[];
        if self.tt.append_cnt > 0 {
            self.tt.append_cnt -= 1;
            // A diff too big for the OGM is left out; receivers then see the
            // TTVN jump without changes and request the table (as with the kernel).
            if self.tt.last_changeset.len() <= max_changes(MAX_OGM_TT_VALUE, vlans.len()) {
                changes = &self.tt.last_changeset;
            }
        }
        tt_container(tt_flags::OGM_DIFF, self.tt.ttvn, &vlans, changes)
    }

    /// TVLVs of an OGM from `orig` (`batadv_tvlv_ogm_receive`).
    pub(crate) fn tt_ogm_receive(
        &mut self,
        now: Instant,
        orig: MacAddr,
        region: &[u8],
        out: &mut Vec<MeshOutput>,
    ) {
        for t in TvlvIter::new(region) {
            let Ok(t) = t else {
                self.counters.malformed += 1;
                return;
            };
            match (t.tvlv_type, t.version) {
                (tvlv_type::TT, 1) => match TtData::new_checked(t.value) {
                    Ok(d) => {
                        let vlans: Vec<TtVlan> = d.vlans().collect();
                        let changes: Vec<TtChange> = d.changes().collect();
                        self.tt_update_orig(now, orig, &vlans, &changes, d.ttvn(), out);
                    }
                    Err(_) => self.counters.malformed += 1,
                },
                (tvlv_type::MCAST, _) | (tvlv_type::DAT, _) | (tvlv_type::GW, _) => {}
                _ => self.counters.tvlv_unknown += 1,
            }
        }
    }

    /// `batadv_tt_update_orig`.
    fn tt_update_orig(
        &mut self,
        now: Instant,
        orig: MacAddr,
        vlans: &[TtVlan],
        changes: &[TtChange],
        ttvn: u8,
        out: &mut Vec<MeshOutput>,
    ) {
        let Some(o) = self.origs.get_mut(&orig) else {
            return;
        };
        let orig_ttvn = o.tt.last_ttvn;
        let init = o.tt.initialised;
        let next_diff = (!init && ttvn == 1) || ttvn.wrapping_sub(orig_ttvn) == 1;
        let mut request = None;
        if next_diff {
            if changes.is_empty() {
                request = Some(false);
            } else {
                for c in changes {
                    if c.flags & tt_client::DEL != 0 {
                        self.tt.global_del(&mut o.tt, orig, c.addr, c.vid);
                    } else if !self.tt.global_add(&mut o.tt, orig, c) {
                        self.counters.table_full += 1;
                    }
                }
                self.counters.tt_changes_applied += changes.len() as u64;
                o.tt.last_ttvn = ttvn;
                o.tt.initialised = true;
                o.tt.crc_ok = o.tt.check_crc(vlans);
                if !o.tt.crc_ok {
                    request = Some(true);
                }
            }
        } else {
            o.tt.crc_ok = init && o.tt.check_crc(vlans);
            if !init || ttvn != orig_ttvn || !o.tt.crc_ok {
                request = Some(true);
            }
        }
        if let Some(full) = request {
            if init && ttvn == orig_ttvn {
                self.counters.tt_crc_mismatch += 1;
            }
            self.tt_send_request(now, orig, ttvn, vlans, full, out);
        }
    }

    /// `batadv_send_tt_request`, rate limited per originator.
    fn tt_send_request(
        &mut self,
        now: Instant,
        orig: MacAddr,
        ttvn: u8,
        vlans: &[TtVlan],
        full: bool,
        out: &mut Vec<MeshOutput>,
    ) {
        let Some(o) = self.origs.get_mut(&orig) else {
            return;
        };
        if o.tt
            .last_request
            .is_some_and(|t| now.saturating_duration_since(t) < TT_REQUEST_TIMEOUT)
        {
            return;
        }
        o.tt.last_request = Some(now);
        let flags = tt_flags::REQUEST | if full { tt_flags::FULL_TABLE } else { 0 };
        let c = tt_container(flags, ttvn, vlans, &[]);
        if self.unicast_tvlv_send(orig, &c, out) {
            self.counters.tt_requests_sent += 1;
        }
    }

    /// A unicast TVLV addressed to us (`batadv_recv_unicast_tvlv`).
    pub(crate) fn tt_unicast_tvlv_receive(
        &mut self,
        now: Instant,
        src: MacAddr,
        region: &[u8],
        out: &mut Vec<MeshOutput>,
    ) {
        for t in TvlvIter::new(region) {
            let Ok(t) = t else {
                self.counters.malformed += 1;
                return;
            };
            match (t.tvlv_type, t.version) {
                (tvlv_type::TT, 1) => match TtData::new_checked(t.value) {
                    Ok(d) => self.tt_unicast_receive(now, src, &d, out),
                    Err(_) => self.counters.malformed += 1,
                },
                (tvlv_type::ROAM, 1) => match RoamAdv::parse(t.value) {
                    Ok(r) => self.tt_roam_receive(now, src, r),
                    Err(_) => self.counters.malformed += 1,
                },
                _ => self.counters.tvlv_unknown += 1,
            }
        }
    }

    fn tt_unicast_receive(
        &mut self,
        now: Instant,
        src: MacAddr,
        d: &TtData<&[u8]>,
        out: &mut Vec<MeshOutput>,
    ) {
        match d.flags() & tt_flags::TYPE_MASK {
            tt_flags::REQUEST => {
                // Always answer with our full table; valid for any request.
                let mut table = self.tt.full_table();
                let vlans = self.tt.vlan_data();
                table.truncate(max_changes(MAX_TT_TVLV_VALUE, vlans.len()));
                let c = tt_container(
                    tt_flags::RESPONSE | tt_flags::FULL_TABLE,
                    self.tt.ttvn,
                    &vlans,
                    &table,
                );
                if self.unicast_tvlv_send(src, &c, out) {
                    self.counters.tt_requests_answered += 1;
                }
            }
            tt_flags::RESPONSE => self.tt_handle_response(now, src, d),
            _ => self.counters.malformed += 1,
        }
    }

    /// `batadv_handle_tt_response`.
    fn tt_handle_response(&mut self, now: Instant, src: MacAddr, d: &TtData<&[u8]>) {
        self.counters.tt_responses_received += 1;
        let Some(o) = self.origs.get_mut(&src) else {
            return;
        };
        if d.flags() & tt_flags::FULL_TABLE != 0 {
            let mine: Vec<(MacAddr, u16)> = self
                .tt
                .global
                .iter()
                .filter(|(_, l)| l.iter().any(|(x, _)| *x == src))
                .map(|(k, _)| *k)
                .collect();
            for (mac, vid) in mine {
                self.tt.global_del(&mut o.tt, src, mac, vid);
            }
        }
        for c in d.changes() {
            if c.flags & tt_client::DEL != 0 {
                self.tt.global_del(&mut o.tt, src, c.addr, c.vid);
            } else if !self.tt.global_add(&mut o.tt, src, &c) {
                self.counters.table_full += 1;
            }
        }
        let vlans: Vec<TtVlan> = d.vlans().collect();
        o.tt.last_ttvn = d.ttvn();
        o.tt.initialised = true;
        o.tt.crc_ok = o.tt.check_crc(&vlans);
        o.tt.last_request = None;
        let _ = now;
    }

    /// `batadv_handle_roaming_adv`: `client` now lives behind `src`.
    fn tt_roam_receive(&mut self, now: Instant, src: MacAddr, r: RoamAdv) {
        self.counters.roam_received += 1;
        self.tt.local_del(r.client, r.vid);
        let Some(o) = self.origs.get_or_create(src, now) else {
            return;
        };
        let c = TtChange {
            flags: tt_client::ROAM,
            addr: r.client,
            vid: r.vid,
        };
        if !self.tt.global_add(&mut o.tt, src, &c) {
            self.counters.table_full += 1;
        }
    }

    /// TTVN to put in a unicast header for `orig`.
    pub(crate) fn tt_orig_ttvn(&self, orig: &MacAddr) -> u8 {
        self.origs.get(orig).map_or(0, |o| o.tt.last_ttvn)
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
