//! Receive batches: the reads one `Ports::recv_batch` took from a port and
//! the frames they yield.
//!
//! With offloads on, one read may be a 64 KB GSO super-frame. It stays in
//! the batch's buffer as read; [`PortRx::next_frame`] cuts it lazily, one
//! MTU-sized frame per call, by writing a copy of the headers just in front
//! of the next payload slice (over the tail of the slice handed out before,
//! which the caller is done with) and fixing lengths, sequence numbers and
//! checksums there. So the payload is never copied and nothing is
//! allocated after `PortRx::new`.
//!
//! The batch is owned by the caller (the dataplane), not by `Ports`, so the
//! frames it lends out can be switched to other ports while they are
//! borrowed.

use std::io;

use super::device::Device;
use super::ports::PortCounters;
use super::segment::{self, Gso, Prepared, RxError, MAX_HEADERS};
use crate::wire::ethernet;
use crate::wire::vnet;

/// Room one read gets: a virtio header, the largest IP packet (64 KB) and
/// an Ethernet header with two tags. A read that fills it was cut by the
/// kernel and is dropped.
pub const MAX_READ: usize = vnet::HEADER_LEN + 65_536 + 64;

/// Super-frames a default batch holds (~260 KB of buffer).
pub const DEFAULT_READS: usize = 4;

/// At most this many reads per batch: bounds the work of one call even when
/// every read is dropped, and the entry table.
pub const MAX_ENTRIES: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The frame (after any virtio header) in `buf`.
    start: usize,
    len: usize,
    gso: Option<Gso>,
}

/// A batch of frames read from one port; reusable, allocation-free after
/// construction.
#[derive(Debug)]
pub struct PortRx {
    buf: Box<[u8]>,
    used: usize,
    entries: Vec<Entry>,
    /// Iteration cursor: entry, and segment within a GSO entry.
    next_entry: usize,
    next_seg: usize,
    /// The super-frame's original headers, saved before segment 0 is
    /// finished in place.
    tmpl: [u8; MAX_HEADERS],
    /// The length of the last frame dropped as oversize (0: none since
    /// [`PortRx::take_oversize`]), for the port's warning.
    last_oversize: usize,
}

impl Default for PortRx {
    fn default() -> PortRx {
        PortRx::new()
    }
}

impl PortRx {
    pub fn new() -> PortRx {
        PortRx::with_reads(DEFAULT_READS)
    }

    /// The length of a frame the last fills dropped as oversize, if any.
    pub fn take_oversize(&mut self) -> Option<usize> {
        Some(std::mem::take(&mut self.last_oversize)).filter(|&n| n > 0)
    }

    /// A batch with room for `reads` maximal reads (at least 1); many more
    /// small frames fit, up to [`MAX_ENTRIES`].
    pub fn with_reads(reads: usize) -> PortRx {
        PortRx {
            buf: vec![0u8; MAX_READ * reads.max(1)].into_boxed_slice(),
            used: 0,
            entries: Vec::with_capacity(MAX_ENTRIES),
            next_entry: 0,
            next_seg: 0,
            last_oversize: 0,
            tmpl: [0; MAX_HEADERS],
        }
    }

    /// Forgets everything read (frames not yet taken are lost).
    pub fn clear(&mut self) {
        self.used = 0;
        self.entries.clear();
        self.next_entry = 0;
        self.next_seg = 0;
    }

    /// True when every frame has been taken.
    pub fn is_drained(&self) -> bool {
        self.next_entry >= self.entries.len()
    }

    /// The next frame, ready to forward: a plain frame as read, or the next
    /// segment of a super-frame. Its bytes are valid until the next call.
    pub fn next_frame(&mut self) -> Option<&[u8]> {
        loop {
            let e = *self.entries.get(self.next_entry)?;
            let Some(g) = e.gso else {
                self.next_entry += 1;
                return self.buf.get(e.start..e.start + e.len);
            };
            let i = self.next_seg;
            if i >= g.segments() {
                self.next_entry += 1;
                self.next_seg = 0;
                continue;
            }
            self.next_seg += 1;
            let h = g.header_len();
            let frame = self.buf.get_mut(e.start..e.start + e.len)?;
            if i == 0 {
                self.tmpl[..h].copy_from_slice(frame.get(..h)?);
            }
            let r = g.payload_range(i);
            let seg = frame.get_mut(r.start - h..r.end)?;
            seg[..h].copy_from_slice(&self.tmpl[..h]);
            segment::finish_segment(&g, seg, i);
            return self.buf.get(e.start + r.start - h..e.start + r.end);
        }
    }

    /// Hands every frame of the batch to `f`, in order.
    pub fn for_each_frame(&mut self, mut f: impl FnMut(&[u8])) {
        while let Some(frame) = self.next_frame() {
            f(frame);
        }
    }

    /// Replaces the batch with what `tap` has queued: reads until the
    /// kernel has nothing more, the buffer has no room for another maximal
    /// read, or [`MAX_ENTRIES`] reads were made. Returns how many frames the
    /// batch yields (0 when everything read was dropped);
    /// `Err(WouldBlock)` when nothing at all was queued.
    pub(crate) fn fill(
        &mut self,
        tap: &Device,
        c: &mut PortCounters,
        max_frame: usize,
    ) -> io::Result<usize> {
        self.clear();
        let hdr_len = if tap.offloads().vnet_hdr {
            vnet::HEADER_LEN
        } else {
            0
        };
        let mut frames = 0;
        let mut reads = 0;
        while reads < MAX_ENTRIES && self.buf.len() - self.used >= MAX_READ {
            let room = &mut self.buf[self.used..self.used + MAX_READ];
            let n = match tap.read(room) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    reads += 1;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && reads > 0 => break,
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        c.rx_errors += 1;
                    }
                    return if reads > 0 { Ok(frames) } else { Err(e) };
                }
            };
            reads += 1;
            c.rx_reads += 1;
            frames += self.accept(n, hdr_len, c, max_frame);
        }
        Ok(frames)
    }

    /// Adds `read` (what one read(2) of a TAP returned; with a virtio header
    /// first when `vnet`) to the batch as if read from a port; for tests,
    /// benches and replays. Returns the frames it yields (0 when dropped or
    /// when the batch is full).
    pub fn load(
        &mut self,
        read: &[u8],
        vnet: bool,
        c: &mut PortCounters,
        max_frame: usize,
    ) -> usize {
        let n = read.len();
        if self.entries.len() >= MAX_ENTRIES || self.buf.len() - self.used < MAX_READ {
            return 0;
        }
        if n >= MAX_READ {
            c.rx_drop_oversize += 1;
            self.last_oversize = n;
            return 0;
        }
        self.buf[self.used..self.used + n].copy_from_slice(read);
        let hdr_len = if vnet { vnet::HEADER_LEN } else { 0 };
        self.accept(n, hdr_len, c, max_frame)
    }

    /// Validates the `n` bytes just read at `used` and keeps them as an
    /// entry, or drops and counts them. Returns the frames they yield.
    fn accept(
        &mut self,
        n: usize,
        hdr_len: usize,
        c: &mut PortCounters,
        max_frame: usize,
    ) -> usize {
        if n >= MAX_READ {
            c.rx_drop_oversize += 1;
            self.last_oversize = n;
            return 0;
        }
        if n < hdr_len + ethernet::HEADER_LEN {
            c.rx_drop_short += 1;
            return 0;
        }
        let room = &mut self.buf[self.used..self.used + n];
        let (hdr, frame) = room.split_at_mut(hdr_len);
        let prepared = if hdr_len > 0 {
            segment::prepare(hdr, frame, max_frame)
        } else if frame.len() > max_frame {
            Err(RxError::Oversize)
        } else {
            Ok(Prepared::Plain {
                csum_completed: false,
            })
        };
        let (gso, frames) = match prepared {
            Err(e) => {
                if e == RxError::Oversize {
                    self.last_oversize = n - hdr_len;
                }
                count_drop(c, e);
                return 0;
            }
            Ok(Prepared::Plain { csum_completed }) => {
                c.rx_csum_completed += u64::from(csum_completed);
                c.rx_bytes += frame.len() as u64;
                (None, 1)
            }
            Ok(Prepared::Gso(g)) => {
                c.rx_gso += 1;
                c.rx_bytes += g.total_bytes() as u64;
                (Some(g), g.segments())
            }
        };
        c.rx_frames += frames as u64;
        self.entries.push(Entry {
            start: self.used + hdr_len,
            len: n - hdr_len,
            gso,
        });
        self.used += n;
        frames
    }
}

fn count_drop(c: &mut PortCounters, e: RxError) {
    let n = match e {
        RxError::BadVnet => &mut c.rx_drop_bad_vnet,
        RxError::Ecn | RxError::Unsupported => &mut c.rx_drop_unsupported_gso,
        RxError::BadGso => &mut c.rx_drop_bad_gso,
        RxError::BadHeaders => &mut c.rx_drop_bad_headers,
        RxError::BadCsum => &mut c.rx_drop_bad_csum,
        RxError::Oversize => &mut c.rx_drop_oversize,
    };
    *n += 1;
}
