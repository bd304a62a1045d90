//! The transmit side of ports: plain writes (with a zeroed virtio header on
//! an offload port) and the pool of super-frames `send_gro` builds.
//!
//! The pool is shared by all ports and holds at most [`GRO_SLOTS`] flows,
//! TCP (TSO) and UDP (USO) alike, so its memory (~64 KB a slot) does not
//! grow with the number of ports; several flows toward one VM coalesce side
//! by side. Order is kept where it matters: within a flow (a frame that
//! does not continue its flow's super-frame writes that first), and for
//! anything that is not coalescable (it writes all of its port's held
//! frames first).

use std::collections::BTreeMap;
use std::io;

use super::gro::{self, Gro, TcpSeg};
use super::gro_udp::{self, UdpGro, UdpSeg};
use super::ports::{max_frame_len, Port, PortCounters};
use super::tap::Offloads;
use super::tx_batch;
use super::PortId;
use crate::wire::{ethernet, vnet};

/// Flows held at once across all ports. When a new flow finds none free,
/// the one started longest ago is written out to make room.
pub const GRO_SLOTS: usize = 16;

/// A frame `send_gro` may coalesce, as classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seg {
    Tcp(TcpSeg),
    Udp(UdpSeg),
}

impl Seg {
    /// What `frame` is to a port with `off`: a TCP segment when the TAP
    /// took TSO, a UDP datagram when it took USO; None otherwise.
    pub(crate) fn classify(off: Offloads, frame: &[u8]) -> Option<Seg> {
        if off.tso {
            if let Some(s) = gro::classify(frame) {
                return Some(Seg::Tcp(s));
            }
        }
        if off.uso {
            return gro_udp::classify(frame).map(Seg::Udp);
        }
        None
    }
}

/// What a slot builds: a TCP or a UDP super-frame, on the same kind of
/// buffer, so that a slot changes protocol without allocating.
#[derive(Debug)]
enum Held {
    Tcp(Gro),
    Udp(UdpGro),
}

impl Held {
    fn is_empty(&self) -> bool {
        match self {
            Held::Tcp(g) => g.is_empty(),
            Held::Udp(g) => g.is_empty(),
        }
    }

    fn segments(&self) -> usize {
        match self {
            Held::Tcp(g) => g.segments(),
            Held::Udp(g) => g.segments(),
        }
    }

    fn take(&mut self) -> &[u8] {
        match self {
            Held::Tcp(g) => g.take(),
            Held::Udp(g) => g.take(),
        }
    }

    fn same_flow(&self, frame: &[u8], seg: &Seg) -> bool {
        match (self, seg) {
            (Held::Tcp(g), Seg::Tcp(s)) => g.same_flow(frame, s),
            (Held::Udp(g), Seg::Udp(s)) => g.same_flow(frame, s),
            _ => false,
        }
    }

    fn append(&mut self, frame: &[u8], seg: &Seg) -> bool {
        match (self, seg) {
            (Held::Tcp(g), Seg::Tcp(s)) => g.append(frame, s),
            (Held::Udp(g), Seg::Udp(s)) => g.append(frame, s),
            _ => false,
        }
    }

    /// Starts a super-frame of `seg`'s protocol; whatever was pending is
    /// forgotten (the caller wrote it).
    fn start(&mut self, frame: &[u8], seg: &Seg) -> bool {
        match (&mut *self, seg) {
            (Held::Tcp(g), Seg::Tcp(s)) => g.start(frame, s),
            (Held::Udp(g), Seg::Udp(s)) => g.start(frame, s),
            (Held::Tcp(g), Seg::Udp(s)) => {
                let mut u = UdpGro::with_buf(g.take_buf());
                let ok = u.start(frame, s);
                *self = Held::Udp(u);
                ok
            }
            (Held::Udp(g), Seg::Tcp(s)) => {
                let mut t = Gro::with_buf(g.take_buf());
                let ok = t.start(frame, s);
                *self = Held::Tcp(t);
                ok
            }
        }
    }
}

#[derive(Debug)]
struct Slot {
    port: PortId,
    /// When its super-frame was started: the eviction order.
    started: u64,
    held: Held,
}

#[derive(Debug, Default)]
pub(crate) struct GroPool {
    /// Allocated on demand, never more than GRO_SLOTS.
    slots: Vec<Slot>,
    tick: u64,
}

impl GroPool {
    /// Takes a coalescable frame for `port`: merged into its flow's
    /// super-frame, or starting one. True when taken.
    pub(crate) fn push(
        &mut self,
        ports: &mut BTreeMap<PortId, Port>,
        id: PortId,
        frame: &[u8],
        seg: &Seg,
    ) -> bool {
        let flow = self
            .slots
            .iter()
            .position(|s| s.port == id && !s.held.is_empty() && s.held.same_flow(frame, seg));
        let i = match flow {
            Some(i) => {
                if self.slots[i].held.append(frame, seg) {
                    return true;
                }
                // Same flow, not a continuation: its frame goes first.
                self.write_slot(ports, i);
                i
            }
            None => self.free_slot(ports),
        };
        self.tick += 1;
        let slot = &mut self.slots[i];
        if slot.held.start(frame, seg) {
            slot.port = id;
            slot.started = self.tick;
            return true;
        }
        ports.get_mut(&id).is_some_and(|p| send_plain(p, frame))
    }

    /// An empty slot: a free one, a new one, or the oldest written out.
    fn free_slot(&mut self, ports: &mut BTreeMap<PortId, Port>) -> usize {
        if let Some(i) = self.slots.iter().position(|s| s.held.is_empty()) {
            return i;
        }
        if self.slots.len() < GRO_SLOTS {
            self.slots.push(Slot {
                port: 0,
                started: 0,
                held: Held::Tcp(Gro::new()),
            });
            return self.slots.len() - 1;
        }
        let oldest = (0..self.slots.len())
            .min_by_key(|&i| self.slots[i].started)
            .unwrap_or(0);
        self.write_slot(ports, oldest);
        oldest
    }

    fn write_slot(&mut self, ports: &mut BTreeMap<PortId, Port>, i: usize) -> bool {
        let Some(slot) = self.slots.get_mut(i) else {
            return false;
        };
        match ports.get_mut(&slot.port) {
            Some(p) => write_gro(p, &mut slot.held),
            None => {
                slot.held.take();
                false
            }
        }
    }

    /// Writes every super-frame held for `port` (before something that must
    /// not overtake them).
    pub(crate) fn flush_port(&mut self, id: PortId, port: &mut Port) -> usize {
        let mut n = 0;
        for s in self.slots.iter_mut().filter(|s| s.port == id) {
            n += usize::from(write_gro(port, &mut s.held));
        }
        n
    }

    /// Writes everything held; returns the writes made.
    pub(crate) fn flush_all(&mut self, ports: &mut BTreeMap<PortId, Port>) -> usize {
        (0..self.slots.len())
            .map(|i| usize::from(self.write_slot(ports, i)))
            .sum()
    }

    /// Drops what is held for a port that goes away.
    pub(crate) fn forget_port(&mut self, id: PortId) {
        for s in self.slots.iter_mut().filter(|s| s.port == id) {
            s.held.take();
        }
    }
}

/// Writes a held super-frame (if any) to `port` (or stages it, on a port
/// that batches); true when the kernel took it or it is staged. A refusal
/// loses all its segments, counted as such.
fn write_gro(port: &mut Port, g: &mut Held) -> bool {
    if g.is_empty() {
        return false;
    }
    let segs = g.segments() as u64;
    let udp = matches!(g, Held::Udp(_));
    let bytes = g.take();
    if tx_batch::stage(port, &[bytes], vnet::HEADER_LEN, segs, udp) {
        return true;
    }
    // Too large to stage: what is staged goes first.
    tx_batch::flush(port);
    let r = port.dev.write(bytes);
    tally_write(
        &mut port.counters,
        r,
        bytes.len(),
        vnet::HEADER_LEN,
        segs,
        udp,
    )
}

/// Counts one write (one system call) and its outcome.
fn tally_write(
    c: &mut PortCounters,
    r: io::Result<usize>,
    want: usize,
    hdr: usize,
    segs: u64,
    udp: bool,
) -> bool {
    let ok = tally(c, r, want, hdr, segs, udp);
    c.tx_writes += u64::from(ok);
    ok
}

/// Counts the outcome of sending one datagram of `want` bytes (a virtio
/// header of `hdr` bytes and a frame carrying `segs` frames): sent, or
/// refused under its reason, every frame it carries. True when sent.
pub(super) fn tally(
    c: &mut PortCounters,
    r: io::Result<usize>,
    want: usize,
    hdr: usize,
    segs: u64,
    udp: bool,
) -> bool {
    match r {
        Ok(n) if n == want => {
            c.tx_frames += segs;
            c.tx_bytes += (n - hdr) as u64;
            if segs > 1 {
                c.tx_gro += 1;
                c.tx_uso += u64::from(udp);
            }
            true
        }
        Ok(_) => {
            c.tx_drop_busy += segs;
            false
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            c.tx_drop_busy += segs;
            false
        }
        Err(_) => {
            c.tx_errors += segs;
            false
        }
    }
}

/// One frame, with a zeroed virtio header on a vnet port (writev, no copy;
/// staged for the round's sendmmsg on a port that batches). True when the
/// kernel took it or it is staged.
pub(crate) fn send_plain(port: &mut Port, frame: &[u8]) -> bool {
    let c = &mut port.counters;
    if frame.len() < ethernet::HEADER_LEN {
        c.tx_drop_short += 1;
        return false;
    }
    let mtu = port.dev.tx_mtu();
    if frame.len() > max_frame_len(mtu) {
        c.tx_drop_oversize += 1;
        port.warn_oversize("to", frame.len(), mtu);
        return false;
    }
    const ZERO: [u8; vnet::HEADER_LEN] = [0; vnet::HEADER_LEN];
    if port.dev.offloads().vnet_hdr {
        if tx_batch::stage(port, &[&ZERO, frame], vnet::HEADER_LEN, 1, false) {
            return true;
        }
        tx_batch::flush(port);
        let r = port.dev.write_vnet(&ZERO, frame);
        let want = vnet::HEADER_LEN + frame.len();
        tally_write(&mut port.counters, r, want, vnet::HEADER_LEN, 1, false)
    } else {
        let r = port.dev.write(frame);
        tally_write(&mut port.counters, r, frame.len(), 0, 1, false)
    }
}
