//! One frame's work without any I/O: Ethernet frame -> inner IP + GRE ->
//! WireGuard padding -> encrypted data message, and back. The send path
//! uses `seal_frame` as is; `open_frame` is the receive path's data case
//! (decrypt, then the gretap checks). Public so benches measure the CPU cost
//! of exactly this code without sockets.

use boringtun::noise::{Tunn, TunnResult};

use super::gretap::{self, Link};
use super::send::{padded_len, DATA_OVERHEAD, MSG_INITIATION};
use super::{InnerDrop, TunnelError, MAX_FRAME_LEN};

/// boringtun writes a 148-byte initiation into the output when no session
/// exists, and panics if it does not fit.
const HANDSHAKE_INIT_LEN: usize = 148;

/// What `seal_frame` left at the start of `out`.
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

/// Why `open_frame` produced no frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Authenticated but no frame: a keepalive, or a handshake message that
    /// wants a reply (the receive path handles those).
    NotData,
    /// Refused by WireGuard (not authentic, replayed, no session...).
    Noise,
    /// Decrypted but not a gretap frame for this link.
    Inner(InnerDrop),
    /// `out` is shorter than the datagram.
    ShortBuffer,
}

/// Encapsulates and encrypts one Ethernet frame for `link` (IPv4
/// identification `ident`), using `plain` as scratch. The message lands at
/// the start of `out`, which must hold the padded plaintext + 32 bytes
/// (and at least 148).
pub fn seal_frame(
    tunn: &mut Tunn,
    link: Link,
    ident: u16,
    frame: &[u8],
    plain: &mut [u8],
    out: &mut [u8],
) -> Result<Sealed, TunnelError> {
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
    seal_packet(tunn, plain, len, usize::MAX, out).map_err(|e| match e {
        TunnelError::Noise => e,
        _ => too_long,
    })
}

/// Pads and encrypts the inner packet in `plain[..len]` (`plain` has room
/// for the padding) into the start of `out`. Padding never takes the
/// plaintext past `mtu` (nor past the kernel's 1420 when it fits there).
pub(super) fn seal_packet(
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

/// Decrypts one data message and returns the Ethernet frame inside, after
/// the checks a kernel gretap + wg allowed-ips would make for `link`.
/// Stateless: an inner IP fragment is `Inner(Drop::Fragment)` here (the
/// receive path reassembles them).
///
/// `seal_frame` likewise makes one message whatever the frame's length; the
/// send path cuts what does not fit the underlay into inner fragments.
pub fn open_frame<'o>(
    tunn: &mut Tunn,
    datagram: &[u8],
    link: Link,
    out: &'o mut [u8],
) -> Result<&'o [u8], OpenError> {
    // boringtun panics when the plaintext cannot fit.
    if out.len() < datagram.len() {
        return Err(OpenError::ShortBuffer);
    }
    match tunn.decapsulate(None, datagram, out) {
        TunnResult::WriteToTunnelV4(inner, _) | TunnResult::WriteToTunnelV6(inner, _) => {
            gretap::decap(inner, link).map_err(OpenError::Inner)
        }
        TunnResult::Err(_) => Err(OpenError::Noise),
        TunnResult::Done | TunnResult::WriteToNetwork(_) => Err(OpenError::NotData),
    }
}
