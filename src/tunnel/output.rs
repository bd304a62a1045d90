//! Everything that leaves the node goes through `Output`: the socket, the
//! send batch, and whether to batch at all. Data, handshakes, keepalives
//! and cookie replies share one queue, so per-peer order is the order the
//! state machine produced the messages in.
//!
//! Per-peer wire order across workers: a message sealed under a peer's
//! lock takes the next counter of its session, and the receiver drops any
//! message more than 1024 counters (boringtun's replay window) behind the
//! newest it saw. A worker that sealed a batch and was preempted before
//! sending it, while another worker sent more than that to the same peer,
//! would lose the whole batch. So no worker lets go of a peer's lock while
//! a message it sealed for that peer waits in its batch: every path
//! flushes first (`sealed_waiting`); `TunnelCore::send_frames` holds the
//! locks of the peers of one call until its batch is sent. The kernel
//! keeps a peer's messages in counter order on the wire the same way.
//!
//! Accounting: per-peer bytes/frames and handshake counts are taken when a
//! message is queued (the Tunn has already advanced its counters and
//! timers); the node-wide datagram/byte counts when the kernel took it, and
//! drops by reason when it did not.

use std::net::SocketAddr;

use super::counters::TunnelCounters;
use super::peer::Peer;
use super::socket::UdpSocket;
use super::tx_batch::{Outcome, TxBatch};
use crate::wire::wireguard::message_type::{
    COOKIE_REPLY as MSG_COOKIE, HANDSHAKE_INITIATION as MSG_INITIATION, TRANSPORT_DATA as MSG_DATA,
};
use crate::wire::wireguard::DATA_OVERHEAD;

pub(super) struct Output {
    pub(super) socket: UdpSocket,
    batch: TxBatch,
    /// false: every message is sent on its own, at once (one system call
    /// each, no GSO), as before batching existed; for comparison.
    pub(super) batching: bool,
    /// A message sealed for a peer (under its lock) waits in the batch.
    sealed: bool,
}

impl Output {
    pub(super) fn new(socket: UdpSocket) -> Output {
        Output {
            socket,
            batch: TxBatch::new(),
            batching: true,
            sealed: false,
        }
    }

    pub(super) fn queued(&self) -> usize {
        self.batch.len()
    }

    /// Whether a message of a peer waits in the batch: it must be sent
    /// before that peer's lock is released (see the module comment).
    pub(super) fn sealed_waiting(&self) -> bool {
        self.sealed
    }

    /// A free slot to encrypt into, flushing a full batch first.
    pub(super) fn slot(&mut self, counters: &mut TunnelCounters) -> &mut [u8] {
        if self.batch.is_full() {
            counters.tx_full_batch_flushes += 1;
            self.flush(counters);
        }
        // After a flush the batch is empty, so a slot exists.
        self.batch.slot().unwrap_or_default()
    }

    /// Queues the `len` bytes at `offset` of the slot `slot()` returned (where
    /// the Tunn just wrote a message). `frame_start`: a data message that
    /// begins a frame (false for the 2nd.. inner fragments of one), so that
    /// frame counts stay frame counts.
    pub(super) fn commit(
        &mut self,
        counters: &mut TunnelCounters,
        peer: Option<&mut Peer>,
        offset: usize,
        len: usize,
        to: SocketAddr,
        frame_start: bool,
    ) {
        if self.batch.commit(offset, len, to) {
            self.sealed |= peer.is_some();
            let kind = self.batch.datagram(self.batch.len() - 1).first().copied();
            account(counters, peer, len, kind, frame_start);
        } else {
            counters.tx_socket_errors += 1;
        }
        self.after_queue(counters);
    }

    /// Queues a copy of `msg` (a reply that boringtun wrote elsewhere).
    pub(super) fn queue(
        &mut self,
        counters: &mut TunnelCounters,
        peer: Option<&mut Peer>,
        msg: &[u8],
        to: SocketAddr,
    ) {
        if self.batch.is_full() {
            counters.tx_full_batch_flushes += 1;
            self.flush(counters);
        }
        if self.batch.push(msg, to) {
            self.sealed |= peer.is_some();
            account(counters, peer, msg.len(), msg.first().copied(), true);
        } else {
            counters.tx_socket_errors += 1;
        }
        self.after_queue(counters);
    }

    fn after_queue(&mut self, counters: &mut TunnelCounters) {
        if !self.batching {
            self.flush(counters);
        }
    }

    /// Hands the batch to the kernel.
    pub(super) fn flush(&mut self, counters: &mut TunnelCounters) {
        if self.batch.is_empty() {
            return;
        }
        // Tests park a thread here, between sealing and sending.
        super::test_hook::at(super::test_hook::Point::BeforeSend);
        self.sealed = false;
        counters.tx_flushes += 1;
        let mut outcome = |d: &[u8], o: Outcome| match o {
            Outcome::Sent => {
                counters.tx_datagrams += 1;
                counters.tx_bytes += d.len() as u64;
            }
            Outcome::WouldBlock => counters.tx_would_block += 1,
            Outcome::TooBig => counters.tx_too_big += 1,
            Outcome::Failed => counters.tx_socket_errors += 1,
        };
        let s = self
            .socket
            .send_batch(&mut self.batch, self.batching, &mut outcome);
        counters.tx_sendmmsg_calls += s.sendmmsg_calls;
        counters.tx_messages += s.messages;
        counters.tx_gso_messages += s.gso_messages;
        counters.tx_gso_segments += s.gso_segments;
        counters.tx_gso_fallbacks += s.gso_fallbacks;
        counters.tx_gso_too_big += s.gso_too_big;
        counters.tx_most_messages_per_call = counters
            .tx_most_messages_per_call
            .max(s.most_messages_per_call);
    }
}

/// Per-peer and per-kind counts of a message handed to the batch.
fn account(
    counters: &mut TunnelCounters,
    peer: Option<&mut Peer>,
    len: usize,
    kind: Option<u8>,
    frame_start: bool,
) {
    let frame = frame_start && kind == Some(MSG_DATA) && len > DATA_OVERHEAD;
    match kind {
        Some(MSG_COOKIE) => counters.cookie_replies_sent += 1,
        Some(MSG_INITIATION) => counters.handshake_initiations_sent += 1,
        _ if frame => counters.tx_frames += 1,
        _ => {}
    }
    let Some(peer) = peer else { return };
    peer.stats.tx_bytes += len as u64;
    match kind {
        Some(MSG_INITIATION) => {
            peer.stats.handshake_attempts = peer.stats.handshake_attempts.saturating_add(1)
        }
        _ if frame => peer.stats.tx_frames += 1,
        _ => {}
    }
}
