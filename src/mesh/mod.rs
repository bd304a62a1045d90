//! batman-adv IV (compat version 15) as a sans-I/O state machine.
//!
//! The dataplane hands every batman frame to [`Mesh::receive`], client frames
//! to [`Mesh::send_unicast`] / [`Mesh::send_broadcast`], calls [`Mesh::tick`]
//! at [`Mesh::next_deadline`], and carries out the [`MeshOutput`]s. One
//! "hard interface" ([`HardifId`]) per WireGuard peer, like one gretap per
//! peer on a kernel node. File layout follows net/batman-adv: `bat_iv.rs`
//! (OGMs, TQ, route choice), `originator.rs`, `bcast.rs`, `routing.rs`
//! (unicast), `fragmentation.rs`, `translation_table.rs` (tables, CRC),
//! `tt_tvlv.rs` (TT/ROAM messages), `hard_interface.rs` (one per peer),
//! `bitarray.rs`.
//!
//! Where this differs from the kernel (2022.3 .. 2026.2), on purpose:
//! - one routing table (the kernel's `BATADV_IF_DEFAULT`), not one per
//!   outgoing interface; forwarding decisions use it for every hardif;
//! - rebroadcast OGMs wait a fixed 10 ms (kernel: random 0..10 ms) and are
//!   aggregated per hardif, with our own OGM when it is due; own OGMs are
//!   never delayed to wait for others (kernel: up to 100 ms);
//! - TT_REQUESTs are always answered with the full table (fragmented on
//!   links that fragment, up to the ~20 KB a kernel reassembles: about 1670
//!   clients; about 100 where fragmentation is off), and only requests
//!   addressed to us are answered (others are routed on);
//! - UNICAST rerouting for roamed clients follows `batadv_check_unicast_ttvn`
//!   for packets addressed to us only (the kernel also checks packets it
//!   forwards); UNICAST_4ADDR is not rerouted;
//! - DAT (`dat.rs`) answers DHT_GETs from what the bridge knows and drops
//!   unknown ones (the asker's fallback flood follows); no multicast
//!   optimisation, no BLA, no gateway, no network coding; forwarded
//!   fragments are passed on, not merged.
//!
//! Checked against a real kernel node (batman-adv 2022.3 over gretap over
//! wg0, `netns-tests/interop*`, `scripts/interop`): OGMs and TQ both ways
//! (a kernel lists our originator and, as for any multi-interface node,
//! each hardif MAC we use towards it), TT diffs and CRCs including the
//! kernel's multicast-listener and per-VLAN entries, broadcasts, unicast,
//! fragments both ways, ROAM adverts both ways, and two-hop paths through
//! a kernel relay. A client that roamed to us keeps counting in its old
//! originator's CRC until that originator's next TT update, because that
//! is when the kernel recomputes it; [`Mesh::take_roamed_away`] lets the
//! dataplane's FDB follow a ROAM advert about one of our clients.
//!
//! Hot path: [`Mesh::unicast_route`] gives hardif, next hop and the 10-byte
//! header without allocating, for a zero-copy send; [`Mesh::send_unicast`]
//! still builds a `Vec`. On receive, a UNICAST for us is copied into
//! `MeshOutput::Deliver`; a later zero-copy path would return the payload
//! offset instead (the frame starts at byte 10).

#![forbid(unsafe_code)]

mod answer_guard;
mod bat_iv;
mod bcast;
mod bitarray;
mod counters;
pub mod dat;
pub(crate) mod fragmentation;
mod hard_interface;
mod icmp;
mod info;
pub mod multicast;
mod ogm_forward;
mod originator;
pub(crate) mod roaming;
mod routing;
mod scope;
pub mod sim;
pub(crate) mod translation_table;
pub(crate) mod tt_tvlv;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::wire::batman::{packet_type, CommonHeader};
use crate::wire::{MacAddr, WireError};

pub use counters::MeshCounters;
pub(crate) use hard_interface::Hardif;
pub use icmp::{IcmpAnswer, ICMP_ECHO_REPLY, ICMP_TTL_EXCEEDED};
pub use info::{NeighbourInfo, OriginatorInfo};
pub use originator::{MAX_ORIGINATORS, PURGE_TIMEOUT};
pub use routing::UnicastRoute;
pub use scope::{RelayMode, MAX_MISSING};
pub use translation_table::{TtGlobalInfo, TtLocalInfo, MAX_TT_GLOBAL, MAX_TT_LOCAL};

pub type HardifId = u32;

/// `BATADV_TTL`.
pub const TTL: u8 = 50;
/// `BATADV_TQ_MAX_VALUE`.
pub const TQ_MAX: u8 = 255;
/// `BATADV_JITTER` (ms): own OGMs go out at interval ± this.
pub const JITTER_MS: u64 = 20;
/// `BATADV_ORIG_WORK_PERIOD`: how often purges run.
pub const ORIG_WORK_PERIOD: Duration = Duration::from_secs(1);
/// Bound on outputs queued by calls that have no output vector.
pub const MAX_PENDING_OUT: usize = 1024;
/// Bound on neighbour MACs remembered per hardif.
pub const MAX_HARDIF_NEIGHS: usize = 64;

pub struct MeshConfig {
    pub originator: MacAddr,
    pub ogm_interval: Duration,
    /// `hop_penalty`, kernel default 30.
    pub hop_penalty: u8,
    /// How OGMs and broadcasts are re-sent to meshwire neighbours
    /// (scope.rs); kernel neighbours always get the kernel's rules.
    pub relay: RelayMode,
    /// Take part in batman-adv's distributed ARP table (`dat.rs`): announce
    /// the DAT capability, answer DHT_GET, accept DHT_PUT (kernel default: on).
    pub dat: bool,
    /// Announce batman-adv's MCAST TVLV (`multicast.rs`), so kernel nodes
    /// send us multicast as unicast copies instead of flooding the mesh.
    /// false = no container: kernels count us multicast-disabled.
    pub multicast: bool,
    /// Unix time in milliseconds when the node starts (the daemon's wall
    /// clock; None in simulations: random numbers). Our OGM and broadcast
    /// sequence numbers start from it (`seqno_start`), so a restarted node
    /// continues ahead of its previous run and peers take its packets at
    /// once, however soon it restarts.
    pub start_unix_ms: Option<u64>,
}

impl MeshConfig {
    pub fn new(originator: MacAddr) -> Self {
        MeshConfig {
            originator,
            ogm_interval: Duration::from_millis(1000),
            hop_penalty: 30,
            relay: RelayMode::default(),
            dat: true,
            multicast: true,
            start_unix_ms: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshOutput {
    /// Send this batman packet (the Ethernet payload after ethertype 0x4305) on `hardif` to Ethernet dst `dst`
    /// (ff:ff:ff:ff:ff:ff for OGMs and broadcasts, the neighbour's hardif MAC for unicast).
    /// The Ethernet source must be that hardif's MAC (as given to `hardif_add`):
    /// kernel neighbours measure link quality per Ethernet source.
    Transmit {
        hardif: HardifId,
        dst: MacAddr,
        packet: Vec<u8>,
    },
    /// A client (VM) Ethernet frame for this node. `source_orig` is the originator when the header carries it
    /// (BCAST), None for UNICAST. `broadcast` = it came as a batman broadcast.
    Deliver {
        frame: Vec<u8>,
        source_orig: Option<MacAddr>,
        broadcast: bool,
        /// The TTL the batman packet arrived with. A node that sends a
        /// delivered unicast on (the old node of a migration) must use
        /// `ttl - 1`, never a fresh TTL, so that two nodes with different
        /// views cannot bounce a frame for ever.
        ttl: u8,
    },
    /// A UNICAST_4ADDR for us with a DAT subtype (DHT_GET, DHT_PUT,
    /// DAT_CACHE_REPLY) and the Ethernet frame it carries (an ARP packet),
    /// for the bridge's DAT (`bridge/dat.rs`).
    Dat {
        subtype: u8,
        /// The originator that sent it (the 4addr header's source).
        source_orig: MacAddr,
        frame: Vec<u8>,
        ttl: u8,
    },
}

pub struct Mesh {
    pub(crate) cfg: MeshConfig,
    pub(crate) hardifs: BTreeMap<HardifId, Hardif>,
    /// Originators that own a hard interface (the peer at the other end of
    /// that link, known from its key): while that direct link carries their
    /// OGMs, no OGM relayed over another link takes the route to them.
    pub(crate) owners: HashMap<MacAddr, HardifId>,
    /// Hardif MACs with how many hardifs use each: `is_own_address` runs
    /// for every packet, so it is a hash lookup, not a scan.
    own_macs: HashMap<MacAddr, u32>,
    pub(crate) origs: originator::OrigTable,
    pub(crate) tt: translation_table::TranslationTable,
    /// Seqno of our primary OGM.
    pub(crate) ogm_seqno: u32,
    pub(crate) bcast_seqno: u32,
    pub(crate) frag_seqno: u16,
    pub(crate) next_ogm: Option<Instant>,
    pub(crate) next_purge: Option<Instant>,
    pub(crate) now: Option<Instant>,
    pub(crate) rng: u64,
    pub(crate) counters: MeshCounters,
    pub(crate) frags: fragmentation::FragTable,
    /// Outputs produced by calls without an output vector (tt_local_add),
    /// handed out at the next `tick`. Bounded by the local table size.
    pub(crate) pending_out: Vec<MeshOutput>,
    pub(crate) ogm_fwd: ogm_forward::FwdQueue,
    pub(crate) ogm_fwd_deadline: Option<Instant>,
    pub(crate) roam_guard: roaming::RoamGuard,
    /// Bounds the TT answers one requester gets.
    pub(crate) answer_guard: answer_guard::AnswerGuard,
    /// When the last out-of-cycle OGM (a claim) went out.
    pub(crate) last_ooc_ogm: Option<Instant>,
    /// Our clients that a ROAM advert moved elsewhere: (client, vid, new
    /// originator), for [`Mesh::take_roamed_away`]. Bounded by MAX_PENDING_OUT.
    pub(crate) roamed_away: Vec<(MacAddr, u16, MacAddr)>,
    /// Clients other originators announced, for [`Mesh::take_tt_claims`].
    /// Bounded by MAX_PENDING_OUT.
    pub(crate) tt_claims: Vec<(MacAddr, u16, MacAddr)>,
    /// What our meshwire neighbours hear directly (scope.rs).
    pub(crate) scope: scope::Scope,
    /// Our own ICMP probes awaiting their answers (icmp.rs).
    probes: icmp::Probes,
    /// The distributed ARP table's mesh state (`dat.rs`).
    pub(crate) dat: dat::DatState,
    /// The MCAST flags our OGMs carry (`multicast.rs`; the bridge's snooper sets them).
    pub(crate) mcast_own: u8,
}

impl Mesh {
    pub fn new(cfg: MeshConfig) -> Mesh {
        // Seeded from the originator (distinct per node) and the OS, for OGM
        // jitter and random initial seqnos as the kernel uses.
        let mut seed = [0u8; 8];
        let _ = getrandom::getrandom(&mut seed);
        let mut rng = u64::from_le_bytes(seed) ^ 0x9e37_79b9_7f4a_7c15;
        for b in cfg.originator.0 {
            rng = (rng ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        let mut m = Mesh {
            cfg,
            hardifs: BTreeMap::new(),
            owners: HashMap::new(),
            own_macs: HashMap::new(),
            origs: originator::OrigTable::default(),
            tt: translation_table::TranslationTable::default(),
            ogm_seqno: 0,
            bcast_seqno: 0,
            frag_seqno: 0,
            next_ogm: None,
            next_purge: None,
            now: None,
            rng: rng | 1,
            counters: MeshCounters::default(),
            frags: fragmentation::FragTable::default(),
            pending_out: Vec::new(),
            ogm_fwd: ogm_forward::FwdQueue::default(),
            ogm_fwd_deadline: None,
            roam_guard: roaming::RoamGuard::default(),
            answer_guard: answer_guard::AnswerGuard::default(),
            last_ooc_ogm: None,
            roamed_away: Vec::new(),
            tt_claims: Vec::new(),
            scope: scope::Scope::default(),
            probes: icmp::Probes::default(),
            dat: dat::DatState::default(),
            mcast_own: multicast::OWN_FLAGS,
        };
        m.dat.enabled = m.cfg.dat;
        match m.cfg.start_unix_ms {
            Some(ms) => (m.ogm_seqno, m.bcast_seqno) = bat_iv::seqno_start(ms, m.cfg.ogm_interval),
            None => m.ogm_seqno = m.random() as u32,
        }
        m.frag_seqno = m.random() as u16;
        m
    }

    pub(crate) fn random(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn originator(&self) -> MacAddr {
        self.cfg.originator
    }

    /// Originator or any hardif MAC.
    pub fn is_own_address(&self, mac: MacAddr) -> bool {
        mac == self.cfg.originator || self.own_macs.contains_key(&mac)
    }

    /// A batman packet arrived on `hardif` (eth_src/eth_dst from the GRE-carried Ethernet header).
    pub fn receive(
        &mut self,
        now: Instant,
        hardif: HardifId,
        eth_src: MacAddr,
        eth_dst: MacAddr,
        packet: &[u8],
        out: &mut Vec<MeshOutput>,
    ) {
        self.now = Some(now);
        self.counters.rx_packets += 1;
        if !self.hardifs.contains_key(&hardif) {
            self.counters.not_for_us += 1;
            return;
        }
        let first = out.len();
        self.receive_packet(now, hardif, eth_src, eth_dst, packet, out);
        self.count_ogm_tx(&out[first..]);
    }

    fn receive_packet(
        &mut self,
        now: Instant,
        hardif: HardifId,
        eth_src: MacAddr,
        eth_dst: MacAddr,
        packet: &[u8],
        out: &mut Vec<MeshOutput>,
    ) {
        let hdr = match CommonHeader::parse(packet) {
            Ok(h) => h,
            Err(WireError::Unsupported) => {
                self.counters.bad_version += 1;
                return;
            }
            Err(_) => {
                self.counters.malformed += 1;
                return;
            }
        };
        match hdr.packet_type {
            packet_type::IV_OGM => self.iv_ogm_receive(now, hardif, eth_src, eth_dst, packet, out),
            packet_type::BCAST => self.recv_bcast(now, hardif, eth_src, eth_dst, packet, out),
            packet_type::UNICAST
            | packet_type::UNICAST_4ADDR
            | packet_type::UNICAST_FRAG
            | packet_type::ICMP
            | packet_type::UNICAST_TVLV => {
                self.recv_unicast_class(now, hardif, eth_src, eth_dst, hdr.packet_type, packet, out)
            }
            _ => self.counters.unknown_type += 1,
        }
    }

    /// Client frame (whole Ethernet frame) for the originator `dest_orig`. false = no route.
    pub fn send_unicast(
        &mut self,
        now: Instant,
        dest_orig: MacAddr,
        frame: &[u8],
        out: &mut Vec<MeshOutput>,
    ) -> bool {
        self.now = Some(now);
        self.unicast_send(dest_orig, frame, out)
    }

    /// [`Mesh::send_unicast`] with a given TTL: for a frame that arrived
    /// as unicast and is sent on (see `MeshOutput::Deliver::ttl`). false =
    /// no route, or the TTL is spent (counted as `ttl_exceeded`).
    pub fn send_unicast_ttl(
        &mut self,
        now: Instant,
        dest_orig: MacAddr,
        frame: &[u8],
        ttl: u8,
        out: &mut Vec<MeshOutput>,
    ) -> bool {
        self.now = Some(now);
        if ttl == 0 {
            self.counters.ttl_exceeded += 1;
            return false;
        }
        self.unicast_send_ttl(dest_orig, frame, ttl, out)
    }

    pub fn send_broadcast(&mut self, now: Instant, frame: &[u8], out: &mut Vec<MeshOutput>) {
        self.now = Some(now);
        self.bcast_send(frame, out)
    }

    /// Counts the OGM datagrams among fresh outputs.
    fn count_ogm_tx(&mut self, fresh: &[MeshOutput]) {
        for o in fresh {
            if let MeshOutput::Transmit { packet, .. } = o {
                if packet.first() == Some(&packet_type::IV_OGM) {
                    self.counters.tx_ogm_packets += 1;
                    self.counters.tx_ogm_bytes += packet.len() as u64;
                }
            }
        }
    }

    /// OGMs due, purges, TT housekeeping.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<MeshOutput>) {
        let first = out.len();
        self.tick_inner(now, out);
        self.count_ogm_tx(&out[first..]);
    }

    fn tick_inner(&mut self, now: Instant, out: &mut Vec<MeshOutput>) {
        self.now = Some(now);
        out.append(&mut self.pending_out);
        if self.next_ogm.is_none_or(|t| now >= t) {
            self.iv_ogm_schedule(now, out);
            let jitter = self.random() % (2 * JITTER_MS + 1);
            let interval = self.cfg.ogm_interval + Duration::from_millis(jitter);
            let interval = interval.saturating_sub(Duration::from_millis(JITTER_MS));
            self.next_ogm = Some(now + interval.max(Duration::from_millis(1)));
        }
        // after our own OGMs, which take queued rebroadcasts along
        self.iv_ogm_fwd_flush(now, out);
        if self.next_purge.is_none_or(|t| now >= t) {
            self.purge(now);
            self.next_purge = Some(now + ORIG_WORK_PERIOD);
        }
    }

    pub fn next_deadline(&self) -> Instant {
        if !self.pending_out.is_empty() {
            return self.now.unwrap_or_else(Instant::now);
        }
        match (self.next_ogm, self.next_purge) {
            (Some(a), Some(b)) => self.ogm_fwd_deadline.map_or(a.min(b), |f| a.min(b).min(f)),
            // Never ticked: due now.
            _ => self.now.unwrap_or_else(Instant::now),
        }
    }

    fn purge(&mut self, now: Instant) {
        self.counters.frag_dropped += self.frags.purge(now) as u64;
        self.roam_guard.expire(now);
        for orig in self.origs.purge(now) {
            self.tt.global_del_orig(orig);
        }
        for h in self.hardifs.values_mut() {
            h.neighs
                .retain(|(_, t)| now.saturating_duration_since(*t) <= PURGE_TIMEOUT);
        }
    }

    /// vid in batman encoding: 0 = untagged, 0x8000|id = tagged.
    ///
    /// Clients other originators announce are treated as roamed here: use
    /// [`Mesh::tt_local_add_announce`] to get the ROAM adverts out at once;
    /// this variant leaves them for the next `tick`.
    pub fn tt_local_add(&mut self, mac: MacAddr, vid: u16) {
        let mut out = Vec::new();
        self.tt_local_add_announce(mac, vid, &mut out);
        for o in out {
            if self.pending_out.len() < MAX_PENDING_OUT {
                self.pending_out.push(o);
            } else {
                self.counters.table_full += 1;
            }
        }
    }

    /// `tt_local_add` that also emits the ROAM adverts for a client that
    /// just moved here from another originator (live migration).
    pub fn tt_local_add_announce(&mut self, mac: MacAddr, vid: u16, out: &mut Vec<MeshOutput>) {
        if !self.tt_local_add_roaming(mac, vid, out) {
            self.counters.table_full += 1;
        }
    }

    /// Local clients that another originator took over with a ROAM advert
    /// since the last call (client, vid, new originator). We no longer
    /// announce them; the caller moves them in its MAC table, so that a
    /// frame from the client here again counts as a return and re-adds it
    /// (with a ROAM advert back), as a kernel node does.
    pub fn take_roamed_away(&mut self) -> Vec<(MacAddr, u16, MacAddr)> {
        std::mem::take(&mut self.roamed_away)
    }

    /// Clients another originator announced since the last call (client,
    /// vid, originator): TT diffs, full-table responses and ROAM adverts.
    /// A MAC table that cached an older location from a broadcast must
    /// follow these, or it keeps sending to where a VM used to be.
    pub fn take_tt_claims(&mut self) -> Vec<(MacAddr, u16, MacAddr)> {
        std::mem::take(&mut self.tt_claims)
    }

    /// The client left this node (its port went, it aged out, it was seen
    /// elsewhere): the delete goes out in an out-of-cycle OGM.
    pub fn tt_local_del(&mut self, mac: MacAddr, vid: u16) {
        if self.tt.local_serves(mac, vid) {
            self.tt.local_del(mac, vid);
            let now = self.now.unwrap_or_else(Instant::now);
            self.tt_change_ogm(now);
        }
    }

    /// Serving originator.
    pub fn tt_global_lookup(&self, mac: MacAddr, vid: u16) -> Option<MacAddr> {
        self.tt.global_lookup(mac, vid, |o| {
            self.origs
                .get(&o)
                .and_then(|n| n.router())
                .map_or(0, |r| r.tq_avg)
        })
    }

    pub fn tt_global_entries(&self) -> Vec<TtGlobalInfo> {
        self.tt.global_entries()
    }

    /// Test hook (`MESHWIRE_TEST_FILL`, see `dataplane::test_fill`): `n`
    /// global translation-table entries of made-up originators, as a big
    /// mesh would give us, to measure what reports cost. Not for
    /// production: the entries never age and count toward no originator.
    #[doc(hidden)]
    pub fn test_fill_tt(&mut self, n: usize) -> usize {
        let mut added = 0;
        for i in 0..n {
            let orig = MacAddr::local_unicast([0x7e, 0, 0, 0, (i >> 12) as u8, 1]);
            let b = (i as u32).to_be_bytes();
            let c = crate::wire::batman::tvlv::TtChange {
                flags: 0,
                addr: MacAddr::local_unicast([0x7a, 0, b[0], b[1], b[2], b[3]]),
                vid: 0,
            };
            let mut ott = translation_table::OrigTt::default();
            added += usize::from(self.tt.global_add(&mut ott, orig, &c));
        }
        added
    }

    /// [`Mesh::tt_global_entries`] unsorted: the copy `ctl fdb` takes.
    pub fn tt_global_copy(&self) -> Vec<TtGlobalInfo> {
        self.tt.global_copy()
    }

    pub fn tt_local_entries(&self) -> Vec<TtLocalInfo> {
        self.tt.local_entries()
    }

    pub fn counters(&self) -> &MeshCounters {
        &self.counters
    }
}
