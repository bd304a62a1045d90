//! The transmit path: Ethernet frame -> inner IP + GRE (in a reusable
//! buffer) -> WireGuard padding -> boringtun encapsulate -> sendto.
//! No allocation per packet: both buffers live in `Tunnels`.

use std::io;
use std::net::SocketAddr;

use boringtun::noise::TunnResult;

use super::counters::TunnelCounters;
use super::peer::Peer;
use super::socket::{UdpSocket, RX_DATAGRAM_MAX};
use super::{gretap, PeerId, TunnelError, Tunnels};

/// WireGuard message type of an initiation (first byte on the wire).
pub(super) const MSG_INITIATION: u8 = 1;
pub(super) const MSG_COOKIE: u8 = 3;
pub(super) const MSG_DATA: u8 = 4;
/// Header + Poly1305 tag around every data message.
pub(super) const DATA_OVERHEAD: usize = 32;
/// The kernel pads plaintext to a multiple of 16, but never past the
/// device MTU; 1420 is wg0's default, the one the kernel peers use.
const PADDING_MULTIPLE: usize = 16;
const PAD_MTU: usize = 1420;
/// Largest Ethernet frame we send: its datagram must fit what any meshwire
/// peer receives (RX_DATAGRAM_MAX), with IPv6 inner headers and padding.
pub const MAX_FRAME_LEN: usize =
    RX_DATAGRAM_MAX - DATA_OVERHEAD - gretap::header_len(true) - (PADDING_MULTIPLE - 1);
/// Scratch buffer sizes: plaintext, and boringtun's output (>= src + 32 and
/// >= 148, or encapsulate panics).
pub(super) const PLAIN_BUF: usize = RX_DATAGRAM_MAX;
pub(super) const OUT_BUF: usize = RX_DATAGRAM_MAX + DATA_OVERHEAD + 148;
// boringtun panics when decapsulate's dst is shorter than the ciphertext;
// every datagram we hand it is at most RX_DATAGRAM_MAX (longer ones are
// dropped as truncated), and queued plaintexts are at most PLAIN_BUF.
const _: () = assert!(OUT_BUF >= RX_DATAGRAM_MAX && OUT_BUF >= PLAIN_BUF + DATA_OVERHEAD);

/// Plaintext length after WireGuard's padding rule.
pub(super) fn padded_len(len: usize) -> usize {
    let aligned = len.div_ceil(PADDING_MULTIPLE) * PADDING_MULTIPLE;
    if len > PAD_MTU {
        aligned
    } else {
        aligned.min(PAD_MTU)
    }
}

impl Tunnels {
    pub(super) fn send_frame_inner(&mut self, id: PeerId, frame: &[u8]) -> Result<(), TunnelError> {
        let peer = self
            .peers
            .get_mut(id as usize)
            .ok_or(TunnelError::UnknownPeer(id))?;
        if frame.len() < gretap::MIN_FRAME_LEN {
            return Err(TunnelError::FrameTooShort(frame.len()));
        }
        if frame.len() > MAX_FRAME_LEN {
            return Err(TunnelError::FrameTooLong(frame.len()));
        }
        let Some(endpoint) = peer.endpoint else {
            // Nowhere to send the handshake either; the peer must reach us.
            self.counters.tx_no_endpoint += 1;
            return Err(TunnelError::NoEndpoint(id));
        };
        let ident = peer.next_ident();
        let hl = gretap::encap_headers(&mut self.plain, peer.link, frame.len(), ident)
            .map_err(|_| TunnelError::FrameTooLong(frame.len()))?;
        let len = hl + frame.len();
        let padded = padded_len(len);
        let plain = self
            .plain
            .get_mut(..padded)
            .ok_or(TunnelError::FrameTooLong(frame.len()))?;
        plain[hl..len].copy_from_slice(frame);
        plain[len..].fill(0);

        match peer.tunn.encapsulate(plain, &mut self.out) {
            TunnResult::WriteToNetwork(msg) => {
                if msg.first() == Some(&MSG_INITIATION) {
                    // No session: boringtun queued the frame and starts one.
                    self.counters.tx_queued += 1;
                }
                transmit(&self.socket, &mut self.counters, peer, msg, endpoint)
            }
            TunnResult::Done => {
                // Queued behind a handshake already in flight.
                self.counters.tx_queued += 1;
                Ok(())
            }
            TunnResult::Err(_) => Err(TunnelError::Noise),
            TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {
                Err(TunnelError::Noise)
            }
        }
    }
}

/// Sends one WireGuard message to a peer and does its bookkeeping.
pub(super) fn transmit(
    socket: &UdpSocket,
    counters: &mut TunnelCounters,
    peer: &mut Peer,
    msg: &[u8],
    to: SocketAddr,
) -> Result<(), TunnelError> {
    match socket.send_to(msg, to) {
        Ok(_) => {
            counters.tx_datagrams += 1;
            counters.tx_bytes += msg.len() as u64;
            peer.stats.tx_bytes += msg.len() as u64;
            match msg.first() {
                Some(&MSG_INITIATION) => {
                    counters.handshake_initiations_sent += 1;
                    peer.stats.handshake_attempts = peer.stats.handshake_attempts.saturating_add(1);
                }
                Some(&MSG_DATA) if msg.len() > DATA_OVERHEAD => {
                    counters.tx_frames += 1;
                    peer.stats.tx_frames += 1;
                }
                _ => {}
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            counters.tx_would_block += 1;
            Err(TunnelError::Socket(e.kind()))
        }
        Err(e) => {
            counters.tx_socket_errors += 1;
            Err(TunnelError::Socket(e.kind()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_rule() {
        assert_eq!(padded_len(0), 0);
        assert_eq!(padded_len(1), 16);
        assert_eq!(padded_len(90), 96);
        assert_eq!(padded_len(96), 96);
        // Never past the MTU: the kernel's 1420-byte packet stays 1420.
        assert_eq!(padded_len(1419), 1420);
        assert_eq!(padded_len(1420), 1420);
        // Above the MTU (jumbo underlay) plain alignment again.
        assert_eq!(padded_len(1421), 1424);
        assert!(
            padded_len(MAX_FRAME_LEN + gretap::header_len(true)) + DATA_OVERHEAD <= RX_DATAGRAM_MAX
        );
    }
}
