//! What `ctl originators` shows: each originator with its route and the
//! neighbours it is heard through.

use std::time::Instant;

use super::{HardifId, Mesh};
use crate::wire::MacAddr;

#[derive(Debug, Clone, serde::Serialize)]
pub struct NeighbourInfo {
    pub addr: MacAddr,
    pub hardif: HardifId,
    pub tq: u8,
    pub real_packet_count: u8,
    pub last_seen_ms: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct OriginatorInfo {
    pub orig: MacAddr,
    pub next_hop: Option<MacAddr>,
    pub hardif: Option<HardifId>,
    pub tq: u8,
    pub last_seen_ms: u64,
    pub ttvn: u8,
    pub tt_crc_ok: bool,
    /// Its MCAST TVLV flags (batman-adv's `BATADV_MCAST_*` bits); null
    /// when its OGMs carry none (multicast-disabled to a kernel).
    pub mcast_flags: Option<u8>,
    pub neighbours: Vec<NeighbourInfo>,
}

impl Mesh {
    pub fn originators(&self) -> Vec<OriginatorInfo> {
        let now = self.now;
        let age = |t: Instant| now.map_or(0, |n| n.saturating_duration_since(t).as_millis() as u64);
        let mut v: Vec<OriginatorInfo> = self
            .origs
            .map
            .values()
            .map(|o| {
                let r = o.router();
                OriginatorInfo {
                    orig: o.orig,
                    next_hop: r.map(|r| r.addr),
                    hardif: r.map(|r| r.hardif),
                    tq: r.map_or(0, |r| r.tq_avg),
                    last_seen_ms: age(o.last_seen),
                    ttvn: o.tt.last_ttvn,
                    tt_crc_ok: o.tt.crc_ok,
                    mcast_flags: o.mcast_flags,
                    neighbours: o
                        .neighs
                        .iter()
                        .map(|n| NeighbourInfo {
                            addr: n.addr,
                            hardif: n.hardif,
                            tq: n.tq_avg,
                            real_packet_count: n.real_packet_count,
                            last_seen_ms: age(n.last_seen),
                        })
                        .collect(),
                }
            })
            .collect();
        v.sort_by_key(|o| o.orig);
        v
    }
}

/// Table sizes for the metrics endpoint: counts, no copies.
impl Mesh {
    pub fn originator_count(&self) -> usize {
        self.origs.map.len()
    }

    pub fn tt_local_len(&self) -> usize {
        self.tt.local.len()
    }

    /// Entries of the global table: one per (client, announcing originator).
    pub fn tt_global_len(&self) -> usize {
        self.tt.global.values().map(Vec::len).sum()
    }
}
