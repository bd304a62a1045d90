//! What the tunnel layer saw and dropped, one counter per reason, so that an
//! operator can tell junk from replays from a misconfigured peer.

use serde::Serialize;

use super::gretap;

#[derive(Debug, Default, Clone, Serialize)]
pub struct TunnelCounters {
    // --- underlay receive ---
    /// Datagrams read from the socket, and their UDP payload bytes.
    pub rx_datagrams: u64,
    pub rx_bytes: u64,
    /// recvmmsg errors other than "nothing to read".
    pub rx_socket_errors: u64,
    /// Datagrams longer than RX_DATAGRAM_MAX (arrive truncated).
    pub rx_oversize: u64,
    /// Not a WireGuard message (type/length mismatch, too short).
    pub rx_junk: u64,
    /// Receiver index that belongs to no peer of ours.
    pub rx_unknown_index: u64,
    /// Handshake message with a wrong mac1 (not meant for our key).
    pub rx_invalid_mac: u64,
    /// Handshake initiation from a static key that is not a configured peer.
    pub rx_unknown_peer: u64,
    /// Handshake messages refused by the noise state machine (replayed
    /// timestamp, wrong index, stale response...).
    pub rx_handshake_rejected: u64,
    /// Data that failed authentication.
    pub rx_decrypt_failed: u64,
    /// Replayed or too-old counters.
    pub rx_replayed: u64,
    /// Data for a session we no longer (or never) had.
    pub rx_no_session: u64,
    /// Decrypted, but not an IP packet.
    pub rx_inner_not_ip: u64,
    /// Other boringtun errors.
    pub rx_other_errors: u64,
    /// Authenticated keepalives (empty data messages).
    pub rx_keepalives: u64,
    /// Cookie replies received and accepted.
    pub rx_cookie_replies: u64,

    // --- receive batching (rx_datagrams / rx_recvmmsg_calls = datagrams
    // per system call) ---
    /// recvmmsg calls that returned something.
    pub rx_recvmmsg_calls: u64,
    /// Entries those calls filled (a GRO train is one entry).
    pub rx_messages: u64,
    /// Most entries one recvmmsg filled (at most RX_BATCH).
    pub rx_most_messages_per_call: u64,
    /// Entries that were UDP GRO trains, and the datagrams they held.
    pub rx_gro_trains: u64,
    pub rx_gro_segments: u64,

    // --- inner (gretap) checks, one per gretap::Drop ---
    pub inner_bad_ip_header: u64,
    pub inner_bad_ip_checksum: u64,
    pub inner_fragment: u64,
    pub inner_not_gre: u64,
    pub inner_wrong_source: u64,
    pub inner_wrong_destination: u64,
    pub inner_bad_gre: u64,
    pub inner_not_teb: u64,
    pub inner_short_frame: u64,
    /// Frames handed to the caller.
    pub rx_frames: u64,

    // --- inner reassembly (reassembly.rs; all per-peer tables summed) ---
    /// Inner IP fragments that passed the link checks.
    pub rx_inner_fragments: u64,
    /// Datagrams reassembled (and then given to the GRE checks).
    pub rx_reassembled: u64,
    /// Unfinished datagrams dropped after REASM_TIMEOUT.
    pub reasm_timeouts: u64,
    /// Pieces whose data had all arrived already (ignored).
    pub reasm_duplicates: u64,
    /// Pieces partly overlapping data already held (datagram dropped).
    pub reasm_overlaps: u64,
    /// Pieces reaching past REASM_MAX_LEN (datagram dropped).
    pub reasm_oversize: u64,
    /// Non-final pieces not a multiple of 8 long, pieces disagreeing about
    /// the end (datagram dropped).
    pub reasm_malformed: u64,
    /// Datagrams evicted to stay within REASM_MAX_DATAGRAMS/REASM_MAX_BYTES.
    pub reasm_evicted: u64,

    // --- send ---
    /// Frames encrypted and queued for the socket, or queued behind a
    /// handshake (tx_queued); a fragmented frame counts once (drops at
    /// flush time are in tx_would_block / tx_too_big / tx_socket_errors).
    pub tx_frames: u64,
    /// Frames given to send_frame while no session existed (queued inside
    /// the peer's Tunn, at most 256 per peer, until the handshake completes).
    pub tx_queued: u64,
    /// send_frame to a peer whose endpoint is not known yet.
    pub tx_no_endpoint: u64,
    /// Frames too long for one datagram over the underlay MTU, sent as
    /// inner IP fragments, and the fragments they became.
    pub tx_fragmented_frames: u64,
    pub tx_inner_fragments: u64,
    /// Datagrams the kernel refused with EMSGSIZE (over the path MTU; the
    /// socket forbids underlay fragmentation): dropped.
    pub tx_too_big: u64,
    /// Socket send buffer full: datagram dropped.
    pub tx_would_block: u64,
    /// Other send errors (per datagram dropped).
    pub tx_socket_errors: u64,
    /// Datagrams (and their bytes) the kernel accepted.
    pub tx_datagrams: u64,
    pub tx_bytes: u64,

    // --- send batching (tx_datagrams / tx_sendmmsg_calls = datagrams per
    // system call) ---
    /// Flushes that had something to send.
    pub tx_flushes: u64,
    /// Flushes forced by a full batch (TX_BATCH datagrams).
    pub tx_full_batch_flushes: u64,
    pub tx_sendmmsg_calls: u64,
    /// Messages sendmmsg accepted (a GSO message carries several datagrams).
    pub tx_messages: u64,
    /// Most messages one sendmmsg accepted.
    pub tx_most_messages_per_call: u64,
    /// UDP GSO messages, and the datagrams they carried.
    pub tx_gso_messages: u64,
    pub tx_gso_segments: u64,
    /// The kernel refused GSO (EIO: no checksum offload; EINVAL: a limit):
    /// GSO is now off for the socket, datagrams resent one message each.
    pub tx_gso_fallbacks: u64,
    /// GSO messages refused with EMSGSIZE (a segment over the path MTU):
    /// their datagrams were tried again one message each (and then count
    /// in tx_too_big if still too big); GSO stays on.
    pub tx_gso_too_big: u64,

    // --- handshakes ---
    pub handshake_initiations_sent: u64,
    pub handshakes_completed: u64,
    /// Cookie replies we sent because we were under load.
    pub cookie_replies_sent: u64,
    /// A peer's endpoint changed to the source of an authenticated packet.
    pub endpoint_changes: u64,
}

impl TunnelCounters {
    /// Adds another path's counts into these (the workers' paths into the
    /// node's for `ctl stats`). Maxima (`*_most_*`) take the larger. The
    /// destructuring names every field: a new counter that is not added
    /// here does not compile.
    pub fn add(&mut self, o: &TunnelCounters) {
        let TunnelCounters {
            rx_datagrams,
            rx_bytes,
            rx_socket_errors,
            rx_oversize,
            rx_junk,
            rx_unknown_index,
            rx_invalid_mac,
            rx_unknown_peer,
            rx_handshake_rejected,
            rx_decrypt_failed,
            rx_replayed,
            rx_no_session,
            rx_inner_not_ip,
            rx_other_errors,
            rx_keepalives,
            rx_cookie_replies,
            rx_recvmmsg_calls,
            rx_messages,
            rx_most_messages_per_call,
            rx_gro_trains,
            rx_gro_segments,
            inner_bad_ip_header,
            inner_bad_ip_checksum,
            inner_fragment,
            inner_not_gre,
            inner_wrong_source,
            inner_wrong_destination,
            inner_bad_gre,
            inner_not_teb,
            inner_short_frame,
            rx_frames,
            rx_inner_fragments,
            rx_reassembled,
            reasm_timeouts,
            reasm_duplicates,
            reasm_overlaps,
            reasm_oversize,
            reasm_malformed,
            reasm_evicted,
            tx_frames,
            tx_queued,
            tx_no_endpoint,
            tx_fragmented_frames,
            tx_inner_fragments,
            tx_too_big,
            tx_would_block,
            tx_socket_errors,
            tx_datagrams,
            tx_bytes,
            tx_flushes,
            tx_full_batch_flushes,
            tx_sendmmsg_calls,
            tx_messages,
            tx_most_messages_per_call,
            tx_gso_messages,
            tx_gso_segments,
            tx_gso_fallbacks,
            tx_gso_too_big,
            handshake_initiations_sent,
            handshakes_completed,
            cookie_replies_sent,
            endpoint_changes,
        } = o;
        self.rx_datagrams += *rx_datagrams;
        self.rx_bytes += *rx_bytes;
        self.rx_socket_errors += *rx_socket_errors;
        self.rx_oversize += *rx_oversize;
        self.rx_junk += *rx_junk;
        self.rx_unknown_index += *rx_unknown_index;
        self.rx_invalid_mac += *rx_invalid_mac;
        self.rx_unknown_peer += *rx_unknown_peer;
        self.rx_handshake_rejected += *rx_handshake_rejected;
        self.rx_decrypt_failed += *rx_decrypt_failed;
        self.rx_replayed += *rx_replayed;
        self.rx_no_session += *rx_no_session;
        self.rx_inner_not_ip += *rx_inner_not_ip;
        self.rx_other_errors += *rx_other_errors;
        self.rx_keepalives += *rx_keepalives;
        self.rx_cookie_replies += *rx_cookie_replies;
        self.rx_recvmmsg_calls += *rx_recvmmsg_calls;
        self.rx_messages += *rx_messages;
        self.rx_gro_trains += *rx_gro_trains;
        self.rx_gro_segments += *rx_gro_segments;
        self.inner_bad_ip_header += *inner_bad_ip_header;
        self.inner_bad_ip_checksum += *inner_bad_ip_checksum;
        self.inner_fragment += *inner_fragment;
        self.inner_not_gre += *inner_not_gre;
        self.inner_wrong_source += *inner_wrong_source;
        self.inner_wrong_destination += *inner_wrong_destination;
        self.inner_bad_gre += *inner_bad_gre;
        self.inner_not_teb += *inner_not_teb;
        self.inner_short_frame += *inner_short_frame;
        self.rx_frames += *rx_frames;
        self.rx_inner_fragments += *rx_inner_fragments;
        self.rx_reassembled += *rx_reassembled;
        self.reasm_timeouts += *reasm_timeouts;
        self.reasm_duplicates += *reasm_duplicates;
        self.reasm_overlaps += *reasm_overlaps;
        self.reasm_oversize += *reasm_oversize;
        self.reasm_malformed += *reasm_malformed;
        self.reasm_evicted += *reasm_evicted;
        self.tx_frames += *tx_frames;
        self.tx_queued += *tx_queued;
        self.tx_no_endpoint += *tx_no_endpoint;
        self.tx_fragmented_frames += *tx_fragmented_frames;
        self.tx_inner_fragments += *tx_inner_fragments;
        self.tx_too_big += *tx_too_big;
        self.tx_would_block += *tx_would_block;
        self.tx_socket_errors += *tx_socket_errors;
        self.tx_datagrams += *tx_datagrams;
        self.tx_bytes += *tx_bytes;
        self.tx_flushes += *tx_flushes;
        self.tx_full_batch_flushes += *tx_full_batch_flushes;
        self.tx_sendmmsg_calls += *tx_sendmmsg_calls;
        self.tx_messages += *tx_messages;
        self.tx_gso_messages += *tx_gso_messages;
        self.tx_gso_segments += *tx_gso_segments;
        self.tx_gso_fallbacks += *tx_gso_fallbacks;
        self.tx_gso_too_big += *tx_gso_too_big;
        self.handshake_initiations_sent += *handshake_initiations_sent;
        self.handshakes_completed += *handshakes_completed;
        self.cookie_replies_sent += *cookie_replies_sent;
        self.endpoint_changes += *endpoint_changes;
        self.rx_most_messages_per_call = self
            .rx_most_messages_per_call
            .max(*rx_most_messages_per_call);
        self.tx_most_messages_per_call = self
            .tx_most_messages_per_call
            .max(*tx_most_messages_per_call);
    }

    pub(super) fn count_inner_drop(&mut self, d: gretap::Drop) {
        use gretap::Drop::*;
        let c = match d {
            BadIpHeader => &mut self.inner_bad_ip_header,
            BadIpChecksum => &mut self.inner_bad_ip_checksum,
            Fragment => &mut self.inner_fragment,
            NotGre => &mut self.inner_not_gre,
            WrongSource => &mut self.inner_wrong_source,
            WrongDestination => &mut self.inner_wrong_destination,
            BadGre => &mut self.inner_bad_gre,
            NotTeb => &mut self.inner_not_teb,
            ShortFrame => &mut self.inner_short_frame,
        };
        *c += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_add_up_and_maxima_take_the_larger() {
        let mut a = TunnelCounters {
            rx_datagrams: 3,
            tx_most_messages_per_call: 7,
            rx_most_messages_per_call: 1,
            ..TunnelCounters::default()
        };
        let b = TunnelCounters {
            rx_datagrams: 4,
            endpoint_changes: 2,
            tx_most_messages_per_call: 5,
            rx_most_messages_per_call: 9,
            ..TunnelCounters::default()
        };
        a.add(&b);
        assert_eq!((a.rx_datagrams, a.endpoint_changes), (7, 2));
        assert_eq!(
            (a.tx_most_messages_per_call, a.rx_most_messages_per_call),
            (7, 9)
        );
    }
}
