//! An attached port's send side, batched: the frames a worker sends toward
//! an attached TAP in one round are copied into the port's staging area
//! and leave together with one sendmmsg(2) when the worker ends its round
//! (`Ports::flush`), instead of one send(2) each.
//!
//! sendmmsg from a staging area rather than a `PACKET_TX_RING`, because it
//! is the simpler of the two with the same system-call saving:
//! - every frame's outcome is known (sendmmsg says how many it took, and
//!   the next call reports the refused one's error), so a kernel refusal is
//!   counted per frame; a TX ring reports one error per kick, and a frame
//!   it could not send only as a status word to go back and look for;
//! - nothing lives past the call: a TX ring slot stays busy until the skb
//!   built from it is freed (af_packet.c `tpacket_destruct_skb`), and it
//!   would have to share the one mapping with the receive ring;
//! - the kernel path per frame is the same `packet_snd` a write takes (the
//!   virtio header parsed the same way), so nothing about offloads changes.
//!
//! Order and loss: frames are staged in send order; a full staging area
//! is sent before the next frame is staged; a frame larger than
//! [`STAGE_MAX`] (a TSO/USO super-frame of many segments, which already
//! carries many frames per system call) is written directly, after what is
//! staged. Nothing is dropped here: what the kernel refuses is counted.

use std::io;
use std::ops::Range;

use super::device::Device;
use super::ports::Port;
use super::tx::tally;

/// Frames per sendmmsg (and staged at most).
pub(crate) const BATCH_FRAMES: usize = 64;
/// Staging bytes per port and worker.
const BATCH_BYTES: usize = 128 << 10;
/// Larger datagrams (virtio header included) are written directly.
pub(crate) const STAGE_MAX: usize = 16 << 10;

/// Datagrams staged for one port: their bytes back to back, where each
/// one is, and what it counts as once sent.
#[derive(Debug, Default)]
pub(crate) struct TxBatch {
    bytes: Vec<u8>,
    ranges: Vec<Range<usize>>,
    staged: Vec<Staged>,
}

#[derive(Debug, Clone, Copy)]
struct Staged {
    /// The frames it carries (a super-frame's segments).
    segs: u64,
    udp: bool,
    /// Its virtio header's length (not counted in tx_bytes).
    hdr: usize,
}

impl TxBatch {
    /// A staging area for the ports whose sends are batched (attached
    /// ones); None for the others, which write each frame.
    pub(crate) fn for_device(dev: &Device) -> Option<Box<TxBatch>> {
        matches!(dev, Device::Packet(_)).then(|| {
            Box::new(TxBatch {
                bytes: Vec::with_capacity(BATCH_BYTES),
                ranges: Vec::with_capacity(BATCH_FRAMES),
                staged: Vec::with_capacity(BATCH_FRAMES),
            })
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ranges.clear();
        self.staged.clear();
    }
}

/// Stages one datagram for `port` (its virtio header, `hdr` bytes long,
/// then the frame: `parts` joined), carrying `segs` frames. False when the
/// port does not batch or the datagram is too large to stage: the caller
/// then [`flush`]es and writes it itself.
pub(crate) fn stage(port: &mut Port, parts: &[&[u8]], hdr: usize, segs: u64, udp: bool) -> bool {
    let n: usize = parts.iter().map(|p| p.len()).sum();
    let Some(b) = port.batch.as_deref() else {
        return false;
    };
    if n > STAGE_MAX {
        return false;
    }
    if b.ranges.len() >= BATCH_FRAMES || b.bytes.len() + n > BATCH_BYTES {
        flush(port);
    }
    let Some(b) = port.batch.as_deref_mut() else {
        return false;
    };
    let start = b.bytes.len();
    for p in parts {
        b.bytes.extend_from_slice(p);
    }
    b.ranges.push(start..start + n);
    b.staged.push(Staged { segs, udp, hdr });
    true
}

/// Sends what is staged for `port`, counting each datagram's outcome as a
/// single write's would be, and the system calls in `tx_writes`. Returns
/// the system calls made.
pub(crate) fn flush(port: &mut Port) -> usize {
    let Some(mut b) = port.batch.take() else {
        return 0;
    };
    let mut calls = 0;
    if let (false, Device::Packet(p)) = (b.is_empty(), &port.dev) {
        let c = &mut port.counters;
        for (k, ranges) in b.ranges.chunks(BATCH_FRAMES).enumerate() {
            let first = k * BATCH_FRAMES;
            calls += p.send_batch(&b.bytes, ranges, |i, r: io::Result<usize>| {
                let (Some(s), Some(want)) = (b.staged.get(first + i), ranges.get(i)) else {
                    return;
                };
                tally(c, r, want.len(), s.hdr, s.segs, s.udp);
            });
        }
        c.tx_writes += calls as u64;
    }
    b.clear();
    port.batch = Some(b);
    calls
}

/// Batched sends on port `id` on or off (off: one send per frame, as
/// before batching), for the comparison in the tests.
#[cfg(test)]
pub(crate) fn set_batching(ports: &mut super::Ports, id: super::PortId, on: bool) {
    if let Some(p) = ports.get_mut(id) {
        flush(p);
        p.batch = if on {
            TxBatch::for_device(&p.dev)
        } else {
            None
        };
    }
}
