//! The transmit path: Ethernet frame -> inner IP + GRE (in a reusable
//! buffer) -> WireGuard padding -> boringtun encapsulate, straight into a
//! slot of the send batch -> sendmmsg at the next flush (`output.rs`).
//! An inner packet too long for one datagram over the underlay MTU leaves
//! as inner IP fragments (`fragment.rs`), never as underlay fragments.
//! No allocation per packet: every buffer lives in the worker's `TunnelIo`.

use std::net::SocketAddr;

use super::codec::{encap_frame, seal_packet, Sealed, MAX_FRAME_LEN};
use super::counters::TunnelCounters;
use super::fragment::Fragmenter;
use super::output::Output;
use super::peer::Peer;
use super::socket::RX_DATAGRAM_MAX;
use super::tx_batch::TX_SLOT;
use super::{gretap, PeerId, TunnelCore, TunnelError, TunnelIo};
use crate::wire::mtu;
use crate::wire::wireguard::{DATA_OVERHEAD, PADDING_MULTIPLE};

// Frames are encrypted into send-batch slots, and boringtun re-encrypts
// queued frames into them after a handshake: the largest must fit.
const _: () = assert!(
    TX_SLOT >= MAX_FRAME_LEN + gretap::header_len(true) + (PADDING_MULTIPLE - 1) + DATA_OVERHEAD
);

/// Smallest underlay MTU we accept (IPv4's minimum datagram size).
pub const MIN_UNDERLAY_MTU: usize = 576;

/// Largest inner packet one datagram to `endpoint` may carry over an
/// underlay of `underlay_mtu` bytes without IP fragmentation.
pub(super) fn inner_mtu(underlay_mtu: usize, endpoint: SocketAddr) -> usize {
    underlay_mtu
        .saturating_sub(mtu::underlay_overhead(endpoint.is_ipv6()))
        .min(RX_DATAGRAM_MAX - DATA_OVERHEAD)
}

impl TunnelCore {
    /// One frame to `peer` (locked by the caller, who may hold it for a
    /// run of frames) on a worker's path `io`.
    pub(super) fn send_frame_inner(
        &self,
        io: &mut TunnelIo,
        peer: &mut Peer,
        id: PeerId,
        frame: &[u8],
    ) -> Result<(), TunnelError> {
        if frame.len() < gretap::MIN_FRAME_LEN {
            return Err(TunnelError::FrameTooShort(frame.len()));
        }
        let Some(endpoint) = peer.endpoint else {
            // Nowhere to send the handshake either; the peer must reach us.
            io.counters.tx_no_endpoint += 1;
            return Err(TunnelError::NoEndpoint(id));
        };
        let too_long = TunnelError::FrameTooLong(frame.len());
        let ident = peer.next_ident();
        let len = encap_frame(&mut io.plain, peer.link, ident, frame)?;
        let mtu = inner_mtu(self.underlay_mtu, endpoint);
        if len <= mtu {
            return seal_one(io, peer, len, mtu, endpoint);
        }
        // Too long for one datagram: inner IP fragments, each sealed into
        // its own slot (see fragment.rs).
        let ident6 = peer.next_frag_ident();
        let TunnelIo {
            net,
            plain,
            frag,
            counters,
            ..
        } = io;
        let packet = plain.get(..len).ok_or(too_long)?;
        let mut pieces = Fragmenter::new(packet, mtu, ident6).ok_or(too_long)?;
        counters.tx_fragmented_frames += 1;
        let mut first = true;
        while let Some(n) = pieces.next_into(frag) {
            counters.tx_inner_fragments += 1;
            let slot = net.slot(counters);
            let sealed = seal_packet(&mut peer.tunn, frag, n, mtu, slot)?;
            commit_sealed(net, counters, peer, sealed, endpoint, first);
            first = false;
        }
        Ok(())
    }
}

/// Seals `io.plain[..len]` into the next slot and queues it.
fn seal_one(
    io: &mut TunnelIo,
    peer: &mut Peer,
    len: usize,
    mtu: usize,
    endpoint: SocketAddr,
) -> Result<(), TunnelError> {
    // Encrypt straight into the send batch (a full one flushes first).
    let slot = io.net.slot(&mut io.counters);
    let sealed = seal_packet(&mut peer.tunn, &mut io.plain, len, mtu, slot)?;
    commit_sealed(&mut io.net, &mut io.counters, peer, sealed, endpoint, true);
    Ok(())
}

/// Queues what `seal_packet` left at the start of the current slot;
/// `frame_start`: the first (or only) message of a frame.
fn commit_sealed(
    net: &mut Output,
    counters: &mut TunnelCounters,
    peer: &mut Peer,
    sealed: Sealed,
    to: SocketAddr,
    frame_start: bool,
) {
    let (len, waiting) = match sealed {
        Sealed::Data(n) => (n, false),
        // No session: boringtun queued the packet (and starts a handshake).
        Sealed::Initiation(n) => (n, true),
        Sealed::Queued => (0, true),
    };
    if waiting && frame_start {
        // Counted as a frame now: when the handshake releases the queue,
        // its messages can no longer be told apart as whole frames or
        // inner fragments (receive.rs commits them as no frame start).
        counters.tx_queued += 1;
        counters.tx_frames += 1;
        peer.stats.tx_frames += 1;
    }
    if len > 0 {
        net.commit(counters, Some(peer), 0, len, to, frame_start && !waiting);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_mtu_per_underlay_family() {
        let v4: SocketAddr = "198.18.0.1:51820".parse().unwrap();
        let v6: SocketAddr = "[fd00::1]:51820".parse().unwrap();
        assert_eq!(inner_mtu(1500, v4), 1440);
        // The kernel's wg0 default assumes an IPv6 underlay.
        assert_eq!(inner_mtu(1500, v6), 1420);
        assert_eq!(inner_mtu(65000, v4), RX_DATAGRAM_MAX - DATA_OVERHEAD);
    }
}
