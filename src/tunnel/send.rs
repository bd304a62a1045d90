//! The transmit path: Ethernet frame -> inner IP + GRE (in a reusable
//! buffer) -> WireGuard padding -> boringtun encapsulate, straight into a
//! slot of the send batch -> sendmmsg at the next flush (`output.rs`).
//! No allocation per packet: every buffer lives in `Tunnels`.

use super::codec::{seal_frame, Sealed};
use super::socket::RX_DATAGRAM_MAX;
use super::tx_batch::TX_SLOT;
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
// Frames are encrypted into send-batch slots, and boringtun re-encrypts
// queued frames into them after a handshake: the largest must fit.
const _: () = assert!(
    TX_SLOT >= MAX_FRAME_LEN + gretap::header_len(true) + (PADDING_MULTIPLE - 1) + DATA_OVERHEAD
);

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
        // Encrypt straight into the send batch (a full one flushes first).
        let slot = self.net.slot(&mut self.counters);
        let sealed = seal_frame(
            &mut peer.tunn,
            peer.link,
            ident,
            frame,
            &mut self.plain,
            slot,
        )?;
        let len = match sealed {
            Sealed::Data(n) => n,
            Sealed::Initiation(n) => {
                // No session: boringtun queued the frame and starts one.
                self.counters.tx_queued += 1;
                n
            }
            Sealed::Queued => {
                self.counters.tx_queued += 1;
                return Ok(());
            }
        };
        // seal_frame leaves the message at the slot's start.
        self.net
            .commit(&mut self.counters, Some(peer), 0, len, endpoint);
        Ok(())
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
