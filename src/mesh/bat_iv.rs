//! BATMAN IV (`bat_iv_ogm.c`): OGM origination, reception, TQ computation,
//! route selection and OGM rebroadcast.
//!
//! Simplification against the kernel: the kernel keeps one routing table per
//! outgoing interface (plus a default one) and decides forwarding per
//! outgoing interface; we keep only the default table and use it for all
//! interfaces. With one peer per hardif this gives the same choices.

use std::time::{Duration, Instant};

use super::bitarray::{bit_get_packet, set_bit, test_bit, window_protected, WINDOW_SIZE};
use super::ogm_forward::{FwdQueue, FWD_AGGREGATION_DELAY};
use super::originator::Refused;
use super::{HardifId, Mesh, MeshOutput, MAX_HARDIF_NEIGHS, TQ_MAX, TTL};
use crate::wire::batman::ogm::{self, flags, OgmIter, OgmPacket};
use crate::wire::MacAddr;

/// `BATADV_MAX_AGGREGATION_BYTES`: forwarded OGMs from one received
/// aggregate are packed per hardif up to this size.
pub(super) const MAX_AGGREGATION_BYTES: usize = 512;
/// `BATADV_TQ_LOCAL_BIDRECT_SEND_MINIMUM` / `_RECV_MINIMUM`.
const BIDRECT_SEND_MIN: u8 = 1;
const BIDRECT_RECV_MIN: u8 = 1;
/// `BATADV_TQ_TOTAL_BIDRECT_LIMIT`.
const TOTAL_BIDRECT_LIMIT: u8 = 1;
/// TTL of per-hardif secondary OGMs (`batadv_iv_ogm_iface_enable`).
pub(super) const SECONDARY_TTL: u8 = 2;

/// `enum batadv_dup_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DupStatus {
    NoDup,
    OrigDup,
    NeighDup,
    Protected,
}

/// `batadv_hop_penalty`.
pub(crate) fn hop_penalty(tq: u8, penalty: u8) -> u8 {
    (u32::from(tq) * u32::from(TQ_MAX - penalty) / u32::from(TQ_MAX)) as u8
}

impl Mesh {
    /// Sends our OGMs: the primary one (orig = originator, TTL 50, TT TVLV)
    /// on every hardif, aggregated with that hardif's secondary OGM (orig =
    /// hardif MAC, TTL 2, no TVLV). A kernel neighbour measures link quality
    /// per Ethernet source by echoing the secondary OGM back (DIRECTLINK).
    pub(crate) fn iv_ogm_schedule(&mut self, now: Instant, out: &mut Vec<MeshOutput>) {
        let originator = self.cfg.originator;
        let mut tvlv = self.tt_ogm_tvlv();
        tvlv.extend_from_slice(&self.scope_tvlv(now));
        let mut primary = Vec::with_capacity(ogm::HEADER_LEN + tvlv.len());
        ogm::emit(
            &mut primary,
            TTL,
            0,
            self.ogm_seqno,
            originator,
            originator,
            TQ_MAX,
            &tvlv,
        );
        let ids: Vec<HardifId> = self.hardifs.keys().copied().collect();
        for id in ids {
            let Some(h) = self.hardifs.get_mut(&id) else {
                continue;
            };
            let mut packet = primary.clone();
            if h.mac != originator {
                let mut secondary = Vec::with_capacity(ogm::HEADER_LEN);
                ogm::emit(
                    &mut secondary,
                    SECONDARY_TTL,
                    0,
                    h.seqno,
                    h.mac,
                    h.mac,
                    TQ_MAX,
                    &[],
                );
                h.seqno = h.seqno.wrapping_add(1);
                packet = self.aggregate(id, packet, secondary, out);
            }
            // Queued rebroadcasts for this hardif ride along when they fit.
            if let Some(fwd) = self.ogm_fwd.take(id) {
                packet = self.aggregate(id, packet, fwd, out);
            }
            out.push(MeshOutput::Transmit {
                hardif: id,
                dst: MacAddr::BROADCAST,
                packet,
            });
            self.counters.tx_ogm += 1;
        }
        // batadv_iv_ogm_slide_own_bcast_window: one new (unechoed) slot on
        // every hardif, as each just sent an OGM (one pass over the table,
        // not one per hardif: N² per interval in a big full mesh).
        for o in self.origs.map.values_mut() {
            for b in o.bcast_own.iter_mut() {
                if self.hardifs.contains_key(&b.hardif) {
                    b.bits <<= 1;
                }
            }
        }
        self.ogm_seqno = self.ogm_seqno.wrapping_add(1);
    }

    /// Appends `more` to `packet` if the aggregate stays within the 512
    /// bytes a kernel reads (`batadv_iv_ogm_aggr_packet`); otherwise sends
    /// `packet` alone and returns `more` to continue with.
    fn aggregate(
        &mut self,
        hardif: HardifId,
        mut packet: Vec<u8>,
        more: Vec<u8>,
        out: &mut Vec<MeshOutput>,
    ) -> Vec<u8> {
        if packet.len() + more.len() <= MAX_AGGREGATION_BYTES {
            packet.extend_from_slice(&more);
            return packet;
        }
        out.push(MeshOutput::Transmit {
            hardif,
            dst: MacAddr::BROADCAST,
            packet,
        });
        more
    }

    /// Sends queued rebroadcasts whose aggregation delay is over.
    pub(crate) fn iv_ogm_fwd_flush(&mut self, now: Instant, out: &mut Vec<MeshOutput>) {
        if self.ogm_fwd_deadline.is_some_and(|t| now >= t) {
            self.ogm_fwd.flush(out);
            self.ogm_fwd_deadline = None;
        }
    }

    /// Seqno of the last OGM we sent on `hardif` whose orig is that hardif's MAC.
    fn last_own_seqno(&self, hardif: HardifId) -> Option<u32> {
        let h = self.hardifs.get(&hardif)?;
        let next = if h.mac == self.cfg.originator {
            self.ogm_seqno
        } else {
            h.seqno
        };
        Some(next.wrapping_sub(1))
    }

    pub(crate) fn iv_ogm_receive(
        &mut self,
        now: Instant,
        hardif: HardifId,
        eth_src: MacAddr,
        eth_dst: MacAddr,
        packet: &[u8],
        out: &mut Vec<MeshOutput>,
    ) {
        // OGMs are link broadcasts; anything else is not how a node sends them.
        if !eth_dst.is_broadcast() || eth_src.is_multicast() {
            self.counters.malformed += 1;
            return;
        }
        let mut fwd = std::mem::take(&mut self.ogm_fwd);
        for item in OgmIter::new(packet) {
            match item {
                Ok(p) => self.iv_ogm_process(now, hardif, eth_src, &p, &mut fwd, out),
                Err(_) => self.counters.malformed += 1,
            }
        }
        if !fwd.is_empty() && self.ogm_fwd_deadline.is_none() {
            self.ogm_fwd_deadline = Some(now + FWD_AGGREGATION_DELAY);
        }
        self.ogm_fwd = fwd;
    }

    /// `batadv_iv_ogm_process`.
    fn iv_ogm_process(
        &mut self,
        now: Instant,
        if_in: HardifId,
        eth_src: MacAddr,
        p: &OgmPacket<&[u8]>,
        fwd: &mut FwdQueue,
        out: &mut Vec<MeshOutput>,
    ) {
        self.counters.rx_ogm += 1;
        let orig = p.orig();
        if self.is_own_address(eth_src) {
            self.counters.ogm_own += 1;
            return;
        }
        if self.is_own_address(orig) {
            self.iv_ogm_process_reply(now, if_in, eth_src, p);
            return;
        }
        if self.is_own_address(p.prev_sender()) || p.flags() & flags::NOT_BEST_NEXT_HOP != 0 {
            self.counters.ogm_dropped += 1;
            return;
        }
        self.hardif_neigh_seen(if_in, eth_src, now);
        // A peer's OGMs come over its own link while that link is alive: a
        // copy relayed (or forged) by another peer must not move its
        // sequence window (a forged jump would make its real OGMs look old)
        // nor its route. Without the direct link, relays count as usual.
        if let Some(&own) = self.owners.get(&orig) {
            if if_in != own && self.direct_alive(own, now) {
                self.counters.ogm_route_kept_direct += 1;
                return;
            }
            if if_in == own {
                self.scope_receive(if_in, orig, p.tvlv());
            }
        }
        if let Err(why) = self.origs.get_or_create_via(orig, now, Some(if_in)) {
            self.count_refused(why);
            return;
        }
        self.iv_ogm_process_per_outif(now, if_in, eth_src, p, fwd, out);
    }

    /// Whether the link `hardif` heard its neighbour lately (three OGM
    /// intervals, at least 3 s: a lost OGM or two must not open the door).
    pub(super) fn direct_alive(&self, hardif: HardifId, now: Instant) -> bool {
        let window = (self.cfg.ogm_interval * 3).max(Duration::from_secs(3));
        self.hardifs.get(&hardif).is_some_and(|h| {
            h.neighs
                .iter()
                .any(|(_, t)| now.saturating_duration_since(*t) <= window)
        })
    }

    fn hardif_neigh_seen(&mut self, hardif: HardifId, addr: MacAddr, now: Instant) {
        let Some(h) = self.hardifs.get_mut(&hardif) else {
            return;
        };
        if let Some(e) = h.neighs.iter_mut().find(|(a, _)| *a == addr) {
            e.1 = now;
        } else if h.neighs.len() < MAX_HARDIF_NEIGHS {
            h.neighs.push((addr, now));
        }
    }

    /// `batadv_iv_ogm_process_reply`: a neighbour echoed one of our own
    /// OGMs back on the interface it came from; count it for link quality.
    fn iv_ogm_process_reply(
        &mut self,
        now: Instant,
        if_in: HardifId,
        eth_src: MacAddr,
        p: &OgmPacket<&[u8]>,
    ) {
        self.counters.ogm_own += 1;
        let in_mac = self.hardifs.get(&if_in).map(|h| h.mac);
        if p.flags() & flags::DIRECTLINK == 0 || in_mac != Some(p.orig()) {
            return;
        }
        let Some(last) = self.last_own_seqno(if_in) else {
            return;
        };
        let bit_pos = last.wrapping_sub(p.seqno()) as i32;
        let node = match self.origs.get_or_create_via(eth_src, now, Some(if_in)) {
            Ok(node) => node,
            Err(why) => return self.count_refused(why),
        };
        set_bit(node.bcast_own_mut(if_in), bit_pos);
        self.counters.ogm_echo += 1;
    }

    /// An originator that did not get into the table.
    fn count_refused(&mut self, why: Refused) {
        match why {
            Refused::Full => self.counters.table_full += 1,
            Refused::Share => self.counters.orig_share_refused += 1,
        }
    }

    /// `batadv_iv_ogm_update_seqnos`.
    fn iv_ogm_update_seqnos(
        &mut self,
        now: Instant,
        orig: MacAddr,
        eth_src: MacAddr,
        if_in: HardifId,
        seqno: u32,
    ) -> DupStatus {
        let Some(o) = self.origs.get_mut(&orig) else {
            return DupStatus::NoDup;
        };
        let seq_diff = seqno.wrapping_sub(o.last_real_seqno) as i32;
        if !o.neighs.is_empty() && window_protected(seq_diff, WINDOW_SIZE, &mut o.seqno_reset, now)
        {
            return DupStatus::Protected;
        }
        let mut ret = DupStatus::NoDup;
        let mut need_update = false;
        let last = o.last_real_seqno;
        for n in o.neighs.iter_mut() {
            let is_dup = test_bit(n.real_bits, last, seqno);
            let set_mark = n.addr == eth_src && n.hardif == if_in;
            if set_mark && is_dup {
                ret = DupStatus::NeighDup;
            } else if is_dup && ret != DupStatus::NeighDup {
                ret = DupStatus::OrigDup;
            }
            need_update |= bit_get_packet(&mut n.real_bits, seq_diff, set_mark);
            n.real_packet_count = n.real_bits.count_ones() as u8;
        }
        if need_update {
            o.last_real_seqno = seqno;
        }
        ret
    }

    /// `batadv_iv_ogm_process_per_outif` for the default table, plus the
    /// forwarding the kernel does per outgoing interface.
    fn iv_ogm_process_per_outif(
        &mut self,
        now: Instant,
        if_in: HardifId,
        eth_src: MacAddr,
        p: &OgmPacket<&[u8]>,
        fwd: &mut FwdQueue,
        out: &mut Vec<MeshOutput>,
    ) {
        let orig = p.orig();
        let seqno = p.seqno();
        let ttl = p.ttl();
        let dup = self.iv_ogm_update_seqnos(now, orig, eth_src, if_in, seqno);
        let single_hop = eth_src == orig;
        if dup == DupStatus::Protected {
            self.counters.ogm_protected += 1;
            return;
        }
        if dup != DupStatus::NoDup {
            self.counters.ogm_dup += 1;
        }
        if p.tq() == 0 {
            self.counters.ogm_dropped += 1;
            return;
        }
        let router = self
            .origs
            .get(&orig)
            .and_then(|o| o.router())
            .map(|r| (r.addr, r.tq_avg));
        let is_from_best = router.is_some_and(|(a, tq)| tq != 0 && a == eth_src);
        // avoid temporary routing loops
        if let Some((raddr, _)) = router {
            let rr = self
                .origs
                .get(&raddr)
                .and_then(|o| o.router())
                .map(|r| r.addr);
            let prev = p.prev_sender();
            if rr.is_some() && raddr == prev && orig != prev && Some(raddr) == rr {
                self.counters.ogm_dropped += 1;
                return;
            }
        }
        let orig_neigh = if single_hop { orig } else { eth_src };
        if !single_hop {
            let has_router = match self.origs.get_or_create_via(eth_src, now, Some(if_in)) {
                Ok(n) => n.router.is_some(),
                Err(why) => {
                    self.count_refused(why);
                    return;
                }
            };
            if !has_router {
                self.counters.ogm_dropped += 1;
                return;
            }
        }
        let routed_before = self.origs.route(&orig).is_some();
        let mut tq = p.tq();
        let is_bidirect = self.iv_ogm_calc_tq(now, orig, orig_neigh, &mut tq, if_in);
        if let Some(o) = self.origs.get(&orig) {
            let sameseq = o.last_real_seqno == seqno;
            let similar_ttl = i32::from(o.last_ttl) - 3 <= i32::from(ttl);
            if is_bidirect && (dup == DupStatus::NoDup || (sameseq && similar_ttl)) {
                self.iv_ogm_orig_update(now, orig, eth_src, if_in, tq, ttl, dup);
            }
        }
        // Translation-table changes count only from an originator a former
        // OGM already gave a route (stricter than the kernel, which reads
        // them first): one OGM from a never-seen originator must not
        // install its clients. A new node's table arrives with its second.
        if routed_before && self.origs.route(&orig).is_some() {
            self.tt_ogm_receive(now, orig, p.tvlv(), out);
        } else {
            self.counters.tt_unconfirmed += 1;
        }
        if !single_hop && (!is_bidirect || dup == DupStatus::NeighDup) {
            return;
        }
        self.iv_ogm_forward(p, eth_src, tq, single_hop, is_from_best, if_in, fwd, out);
    }

    /// `batadv_iv_ogm_calc_tq`: scales the received TQ by the quality of the
    /// link to the neighbour it came through: own OGMs echoed (send) against
    /// the neighbour's OGMs received (receive), with the asymmetry penalty.
    fn iv_ogm_calc_tq(
        &mut self,
        now: Instant,
        orig: MacAddr,
        orig_neigh: MacAddr,
        tq: &mut u8,
        if_in: HardifId,
    ) -> bool {
        let (orig_eq_count, neigh_rq_count) = {
            let Some(on) = self.origs.get_mut(&orig_neigh) else {
                return false;
            };
            let Some(i) = on.neigh_get_or_create(orig_neigh, if_in, now) else {
                self.counters.table_full += 1;
                return false;
            };
            if orig == orig_neigh {
                on.neighs[i].last_seen = now;
            }
            (on.bcast_own_sum(if_in), on.neighs[i].real_packet_count)
        };
        if let Some(o) = self.origs.get_mut(&orig) {
            o.last_seen = now;
        }
        let total_count = orig_eq_count.min(neigh_rq_count);
        let tq_own: u32 = if total_count < BIDRECT_SEND_MIN || neigh_rq_count < BIDRECT_RECV_MIN {
            0
        } else {
            u32::from(TQ_MAX) * u32::from(total_count) / u32::from(neigh_rq_count)
        };
        let win = WINDOW_SIZE as u32;
        let inv = win.saturating_sub(u32::from(neigh_rq_count));
        let inv_asym_penalty = u32::from(TQ_MAX) * inv * inv * inv / (win * win * win);
        let tq_asym_penalty = u32::from(TQ_MAX) - inv_asym_penalty;
        // per-hardif hop_penalty is 0 by default; wired links get no extra penalty
        let tq_iface_hop_penalty = u32::from(TQ_MAX);
        let max = u64::from(TQ_MAX);
        let combined = u64::from(*tq)
            * u64::from(tq_own)
            * u64::from(tq_asym_penalty)
            * u64::from(tq_iface_hop_penalty)
            / (max * max * max);
        *tq = combined.min(max) as u8;
        *tq >= TOTAL_BIDRECT_LIMIT
    }

    /// `batadv_iv_ogm_orig_update`: record the TQ through this neighbour and
    /// switch the route if it is now the best one.
    #[allow(clippy::too_many_arguments)]
    fn iv_ogm_orig_update(
        &mut self,
        now: Instant,
        orig: MacAddr,
        eth_src: MacAddr,
        if_in: HardifId,
        tq: u8,
        ttl: u8,
        dup: DupStatus,
    ) {
        let Some(o) = self.origs.get_mut(&orig) else {
            return;
        };
        if dup == DupStatus::NoDup {
            for n in o.neighs.iter_mut() {
                if !(n.addr == eth_src && n.hardif == if_in) {
                    n.push_tq(0);
                }
            }
        }
        let Some(i) = o.neigh_get_or_create(eth_src, if_in, now) else {
            self.counters.table_full += 1;
            return;
        };
        let n = &mut o.neighs[i];
        n.last_seen = now;
        n.push_tq(tq);
        if dup == DupStatus::NoDup {
            n.last_ttl = ttl;
            o.last_ttl = ttl;
        }
        let new_tq = o.neighs[i].tq_avg;
        let router = match o.router {
            Some(r) if r == i => return,
            Some(r) => o.neighs.get(r).map(|r| (r.addr, r.hardif, r.tq_avg)),
            None => None,
        };
        // A peer's own link beats any relay, whatever TQ the relay claims:
        // an authenticated peer must not take the route to another by
        // forging its OGMs. Without the direct link the usual rule applies.
        if let Some(&own) = self.owners.get(&orig) {
            let direct_now = router.is_some_and(|(_, rif, rtq)| rif == own && rtq > 0);
            match (if_in == own, direct_now) {
                (false, true) => {
                    self.counters.ogm_route_kept_direct += 1;
                    return;
                }
                (true, false) if new_tq > 0 => {
                    if let Some(o) = self.origs.get_mut(&orig) {
                        o.router = Some(i);
                    }
                    return;
                }
                _ => {}
            }
        }
        if let Some((raddr, rif, rtq)) = router {
            if rtq > new_tq {
                return;
            }
            if rtq == new_tq {
                let sum_orig = self.origs.get(&raddr).map_or(0, |x| x.bcast_own_sum(rif));
                let sum_neigh = self
                    .origs
                    .get(&eth_src)
                    .map_or(0, |x| x.bcast_own_sum(if_in));
                if sum_orig >= sum_neigh {
                    return;
                }
            }
        }
        if let Some(o) = self.origs.get_mut(&orig) {
            o.router = Some(i);
        }
    }
}

/// A restarted node's sequence numbers, from the wall clock.
///
/// A peer takes a seqno that is ahead of the last one it saw by less than
/// 65,536 as new; one behind by up to its window (64) as a duplicate, for
/// as long as it takes to catch up; anything else as a restart, at most
/// once per 30 s (`window_protected`), refusing the rest for 30 s. Random
/// numbers (the kernel's choice for OGMs; it starts broadcasts at 1) make
/// nearly every restart take the once-per-30-s path, so a node restarted
/// twice within 30 s was refused by its peers for up to 30 s, and one
/// that had sent fewer than 64 broadcasts had its first broadcasts after a
/// restart (ARP requests) dropped as duplicates. Counting from the clock
/// faster than the numbers are used keeps the new run ahead of the old
/// one: OGMs are sent once per interval (out-of-cycle ones are rare and
/// rate-limited), so a clock of 4 ticks per interval stays ahead; a short
/// run is in range (no reset needed), a long one jumps beyond 65,536 and
/// takes the reset path, which is free unless it restarted 30 s ago, when
/// the run was short. Broadcasts use a 1 ms clock (ahead unless the node
/// sent over 1,000 a second on average; the port budgets allow that only
/// for a while).
pub(super) fn seqno_start(start_unix_ms: u64, ogm_interval: Duration) -> (u32, u32) {
    let tick = (ogm_interval.as_millis() as u64 / 4).max(1);
    ((start_unix_ms / tick) as u32, start_unix_ms as u32)
}
