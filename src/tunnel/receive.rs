//! The receive path: recvmmsg (+ GRO trains split into datagrams) -> find
//! the peer (index or initiation key) -> boringtun decapsulate -> roaming,
//! replies, queued packets -> gretap checks (inner IP fragments through the
//! peer's reassembly table first) -> deliver the Ethernet frame.
//! Replies and released frames join the send batch, flushed at the end.

use std::net::SocketAddr;

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::{Packet, Tunn, TunnResult};

use super::codec::{open_datagram, Opened};
use super::counters::TunnelCounters;
use super::gretap::Inner;
use super::noise::{IndexMap, InitMatch, Matcher};
use super::output::Output;
use super::peer::{Now, Peer, PeerCounters};
use super::peer_table::{PeerGuard, PeerTable};
use super::reassembly::Verdict;
use super::rx_batch::{RxBatch, RX_BATCH};
use super::{gretap, PeerId, TunnelCore, TunnelIo};
use crate::wire::wireguard::message_type::{
    COOKIE_REPLY as MSG_COOKIE, HANDSHAKE_INITIATION as MSG_INITIATION,
    HANDSHAKE_RESPONSE as MSG_RESPONSE, TRANSPORT_DATA as MSG_DATA,
};
use crate::wire::wireguard::Message;

/// recvmmsg calls per `receive`: bounds the time one call can take (and so
/// the latency of the caller's other work) at 8 x 32 entries.
pub const MAX_BATCHES_PER_CALL: usize = 8;
/// No further recvmmsg once this many datagrams were handled in one
/// `receive`: with GRO one entry can hold a train of up to 64 datagrams
/// (128 from a local GSO sender), so one call handles at most this many
/// plus one batch's worth, whatever the trains look like.
pub const MAX_DATAGRAMS_PER_CALL: usize = 1024;
/// boringtun queues at most 256 packets per peer; flush at most that many
/// (plus slack) after an authenticated packet.
const MAX_FLUSH: usize = 260;

/// Everything one datagram needs, borrowed apart from the receive batch.
struct Rx<'a> {
    net: &'a mut Output,
    peers: &'a PeerTable,
    /// The peer whose lock we hold: consecutive datagrams of one peer (a
    /// GRO train, a burst) take its lock once.
    held: Option<(PeerId, PeerGuard<'a>)>,
    index: IndexMap,
    matcher: &'a Matcher,
    out: &'a mut [u8],
    counters: &'a mut TunnelCounters,
    /// When the current recvmmsg batch arrived.
    now: Now,
}

impl TunnelCore {
    pub(super) fn receive_inner(
        &self,
        io: &mut TunnelIo,
        deliver: &mut dyn FnMut(PeerId, &[u8]),
    ) -> usize {
        let TunnelIo {
            net,
            rx,
            out,
            counters,
            ..
        } = io;
        // What earlier calls queued goes first.
        net.flush(counters);
        let mut ctx = self.rx_context(net, out, counters);
        let total = ctx.drain(rx, deliver);
        ctx.release();
        ctx.net.flush(ctx.counters);
        total
    }

    fn rx_context<'a>(
        &'a self,
        net: &'a mut Output,
        out: &'a mut [u8],
        counters: &'a mut TunnelCounters,
    ) -> Rx<'a> {
        Rx {
            net,
            peers: &self.peers,
            held: None,
            index: self.index,
            matcher: &self.matcher,
            out,
            counters,
            now: Now::read(),
        }
    }

    /// The worker path: processes the batch a worker's `TunnelIo::recv`
    /// read. Replies and released frames join the worker's send batch,
    /// flushed only before the lock of a peer they were sealed for goes
    /// (`Rx::release`).
    pub(super) fn process_received_inner(
        &self,
        io: &mut TunnelIo,
        deliver: &mut dyn FnMut(PeerId, &[u8]),
    ) -> usize {
        let TunnelIo {
            net,
            rx,
            out,
            counters,
            ..
        } = io;
        let n = rx.count();
        if n == 0 {
            return 0;
        }
        counters.rx_recvmmsg_calls += 1;
        counters.rx_messages += n as u64;
        counters.rx_most_messages_per_call = counters.rx_most_messages_per_call.max(n as u64);
        let mut ctx = self.rx_context(net, out, counters);
        let handled = ctx.batch(rx, deliver);
        ctx.release();
        drop(ctx);
        rx.clear();
        handled
    }
}

impl Rx<'_> {
    /// Lets go of the held peer. What we sealed for it under its lock
    /// (released frames, a keepalive after a handshake) is sent first:
    /// another worker must not send past it while it waits in our batch
    /// (per-peer wire order, see `Output`).
    fn release(&mut self) {
        if self.net.sealed_waiting() {
            self.net.flush(self.counters);
        }
        self.held = None;
    }

    /// Up to MAX_BATCHES_PER_CALL recvmmsg calls; returns the datagrams.
    fn drain(&mut self, rx: &mut RxBatch, deliver: &mut dyn FnMut(PeerId, &[u8])) -> usize {
        // Without batching, one datagram per call, as before recvmmsg.
        let per_call = if self.net.batching { RX_BATCH } else { 1 };
        let mut total = 0;
        // Unbatched, as many single reads as batched mode has entries.
        let calls = MAX_BATCHES_PER_CALL * (RX_BATCH / per_call);
        for _ in 0..calls {
            let n = match self.net.socket.recv_batch(rx, per_call) {
                Ok(n) => n,
                Err(_) => {
                    self.counters.rx_socket_errors += 1;
                    break;
                }
            };
            if n > 0 {
                self.now = Now::read();
                self.counters.rx_recvmmsg_calls += 1;
                self.counters.rx_messages += n as u64;
                self.counters.rx_most_messages_per_call =
                    self.counters.rx_most_messages_per_call.max(n as u64);
            }
            total += self.batch(rx, deliver);
            if n < per_call || total >= MAX_DATAGRAMS_PER_CALL {
                break;
            }
        }
        total
    }

    /// Every datagram of one received batch.
    fn batch(&mut self, rx: &RxBatch, deliver: &mut dyn FnMut(PeerId, &[u8])) -> usize {
        let mut total = 0;
        for i in 0..rx.count() {
            let before = total;
            for d in rx.datagrams(i) {
                self.datagram(d.data, d.from, d.oversize, deliver);
                total += 1;
            }
            if rx.segment_size(i) > 0 {
                self.counters.rx_gro_trains += 1;
                self.counters.rx_gro_segments += (total - before) as u64;
            }
        }
        total
    }

    fn datagram(
        &mut self,
        data: &[u8],
        from: Option<SocketAddr>,
        truncated: bool,
        deliver: &mut dyn FnMut(PeerId, &[u8]),
    ) {
        self.counters.rx_datagrams += 1;
        self.counters.rx_bytes += data.len() as u64;
        if truncated {
            self.counters.rx_oversize += 1;
            return;
        }
        let Some(from) = from else {
            self.counters.rx_junk += 1;
            return;
        };
        let id = match Tunn::parse_incoming_packet(data) {
            Err(_) => {
                self.counters.rx_junk += 1;
                return;
            }
            Ok(Packet::HandshakeInit(ref init)) => {
                // match_init takes the key map's read lock, which
                // remove_peer holds for writing while it waits for a
                // peer's lock: never ask for it holding one (a peer being
                // removed would wait for us, and we for it). Initiations
                // are rare and rate-limited: the release costs nothing.
                self.release();
                match self
                    .matcher
                    .match_init(from.ip(), data, init, self.out, self.counters)
                {
                    InitMatch::Peer(id) => Some(id),
                    InitMatch::Cookie(len) => {
                        self.send_cookie(len, from);
                        return;
                    }
                    InitMatch::Drop => return,
                }
            }
            Ok(Packet::HandshakeResponse(p)) => self.by_index(p.receiver_idx),
            Ok(Packet::PacketCookieReply(p)) => self.by_index(p.receiver_idx),
            Ok(Packet::PacketData(p)) => self.by_index(p.receiver_idx),
        };
        let Some(id) = id else {
            self.counters.rx_unknown_index += 1;
            return;
        };
        // parse_incoming_packet accepted it, so the framing holds.
        let Ok(msg) = Message::new_checked(data) else {
            self.counters.rx_junk += 1;
            return;
        };
        self.decapsulate(id, from, msg.message_type(), data, deliver);
    }

    fn by_index(&self, receiver_idx: u32) -> Option<PeerId> {
        self.index
            .peer_of(receiver_idx)
            .filter(|&id| self.peers.in_range(id))
    }

    fn send_cookie(&mut self, len: usize, to: SocketAddr) {
        let Some(cookie) = self.out.get(..len) else {
            return;
        };
        self.net.queue(self.counters, None, cookie, to);
    }

    fn decapsulate(
        &mut self,
        id: PeerId,
        from: SocketAddr,
        msg_type: u8,
        data: &[u8],
        deliver: &mut dyn FnMut(PeerId, &[u8]),
    ) {
        if self.held.as_ref().map(|h| h.0) != Some(id) {
            self.release();
            // A removed peer's index, or a slot reused since: not this peer.
            let Some(p) = self.peers.lock(id) else {
                self.counters.rx_unknown_index += 1;
                return;
            };
            self.held = Some((id, p));
        }
        let Rx {
            held,
            net,
            out,
            counters,
            now,
            ..
        } = self;
        let Some((_, peer)) = held.as_mut() else {
            return;
        };
        let peer: &mut Peer = peer;
        let net: &mut Output = net;
        let now = *now;
        let counters: &mut TunnelCounters = counters;
        let authenticated = match open_datagram(&mut peer.tunn, from.ip(), data, peer.link, out) {
            Opened::Reply(reply) => {
                if reply.first() == Some(&MSG_COOKIE) {
                    // The Tunn's own load check answered with a cookie:
                    // nothing authenticated yet, so no roaming.
                    net.queue(counters, None, reply, from);
                    return;
                }
                // A response to their initiation, or our keepalive after
                // their response: either way a handshake just completed.
                if peer.authenticated(from, data.len(), now) {
                    counters.endpoint_changes += 1;
                }
                if msg_type == MSG_INITIATION || msg_type == MSG_RESPONSE {
                    peer.handshake_completed();
                    counters.handshakes_completed += 1;
                }
                net.queue(counters, Some(&mut *peer), reply, from);
                true
            }
            Opened::Data(inner) => {
                if peer.authenticated(from, data.len(), now) {
                    counters.endpoint_changes += 1;
                }
                match inner {
                    Ok(Inner::Whole(gre)) => {
                        deliver_gre(gre, id, &mut peer.stats, counters, deliver)
                    }
                    Ok(Inner::Fragment(f)) => {
                        if peer.reasm.input(f, now.mono, counters) == Verdict::Complete {
                            let gre = peer.reasm.completed();
                            deliver_gre(gre, id, &mut peer.stats, counters, deliver);
                        }
                    }
                    Err(d) => counters.count_inner_drop(d),
                }
                true
            }
            Opened::Done if msg_type == MSG_DATA => {
                counters.rx_keepalives += 1;
                if peer.authenticated(from, data.len(), now) {
                    counters.endpoint_changes += 1;
                }
                true
            }
            Opened::Done => {
                counters.rx_cookie_replies += 1;
                false
            }
            Opened::Refused(e) => {
                count_error(counters, &e);
                false
            }
        };
        // boringtun keeps frames queued until a session exists. The
        // initiator's session is usable once the response arrives, the
        // responder's with the first data packet (which returns Done, not
        // WriteToNetwork), so flush after every authenticated packet except
        // an initiation: there the session is not usable yet, and a flush
        // would only move the head of the queue to its tail (reordering).
        if authenticated && msg_type != MSG_INITIATION {
            send_queued(net, counters, peer);
        }
    }
}

/// The GRE checks on a whole or reassembled inner payload, then delivery.
fn deliver_gre(
    gre: &[u8],
    id: PeerId,
    stats: &mut PeerCounters,
    counters: &mut TunnelCounters,
    deliver: &mut dyn FnMut(PeerId, &[u8]),
) {
    match gretap::decap_gre(gre) {
        Ok(frame) => {
            counters.rx_frames += 1;
            stats.rx_frames += 1;
            deliver(id, frame);
        }
        Err(d) => counters.count_inner_drop(d),
    }
}

/// Sends what boringtun queued (frames waiting for the session), encrypted
/// straight into the send batch.
fn send_queued(net: &mut Output, counters: &mut TunnelCounters, peer: &mut Peer) {
    for _ in 0..MAX_FLUSH {
        let Some(to) = peer.endpoint else { return };
        let slot = net.slot(counters);
        let base = slot.as_ptr() as usize;
        let (offset, len) = match peer.tunn.decapsulate(None, &[], slot) {
            TunnResult::WriteToNetwork(msg) => {
                ((msg.as_ptr() as usize).wrapping_sub(base), msg.len())
            }
            _ => return,
        };
        // send.rs counted these frames when boringtun queued them.
        net.commit(counters, Some(&mut *peer), offset, len, to, false);
    }
}

fn count_error(c: &mut TunnelCounters, e: &WireGuardError) {
    use WireGuardError::*;
    let counter = match e {
        InvalidMac => &mut c.rx_invalid_mac,
        InvalidAeadTag => &mut c.rx_decrypt_failed,
        DuplicateCounter | InvalidCounter => &mut c.rx_replayed,
        NoCurrentSession => &mut c.rx_no_session,
        InvalidPacket => &mut c.rx_inner_not_ip,
        WrongIndex
        | WrongKey
        | InvalidTai64nTimestamp
        | WrongTai64nTimestamp
        | UnexpectedPacket
        | WrongPacketType
        | IncorrectPacketLength => &mut c.rx_handshake_rejected,
        _ => &mut c.rx_other_errors,
    };
    *counter += 1;
}
