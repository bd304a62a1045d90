//! The TT messages (`translation-table.c`, TVLV side): the TT container in
//! our OGMs, TT data in others' OGMs, TT_REQUEST / TT_RESPONSE and ROAM
//! adverts in unicast TVLVs. The tables themselves are in
//! `translation_table.rs`.

use std::time::{Duration, Instant};

use super::fragmentation::{MAX_FRAGMENTS, MAX_FRAG_SIZE};
use super::translation_table::MAX_TT_TVLV_VALUE;
use super::{roaming, Mesh, MeshOutput, MAX_PENDING_OUT};
use crate::wire::batman::tvlv::{
    self, tt_client, tt_flags, tvlv_type, RoamAdv, TtChange, TtData, TtVlan, TvlvIter,
};
use crate::wire::MacAddr;

/// Largest TT value of a response that leaves in fragments: what fits a
/// UNICAST_TVLV (20-byte header, 4-byte TVLV header) in the 16 fragments
/// of at most 1280 bytes a kernel reassembles (`batadv_frag_size_limit`),
/// about 1670 clients.
const MAX_TT_RESPONSE_FRAG_VALUE: usize =
    MAX_FRAGMENTS * (MAX_FRAG_SIZE - FRAG_HLEN) - UNICAST_TVLV_HLEN - 4;
const FRAG_HLEN: usize = 20;
const UNICAST_TVLV_HLEN: usize = 20;

/// `BATADV_TT_REQUEST_TIMEOUT`: at most one outstanding request per originator.
const TT_REQUEST_TIMEOUT: Duration = Duration::from_millis(3000);

/// Encodes a TT TVLV container.
pub(crate) fn tt_container(flags: u8, ttvn: u8, vlans: &[TtVlan], changes: &[TtChange]) -> Vec<u8> {
    let mut value = Vec::with_capacity(4 + 8 * vlans.len() + 12 * changes.len());
    tvlv::emit_tt_data(&mut value, flags, ttvn, vlans, changes);
    let mut out = Vec::with_capacity(value.len() + 4);
    // cannot fail: callers keep values under MAX_TT_RESPONSE_FRAG_VALUE (< 64 KiB)
    let _ = tvlv::emit(&mut out, tvlv_type::TT, 1, &value);
    out
}

/// Largest TT value in our OGM: a kernel ignores every OGM of an aggregate
/// that ends past `BATADV_MAX_AGGREGATION_BYTES` (512), and ours carries the
/// primary OGM (24 + 4 TVLV header + value, then our scope container) and
/// a 24-byte secondary OGM.
/// The DAT container (an empty TVLV) and the MCAST container come after
/// the TT container.
const MAX_OGM_TT_VALUE: usize = 512
    - 24
    - 4
    - 24
    - super::scope::MAX_SCOPE_TVLV
    - tvlv::TVLV_HDR_LEN
    - super::multicast::MCAST_TVLV_LEN;

/// How many changes fit next to `num_vlan` VLAN records in `max_value` bytes.
fn max_changes(max_value: usize, num_vlan: usize) -> usize {
    max_value.saturating_sub(tvlv::TT_DATA_LEN + tvlv::TT_VLAN_LEN * num_vlan) / tvlv::TT_CHANGE_LEN
}

impl Mesh {
    /// Commits pending local changes and returns the OGM's TVLV region: the
    /// TT container, and the DAT container while DAT is on (kernels then
    /// pick us as a DHT candidate, `dat.rs`), and the MCAST container while
    /// multicast is on (`multicast.rs`).
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
        let mut region = tt_container(tt_flags::OGM_DIFF, self.tt.ttvn, &vlans, changes);
        if self.dat.enabled {
            let _ = tvlv::emit(&mut region, tvlv_type::DAT, 1, &[]);
        }
        self.mcast_ogm_tvlv(&mut region);
        region
    }

    /// TVLVs of an OGM from `orig` (`batadv_tvlv_ogm_receive`).
    pub(crate) fn tt_ogm_receive(
        &mut self,
        now: Instant,
        orig: MacAddr,
        region: &[u8],
        out: &mut Vec<MeshOutput>,
    ) {
        let mut has_dat = false;
        let mut mcast = None;
        for t in TvlvIter::new(region) {
            let Ok(t) = t else {
                self.counters.malformed += 1;
                return;
            };
            has_dat |= (t.tvlv_type, t.version) == (tvlv_type::DAT, 1);
            match (t.tvlv_type, t.version) {
                (tvlv_type::TT, 1) => match TtData::new_checked(t.value) {
                    Ok(d) => {
                        let vlans: Vec<TtVlan> = d.vlans().collect();
                        let changes: Vec<TtChange> = d.changes().collect();
                        self.tt_update_orig(now, orig, &vlans, &changes, d.ttvn(), out);
                    }
                    Err(_) => self.counters.malformed += 1,
                },
                (tvlv_type::MCAST, 2) => mcast = self.mcast_parse(t.value),
                (tvlv_type::MCAST, _)
                | (tvlv_type::DAT, _)
                | (tvlv_type::GW, _)
                | (tvlv_type::MESHWIRE_SCOPE, _) => {}
                _ => self.counters.tvlv_unknown += 1,
            }
        }
        self.dat_capability(orig, has_dat);
        self.mcast_capability(orig, mcast);
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
        let mut why = "";
        if next_diff {
            if changes.is_empty() {
                request = Some(false);
                why = "diff missing";
            } else {
                for c in changes {
                    if c.flags & tt_client::DEL != 0 {
                        self.tt.global_del(&mut o.tt, orig, c.addr, c.vid);
                    } else if self.tt.global_add(&mut o.tt, orig, c) {
                        push_claim(&mut self.tt_claims, (c.addr, c.vid, orig));
                    } else if o.tt.share_full() {
                        self.counters.tt_share_refused += 1;
                    } else {
                        self.counters.table_full += 1;
                    }
                }
                self.counters.tt_changes_applied += changes.len() as u64;
                o.tt.last_ttvn = ttvn;
                o.tt.initialised = true;
                o.tt.settle_roams();
                o.tt.crc_ok = o.tt.check_crc(vlans);
                if !o.tt.crc_ok {
                    request = Some(true);
                    why = "crc mismatch after diff";
                }
            }
        } else {
            o.tt.crc_ok = init && o.tt.check_crc(vlans);
            if !init || ttvn != orig_ttvn || !o.tt.crc_ok {
                request = Some(true);
                why = if !init {
                    "first contact"
                } else if ttvn != orig_ttvn {
                    "ttvn gap"
                } else {
                    "crc mismatch"
                };
            }
        }
        if let Some(full) = request {
            if why.starts_with("crc") {
                self.counters.tt_crc_mismatch += 1;
            }
            self.tt_send_request(now, orig, (ttvn, orig_ttvn), vlans, full, why, out);
        }
    }

    /// `batadv_send_tt_request`, rate limited per originator. Logged: a
    /// request is rare once tables agree, and a loop of them is the first
    /// sign of a TT disagreement with another implementation.
    #[allow(clippy::too_many_arguments)]
    fn tt_send_request(
        &mut self,
        now: Instant,
        orig: MacAddr,
        (ttvn, known_ttvn): (u8, u8),
        vlans: &[TtVlan],
        full: bool,
        why: &str,
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
            tracing::info!(%orig, ttvn, known_ttvn, full, why, "TT request");
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
                if !self.answer_guard.allow(now, src) {
                    self.counters.tt_unsolicited += 1;
                    return;
                }
                // Always answer with our full table; valid for any request.
                // Whole, in fragments, where the link fragments; otherwise
                // what one packet holds (the requester then sees a CRC
                // mismatch: no worse than no answer).
                let mut table = self.tt.full_table();
                let vlans = self.tt.vlan_data();
                let cap = if self.route_fragments(&src) {
                    MAX_TT_RESPONSE_FRAG_VALUE
                } else {
                    MAX_TT_TVLV_VALUE
                };
                table.truncate(max_changes(cap, vlans.len()));
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
        // Only an answer to our own request may replace a client list: an
        // unsolicited full table would let any peer rewrite another's.
        if o.tt.last_request.is_none() {
            self.counters.tt_unsolicited += 1;
            return;
        }
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
            } else if self.tt.global_add(&mut o.tt, src, &c) {
                push_claim(&mut self.tt_claims, (c.addr, c.vid, src));
            } else if o.tt.share_full() {
                self.counters.tt_share_refused += 1;
            } else {
                self.counters.table_full += 1;
            }
        }
        let vlans: Vec<TtVlan> = d.vlans().collect();
        o.tt.last_ttvn = d.ttvn();
        o.tt.initialised = true;
        o.tt.settle_roams();
        o.tt.crc_ok = o.tt.check_crc(&vlans);
        o.tt.last_request = None;
        let _ = now;
    }

    /// `batadv_handle_roaming_adv`: `client` now lives behind `src`.
    fn tt_roam_receive(&mut self, now: Instant, src: MacAddr, r: RoamAdv) {
        self.counters.roam_received += 1;
        // A group MAC (multicast listeners) never roams: each node
        // announces its own listeners.
        if r.client.is_multicast() {
            self.counters.tt_unsolicited += 1;
            return;
        }
        // A ROAM advert withdraws our client: only from an originator we
        // route to, never from a made-up one.
        if self.origs.route(&src).is_none() {
            self.counters.tt_unsolicited += 1;
            return;
        }
        if self.tt.local_serves(r.client, r.vid) {
            // Our client: whoever keeps the MAC -> port map must hear it
            // moved, or a later frame from the same port would not count as
            // new and the client would never be announced again.
            if self.roamed_away.len() < MAX_PENDING_OUT {
                self.roamed_away.push((r.client, r.vid, src));
            } else {
                self.counters.table_full += 1;
            }
            self.tt.local_del(r.client, r.vid);
            // Everyone else still lists us for this client until they hear
            // the delete: tell them now, not at the next interval.
            self.tt_change_ogm(now);
        }
        let Some(o) = self.origs.get_or_create(src, now) else {
            return;
        };
        let c = TtChange {
            flags: tt_client::ROAM,
            addr: r.client,
            vid: r.vid,
        };
        if self.tt.global_add(&mut o.tt, src, &c) {
            push_claim(&mut self.tt_claims, (r.client, r.vid, src));
        } else {
            self.counters.table_full += 1;
        }
    }

    /// A client appeared here (`batadv_tt_local_add`). If other
    /// originators announce it, it roamed to us: tell each of them at once
    /// with a ROAM advert, so they drop it and send its traffic here without
    /// waiting for our next OGM (live migration).
    pub(crate) fn tt_local_add_roaming(
        &mut self,
        mac: MacAddr,
        vid: u16,
        out: &mut Vec<MeshOutput>,
    ) -> bool {
        let now = self.now.unwrap_or_else(Instant::now);
        let claim = !self.tt.local_serves(mac, vid);
        if !self.tt.local_add(mac, vid) {
            return false;
        }
        for orig in self.tt.global_mark_roam(&mut self.origs, mac, vid) {
            if !self.roam_guard.allow(now, mac, vid) {
                self.counters.roam_suppressed += 1;
                continue;
            }
            let mut value = Vec::with_capacity(tvlv::ROAM_ADV_LEN);
            value.extend_from_slice(mac.as_bytes());
            value.extend_from_slice(&vid.to_be_bytes());
            let mut c = Vec::with_capacity(4 + value.len());
            let _ = tvlv::emit(&mut c, tvlv_type::ROAM, 1, &value);
            if self.unicast_tvlv_send(orig, &c, out) {
                self.counters.roam_sent += 1;
            }
        }
        if claim {
            self.tt_change_ogm(now);
        }
        true
    }

    /// A client became ours or left us: the OGM that carries the change
    /// goes out at once (rate-limited), not at the next interval.
    pub(crate) fn tt_change_ogm(&mut self, now: Instant) {
        // Never ticked yet: the first tick sends an OGM anyway.
        let Some(planned) = self.next_ogm else {
            return;
        };
        let at = roaming::ooc_ogm_time(now, self.last_ooc_ogm, Some(planned));
        if at < planned {
            self.next_ogm = Some(at);
            self.last_ooc_ogm = Some(at);
            self.counters.ogm_out_of_cycle += 1;
        }
    }

    /// TTVN to put in a unicast header for `orig`.
    pub(crate) fn tt_orig_ttvn(&self, orig: &MacAddr) -> u8 {
        self.origs.get(orig).map_or(0, |o| o.tt.last_ttvn)
    }
}

/// Queues a client's new originator for the MAC table (bounded: past the
/// bound the table keeps its entry until it ages or the next frame fixes it).
fn push_claim(claims: &mut Vec<(MacAddr, u16, MacAddr)>, c: (MacAddr, u16, MacAddr)) {
    // Group MACs (multicast listeners) are announced by every node with a
    // listener: no claim on a MAC table entry.
    if claims.len() < super::MAX_PENDING_OUT && !c.0.is_multicast() {
        claims.push(c);
    }
}
