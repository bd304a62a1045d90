//! One frame's work without any I/O: Ethernet frame -> inner IP + GRE ->
//! WireGuard padding -> encrypted data message, and back. The send path
//! (`send.rs`) calls [`encap_frame`] then [`seal_packet`] (into a
//! send-batch slot; inner fragments between the two when the packet does
//! not fit the underlay); the receive path (`receive.rs`) calls
//! [`open_datagram`], then `gretap::decap_gre` on a whole inner packet (or
//! reassembles fragments first). Public so that the benches time these
//! very functions without sockets (`benches/tunnel.rs`): there is no twin
//! of the production path to drift from it.

use std::net::IpAddr;

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::{Tunn, TunnResult};

use super::gretap::{self, Inner, Link};
use super::socket::RX_DATAGRAM_MAX;
use super::{InnerDrop, TunnelError};
use crate::wire::wireguard::{
    message_type::HANDSHAKE_INITIATION as MSG_INITIATION, DATA_OVERHEAD,
    HANDSHAKE_INITIATION_LEN as HANDSHAKE_INIT_LEN, PADDING_MULTIPLE,
};

/// Largest Ethernet frame we send: its datagram must fit what any meshwire
/// peer receives (RX_DATAGRAM_MAX), with IPv6 inner headers and padding.
pub const MAX_FRAME_LEN: usize =
    RX_DATAGRAM_MAX - DATA_OVERHEAD - gretap::header_len(true) - (PADDING_MULTIPLE - 1);

/// Scratch buffer sizes: plaintext, and boringtun's output (>= src + 32 and
/// >= 148, or encapsulate panics).
pub(super) const PLAIN_BUF: usize = RX_DATAGRAM_MAX;
pub(super) const OUT_BUF: usize = RX_DATAGRAM_MAX + DATA_OVERHEAD + HANDSHAKE_INIT_LEN;
// boringtun panics when decapsulate's dst is shorter than the ciphertext;
// every datagram we hand it is at most RX_DATAGRAM_MAX (longer ones are
// dropped as truncated), and queued plaintexts are at most PLAIN_BUF.
const _: () = assert!(OUT_BUF >= RX_DATAGRAM_MAX && OUT_BUF >= PLAIN_BUF + DATA_OVERHEAD);

/// The kernel pads plaintext to a multiple of 16, but never past the
/// device MTU; 1420 is wg0's default, the one the kernel peers use.
const PAD_MTU: usize = 1420;

/// Plaintext length after WireGuard's padding rule: a multiple of 16, but
/// never past the kernel's 1420-byte wg0 MTU for what fits there, and never
/// past `mtu` (the inner MTU towards the peer) for anything.
pub(super) fn padded_len(len: usize, mtu: usize) -> usize {
    let aligned = len.div_ceil(PADDING_MULTIPLE) * PADDING_MULTIPLE;
    let cap = if len <= PAD_MTU {
        PAD_MTU.min(mtu)
    } else {
        mtu
    };
    aligned.min(cap.max(len))
}

/// What `seal_packet` left at the start of `out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    /// A data message of this many bytes.
    Data(usize),
    /// No session: the frame waits in the Tunn's queue (at most 256) and
    /// this many bytes of handshake initiation are to be sent.
    Initiation(usize),
    /// Waiting behind a handshake already in flight (in the Tunn's queue).
    Queued,
}

/// What one datagram did to a peer's session, as the receive path acts
/// on it.
#[derive(Debug)]
pub enum Opened<'o> {
    /// A message for the sender: a handshake response, our keepalive after
    /// their response, or the Tunn's own cookie reply under load.
    Reply(&'o [u8]),
    /// A data message: its inner packet through the IP checks for the
    /// link (whole, or a fragment to reassemble), or why it was dropped.
    Data(Result<Inner<'o>, InnerDrop>),
    /// Nothing to do: a keepalive, or a cookie reply taken in.
    Done,
    /// Refused by WireGuard (not authentic, replayed, no session...).
    Refused(WireGuardError),
}

/// Writes the inner IP + GRE headers for `link` and the frame into
/// `plain`; returns the inner packet's length.
pub fn encap_frame(
    plain: &mut [u8],
    link: Link,
    ident: u16,
    frame: &[u8],
) -> Result<usize, TunnelError> {
    if frame.len() < gretap::MIN_FRAME_LEN {
        return Err(TunnelError::FrameTooShort(frame.len()));
    }
    if frame.len() > MAX_FRAME_LEN {
        return Err(TunnelError::FrameTooLong(frame.len()));
    }
    let too_long = TunnelError::FrameTooLong(frame.len());
    let hl = gretap::encap_headers(plain, link, frame.len(), ident).map_err(|_| too_long)?;
    let len = hl + frame.len();
    plain
        .get_mut(hl..len)
        .ok_or(too_long)?
        .copy_from_slice(frame);
    Ok(len)
}

/// Pads and encrypts the inner packet in `plain[..len]` (`plain` has room
/// for the padding) into the start of `out`. Padding never takes the
/// plaintext past `mtu` (nor past the kernel's 1420 when it fits there).
pub fn seal_packet(
    tunn: &mut Tunn,
    plain: &mut [u8],
    len: usize,
    mtu: usize,
    out: &mut [u8],
) -> Result<Sealed, TunnelError> {
    let too_long = TunnelError::FrameTooLong(len);
    let padded = padded_len(len, mtu);
    if out.len() < (padded + DATA_OVERHEAD).max(HANDSHAKE_INIT_LEN) {
        return Err(too_long);
    }
    let plain = plain.get_mut(..padded).ok_or(too_long)?;
    plain.get_mut(len..).ok_or(too_long)?.fill(0);

    let base = out.as_ptr() as usize;
    let (offset, n, kind) = match tunn.encapsulate(plain, out) {
        TunnResult::WriteToNetwork(msg) => (
            (msg.as_ptr() as usize).wrapping_sub(base),
            msg.len(),
            msg.first().copied(),
        ),
        TunnResult::Done => return Ok(Sealed::Queued),
        _ => return Err(TunnelError::Noise),
    };
    // boringtun writes at the start of `out`; make sure of it.
    if offset != 0 {
        let end = offset.checked_add(n).ok_or(TunnelError::Noise)?;
        if end > out.len() {
            return Err(TunnelError::Noise);
        }
        out.copy_within(offset..end, 0);
    }
    Ok(if kind == Some(MSG_INITIATION) {
        Sealed::Initiation(n)
    } else {
        Sealed::Data(n)
    })
}

/// Decrypts (or takes in the handshake of) one datagram from `from` with
/// `tunn`, into `out`; a data message's inner packet is checked as a
/// kernel gretap + wg allowed-ips would for `link`. Stateless: fragments
/// come back as `Inner::Fragment` for the caller to reassemble.
pub fn open_datagram<'o>(
    tunn: &mut Tunn,
    from: IpAddr,
    datagram: &[u8],
    link: Link,
    out: &'o mut [u8],
) -> Opened<'o> {
    // boringtun panics when the plaintext cannot fit (the receive path's
    // buffer always fits: see send.rs OUT_BUF).
    if out.len() < datagram.len() {
        return Opened::Refused(WireGuardError::DestinationBufferTooSmall);
    }
    match tunn.decapsulate(Some(from), datagram, out) {
        TunnResult::WriteToNetwork(reply) => Opened::Reply(reply),
        TunnResult::WriteToTunnelV4(inner, _) | TunnResult::WriteToTunnelV6(inner, _) => {
            Opened::Data(gretap::classify(inner, link))
        }
        TunnResult::Done => Opened::Done,
        TunnResult::Err(e) => Opened::Refused(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_rule() {
        let big = usize::MAX;
        assert_eq!(padded_len(0, big), 0);
        assert_eq!(padded_len(1, big), 16);
        assert_eq!(padded_len(90, big), 96);
        assert_eq!(padded_len(96, big), 96);
        // Never past the MTU: the kernel's 1420-byte packet stays 1420.
        assert_eq!(padded_len(1419, big), 1420);
        assert_eq!(padded_len(1420, big), 1420);
        // Above the MTU (jumbo underlay) plain alignment again.
        assert_eq!(padded_len(1421, big), 1424);
        assert!(
            padded_len(MAX_FRAME_LEN + gretap::header_len(true), big) + DATA_OVERHEAD
                <= RX_DATAGRAM_MAX
        );
        // Never past the inner MTU towards the peer: a 1500-byte IPv4
        // underlay carries 1440 bytes of plaintext, a 1280-byte one 1220.
        assert_eq!(padded_len(1436, 1440), 1440);
        assert_eq!(padded_len(1219, 1220), 1220);
        assert_eq!(padded_len(1000, 1220), 1008);
        for len in 0..=1440 {
            assert!(padded_len(len, 1440) <= 1440);
            assert!(padded_len(len, 1220) <= 1220.max(len));
        }
    }
}
