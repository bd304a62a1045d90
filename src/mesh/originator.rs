//! Originator table (`originator.c`): every node we hear OGMs from, its
//! neighbours (the (hardif, MAC) we heard it through) with their link
//! statistics, and the best next hop ("router").

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::translation_table::OrigTt;
use super::HardifId;
use crate::wire::MacAddr;

/// `BATADV_PURGE_TIMEOUT`: a neighbour silent this long is removed; an
/// originator after twice that (as `batadv_purge_orig_node`).
pub const PURGE_TIMEOUT: Duration = Duration::from_secs(200);
/// Bound on the originator table. A mesh of "tens to hundreds" of hypervisors
/// with a few MACs each fits many times; beyond it new originators are refused
/// and counted instead of growing memory on hostile input.
pub const MAX_ORIGINATORS: usize = 4096;
/// Originators one hardif (one peer) may bring into the table: a quarter,
/// so a peer that invents originators cannot take the table from the
/// others (issue 13). A ~1000-node mesh learned through one neighbour
/// still fits.
pub const MAX_ORIGINATORS_PER_HARDIF: usize = MAX_ORIGINATORS / 4;
/// Bound on neighbours per originator (one per hardif it is heard on, plus
/// multi-hop paths through each neighbour).
pub const MAX_NEIGHS: usize = 64;
/// `BATADV_TQ_GLOBAL_WINDOW_SIZE`: TQ values averaged per neighbour.
pub const TQ_GLOBAL_WINDOW_SIZE: usize = 5;

/// One way to reach an originator: neighbour `addr` on `hardif`.
#[derive(Debug, Clone)]
pub struct NeighNode {
    pub addr: MacAddr,
    pub hardif: HardifId,
    pub last_seen: Instant,
    /// OGMs of this originator received through this neighbour (bat_iv.real_bits).
    pub real_bits: u64,
    pub real_packet_count: u8,
    /// Ring of the last TQ values received through this neighbour.
    pub tq_recv: [u8; TQ_GLOBAL_WINDOW_SIZE],
    pub tq_index: u8,
    pub tq_avg: u8,
    pub last_ttl: u8,
}

impl NeighNode {
    pub fn new(addr: MacAddr, hardif: HardifId, now: Instant) -> Self {
        NeighNode {
            addr,
            hardif,
            last_seen: now,
            real_bits: 0,
            real_packet_count: 0,
            tq_recv: [0; TQ_GLOBAL_WINDOW_SIZE],
            tq_index: 0,
            tq_avg: 0,
            last_ttl: 0,
        }
    }

    /// `batadv_ring_buffer_set` + `batadv_ring_buffer_avg`: the average
    /// counts only non-zero slots, so a link keeps its TQ until all
    /// `TQ_GLOBAL_WINDOW_SIZE` recent values are zero.
    pub fn push_tq(&mut self, tq: u8) {
        let i = usize::from(self.tq_index) % TQ_GLOBAL_WINDOW_SIZE;
        if let Some(slot) = self.tq_recv.get_mut(i) {
            *slot = tq;
        }
        self.tq_index = ((i + 1) % TQ_GLOBAL_WINDOW_SIZE) as u8;
        let (sum, n) = self
            .tq_recv
            .iter()
            .filter(|v| **v != 0)
            .fold((0u32, 0u32), |(s, n), v| (s + u32::from(*v), n + 1));
        self.tq_avg = sum.checked_div(n).unwrap_or(0) as u8;
    }
}

/// Echo window of our own OGMs sent on one hardif (bat_iv.bcast_own).
#[derive(Debug, Clone, Copy)]
pub struct BcastOwn {
    pub hardif: HardifId,
    pub bits: u64,
}

#[derive(Debug)]
pub struct OrigNode {
    pub orig: MacAddr,
    pub last_seen: Instant,
    pub last_real_seqno: u32,
    pub seqno_reset: Option<Instant>,
    pub last_ttl: u8,
    pub neighs: Vec<NeighNode>,
    /// Index into `neighs` of the best next hop.
    pub router: Option<usize>,
    pub bcast_own: Vec<BcastOwn>,
    pub last_bcast_seqno: u32,
    pub bcast_bits: u64,
    pub bcast_seqno_reset: Option<Instant>,
    pub tt: OrigTt,
    /// Flags of the MCAST TVLV in its last OGM; None = it sent none (a
    /// kernel then counts it multicast-disabled), see multicast.rs.
    pub mcast_flags: Option<u8>,
    /// The hardif whose packet created this entry (its share, `OrigTable`).
    created_via: Option<HardifId>,
}

impl OrigNode {
    fn new(orig: MacAddr, now: Instant) -> Self {
        OrigNode {
            orig,
            last_seen: now,
            last_real_seqno: 0,
            seqno_reset: None,
            last_ttl: 0,
            neighs: Vec::new(),
            router: None,
            bcast_own: Vec::new(),
            last_bcast_seqno: 0,
            bcast_bits: 0,
            bcast_seqno_reset: None,
            tt: OrigTt::default(),
            mcast_flags: None,
            created_via: None,
        }
    }

    pub fn router(&self) -> Option<&NeighNode> {
        self.router.and_then(|i| self.neighs.get(i))
    }

    pub fn neigh_index(&self, addr: MacAddr, hardif: HardifId) -> Option<usize> {
        self.neighs
            .iter()
            .position(|n| n.addr == addr && n.hardif == hardif)
    }

    /// Finds or adds a neighbour entry, in place of the weakest non-route
    /// entry when the bound is reached; `None` only if nothing can go.
    pub fn neigh_get_or_create(
        &mut self,
        addr: MacAddr,
        hardif: HardifId,
        now: Instant,
    ) -> Option<usize> {
        if let Some(i) = self.neigh_index(addr, hardif) {
            return Some(i);
        }
        if self.neighs.len() >= MAX_NEIGHS {
            // Full (a big mesh relays one originator through many
            // neighbours): the weakest path that is not the route makes
            // room, so a returning direct link is never locked out. In
            // place, so the router's index stays.
            let victim = self
                .neighs
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != self.router)
                .min_by_key(|(_, n)| (n.tq_avg, n.last_seen))
                .map(|(i, _)| i)?;
            self.neighs[victim] = NeighNode::new(addr, hardif, now);
            return Some(victim);
        }
        self.neighs.push(NeighNode::new(addr, hardif, now));
        Some(self.neighs.len() - 1)
    }

    /// How many of our OGMs on `hardif` this node echoed (bcast_own_sum).
    pub fn bcast_own_sum(&self, hardif: HardifId) -> u8 {
        self.bcast_own
            .iter()
            .find(|b| b.hardif == hardif)
            .map_or(0, |b| b.bits.count_ones() as u8)
    }

    pub fn bcast_own_mut(&mut self, hardif: HardifId) -> &mut u64 {
        let i = match self.bcast_own.iter().position(|b| b.hardif == hardif) {
            Some(i) => i,
            None => {
                self.bcast_own.push(BcastOwn { hardif, bits: 0 });
                self.bcast_own.len() - 1
            }
        };
        &mut self.bcast_own[i].bits
    }

    /// Drops neighbours matching `gone` and re-elects the router among the
    /// rest by TQ (`batadv_purge_orig_neighbors` + `batadv_find_best_neighbor`).
    pub fn remove_neighs(&mut self, gone: impl Fn(&NeighNode) -> bool) -> bool {
        let before = self.neighs.len();
        let router = self.router().map(|r| (r.addr, r.hardif));
        self.neighs.retain(|n| !gone(n));
        if self.neighs.len() == before {
            return false;
        }
        self.router = router.and_then(|(a, h)| self.neigh_index(a, h));
        if self.router.is_none() {
            self.router = self
                .neighs
                .iter()
                .enumerate()
                .filter(|(_, n)| n.tq_avg > 0)
                .max_by_key(|(_, n)| n.tq_avg)
                .map(|(i, _)| i);
        }
        true
    }
}

/// All originators, bounded by [`MAX_ORIGINATORS`].
#[derive(Debug, Default)]
pub struct OrigTable {
    pub map: HashMap<MacAddr, OrigNode>,
    /// Entries each hardif created, against MAX_ORIGINATORS_PER_HARDIF.
    per_hardif: HashMap<HardifId, usize>,
}

/// Why an originator was not created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// MAX_ORIGINATORS reached.
    Full,
    /// The hardif it came from used up its share.
    Share,
}

impl OrigTable {
    pub fn get(&self, orig: &MacAddr) -> Option<&OrigNode> {
        self.map.get(orig)
    }

    pub fn get_mut(&mut self, orig: &MacAddr) -> Option<&mut OrigNode> {
        self.map.get_mut(orig)
    }

    /// `batadv_iv_ogm_orig_get`: finds or creates; `None` when full.
    pub fn get_or_create(&mut self, orig: MacAddr, now: Instant) -> Option<&mut OrigNode> {
        self.get_or_create_via(orig, now, None).ok()
    }

    /// `get_or_create` for a packet that came in on `via`: a new entry
    /// counts against that hardif's share.
    pub fn get_or_create_via(
        &mut self,
        orig: MacAddr,
        now: Instant,
        via: Option<HardifId>,
    ) -> Result<&mut OrigNode, Refused> {
        if !self.map.contains_key(&orig) {
            if self.map.len() >= MAX_ORIGINATORS {
                return Err(Refused::Full);
            }
            if let Some(h) = via {
                let n = self.per_hardif.entry(h).or_insert(0);
                if *n >= MAX_ORIGINATORS_PER_HARDIF {
                    return Err(Refused::Share);
                }
                *n += 1;
            }
        }
        Ok(self.map.entry(orig).or_insert_with(|| {
            let mut node = OrigNode::new(orig, now);
            node.created_via = via;
            node
        }))
    }

    fn forget(&mut self, orig: &MacAddr) {
        let via = self.map.remove(orig).and_then(|n| n.created_via);
        if let Some(n) = via.and_then(|h| self.per_hardif.get_mut(&h)) {
            *n = n.saturating_sub(1);
        }
    }

    /// Next hop (neighbour MAC, hardif) towards `orig`.
    pub fn route(&self, orig: &MacAddr) -> Option<(MacAddr, HardifId)> {
        self.map
            .get(orig)
            .and_then(|o| o.router())
            .filter(|r| r.tq_avg > 0)
            .map(|r| (r.addr, r.hardif))
    }

    /// Expires silent neighbours and originators; returns the removed originators.
    pub fn purge(&mut self, now: Instant) -> Vec<MacAddr> {
        let mut dead = Vec::new();
        for (orig, node) in self.map.iter_mut() {
            if now.saturating_duration_since(node.last_seen) > 2 * PURGE_TIMEOUT {
                dead.push(*orig);
                continue;
            }
            node.remove_neighs(|n| now.saturating_duration_since(n.last_seen) > PURGE_TIMEOUT);
        }
        for o in &dead {
            self.forget(o);
        }
        dead
    }

    /// Removes every neighbour learned on `hardif` (the interface went away).
    pub fn hardif_removed(&mut self, hardif: HardifId) {
        self.per_hardif.remove(&hardif);
        for node in self.map.values_mut() {
            if node.created_via == Some(hardif) {
                node.created_via = None;
            }
            node.remove_neighs(|n| n.hardif == hardif);
            node.bcast_own.retain(|b| b.hardif != hardif);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_inventing_originators_gets_its_share_and_no_more() {
        let mut t = OrigTable::default();
        let now = Instant::now();
        let made_up = |i: u32| {
            let b = i.to_be_bytes();
            MacAddr([2, 1, b[0], b[1], b[2], b[3]])
        };
        let refused = (0..3000)
            .filter(|&i| t.get_or_create_via(made_up(i), now, Some(1)).is_err())
            .count();
        assert_eq!(t.map.len(), MAX_ORIGINATORS_PER_HARDIF);
        assert_eq!(refused, 3000 - MAX_ORIGINATORS_PER_HARDIF);
        assert_eq!(
            t.get_or_create_via(made_up(5000), now, Some(1)).err(),
            Some(Refused::Share)
        );
        // An honest peer's originator still gets in, and known ones are
        // found whatever link asks.
        let honest = MacAddr([2, 0, 0, 0, 0, 7]);
        assert!(t.get_or_create_via(honest, now, Some(2)).is_ok());
        assert!(t.get_or_create_via(made_up(0), now, Some(2)).is_ok());
        // Purged entries give the share back.
        let later = now + 3 * PURGE_TIMEOUT;
        t.map.get_mut(&honest).unwrap().last_seen = later;
        t.purge(later);
        assert_eq!(t.map.len(), 1);
        assert!(t.get_or_create_via(made_up(6000), later, Some(1)).is_ok());
    }

    #[test]
    fn tq_ring_average_ignores_zero_slots() {
        let mut n = NeighNode::new(MacAddr([2, 0, 0, 0, 0, 1]), 1, Instant::now());
        n.push_tq(200);
        n.push_tq(100);
        assert_eq!(n.tq_avg, 150);
        for _ in 0..4 {
            n.push_tq(0);
        }
        assert_eq!(n.tq_avg, 100);
        n.push_tq(0);
        assert_eq!(n.tq_avg, 0);
    }

    #[test]
    fn table_is_bounded() {
        let now = Instant::now();
        let mut t = OrigTable::default();
        for i in 0..(MAX_ORIGINATORS as u32 + 10) {
            let b = i.to_be_bytes();
            let _ = t.get_or_create(MacAddr([2, 0, b[0], b[1], b[2], b[3]]), now);
        }
        assert_eq!(t.map.len(), MAX_ORIGINATORS);
    }
}
