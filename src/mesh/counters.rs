//! The mesh's counters (`ctl stats`: `mesh`).

/// Drop and event counters; every refused packet lands in one of them.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct MeshCounters {
    pub rx_packets: u64,
    /// Relayed OGMs for a peer whose own link carries its OGMs: the route
    /// stays on the direct link.
    pub ogm_route_kept_direct: u64,
    /// OGM TT data from an originator we do not route to yet (ignored).
    pub tt_unconfirmed: u64,
    /// TT responses nobody asked for, ROAM adverts from originators we do
    /// not route to, TT requests over a requester's rate (ignored).
    pub tt_unsolicited: u64,
    /// TT entries refused because their originator holds its share of the
    /// global table (`translation_table::MAX_TT_PER_ORIG`, an eighth).
    pub tt_share_refused: u64,
    pub malformed: u64,
    pub bad_version: u64,
    pub unknown_type: u64,
    pub rx_ogm: u64,
    pub ogm_own: u64,
    pub ogm_echo: u64,
    pub ogm_protected: u64,
    pub ogm_dup: u64,
    pub ogm_dropped: u64,
    pub ogm_forwarded: u64,
    pub tx_ogm: u64,
    pub ttl_exceeded: u64,
    pub no_route: u64,
    pub not_for_us: u64,
    pub table_full: u64,
    /// New originators refused because the hardif (peer) they came from
    /// brought in its share already (`MAX_ORIGINATORS_PER_HARDIF`).
    pub orig_share_refused: u64,
    pub rx_bcast: u64,
    pub dup_bcast: u64,
    pub bcast_unknown_orig: u64,
    /// Broadcasts naming a peer as origin that came over another link while
    /// the peer's own link is alive (relayed or forged; dropped).
    pub bcast_kept_direct: u64,
    pub bcast_forwarded: u64,
    pub tx_bcast: u64,
    pub rx_unicast: u64,
    pub unicast_delivered: u64,
    pub unicast_forwarded: u64,
    pub unicast_rerouted: u64,
    /// Unicasts whose route leads back on the link they came in on (a
    /// two-node loop, `routing.rs`): dropped.
    pub unicast_bounce_dropped: u64,
    pub tx_unicast: u64,
    /// DAT packets not handled (DAT off, or an unknown subtype).
    pub dat_dropped: u64,
    /// DAT packets received, by subtype, and sent (`dat.rs`).
    pub dat_get_rx: u64,
    pub dat_put_rx: u64,
    pub dat_cache_reply_rx: u64,
    pub dat_get_tx: u64,
    pub dat_put_tx: u64,
    pub dat_cache_reply_tx: u64,
    pub frag_dropped: u64,
    pub frag_reassembled: u64,
    pub frag_sent: u64,
    pub icmp_dropped: u64,
    pub icmp_answered: u64,
    /// Our own echo requests (`ctl ping`/`traceroute`) and their answers.
    pub icmp_probes_sent: u64,
    pub icmp_answers_received: u64,
    pub tvlv_unknown: u64,
    pub tt_requests_sent: u64,
    pub tt_requests_answered: u64,
    pub tt_responses_received: u64,
    pub tt_crc_mismatch: u64,
    pub tt_changes_applied: u64,
    pub roam_received: u64,
    pub roam_sent: u64,
    /// ROAM adverts held back by the anti-flap limit (5 per client per 20 s).
    pub roam_suppressed: u64,
    /// OGMs sent out of cycle to carry a claim at once.
    pub ogm_out_of_cycle: u64,
    /// Broadcast datagrams sent (ours and rebroadcasts, one per link).
    pub tx_bcast_packets: u64,
    /// Rebroadcasts not sent to a meshwire neighbour that has the
    /// broadcast anyway (scope.rs).
    pub bcast_relay_scoped: u64,
    /// Forwarded OGMs not queued for a meshwire neighbour that has them
    /// anyway (scope.rs).
    pub ogm_relay_scoped: u64,
    /// OGM datagrams sent (own and forwarded aggregates, one per link) and
    /// their batman bytes: the control traffic a node costs its links.
    pub tx_ogm_packets: u64,
    pub tx_ogm_bytes: u64,
}
