//! The transmit side of ports: plain writes (with a zeroed virtio header on
//! an offload port) and the pool of super-frames `send_gro` builds.
//!
//! The pool is shared by all ports and holds at most [`GRO_SLOTS`] flows,
//! so its memory (~64 KB a slot) does not grow with the number of ports;
//! several flows toward one VM coalesce side by side. Order is kept where
//! it matters: within a flow (a segment that does not continue its flow's
//! super-frame writes that first), and for anything that is not a
//! coalescable segment (it writes all of its port's held frames first).

use std::collections::BTreeMap;
use std::io;

use super::gro::{Gro, TcpSeg};
use super::ports::{max_frame_len, Port};
use super::PortId;
use crate::wire::{ethernet, vnet};

/// Flows held at once across all ports. When a new flow finds none free,
/// the one started longest ago is written out to make room.
pub const GRO_SLOTS: usize = 16;

#[derive(Debug)]
struct Slot {
    port: PortId,
    /// When its super-frame was started: the eviction order.
    started: u64,
    gro: Box<Gro>,
}

#[derive(Debug, Default)]
pub(crate) struct GroPool {
    /// Allocated on demand, never more than GRO_SLOTS.
    slots: Vec<Slot>,
    tick: u64,
}

impl GroPool {
    /// Takes a coalescable segment for `port`: merged into its flow's
    /// super-frame, or starting one. True when taken.
    pub(crate) fn push(
        &mut self,
        ports: &mut BTreeMap<PortId, Port>,
        id: PortId,
        frame: &[u8],
        seg: &TcpSeg,
    ) -> bool {
        let flow = self
            .slots
            .iter()
            .position(|s| s.port == id && !s.gro.is_empty() && s.gro.same_flow(frame, seg));
        let i = match flow {
            Some(i) => {
                if self.slots[i].gro.append(frame, seg) {
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
        if slot.gro.start(frame, seg) {
            slot.port = id;
            slot.started = self.tick;
            return true;
        }
        ports.get_mut(&id).is_some_and(|p| send_plain(p, frame))
    }

    /// An empty slot: a free one, a new one, or the oldest written out.
    fn free_slot(&mut self, ports: &mut BTreeMap<PortId, Port>) -> usize {
        if let Some(i) = self.slots.iter().position(|s| s.gro.is_empty()) {
            return i;
        }
        if self.slots.len() < GRO_SLOTS {
            self.slots.push(Slot {
                port: 0,
                started: 0,
                gro: Box::new(Gro::new()),
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
            Some(p) => write_gro(p, &mut slot.gro),
            None => {
                slot.gro.take();
                false
            }
        }
    }

    /// Writes every super-frame held for `port` (before something that must
    /// not overtake them).
    pub(crate) fn flush_port(&mut self, id: PortId, port: &mut Port) -> usize {
        let mut n = 0;
        for s in self.slots.iter_mut().filter(|s| s.port == id) {
            n += usize::from(write_gro(port, &mut s.gro));
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
            s.gro.take();
        }
    }
}

/// Writes a held super-frame (if any) to `port`; true when the kernel took
/// it. A refusal loses all its segments, counted as such.
fn write_gro(port: &mut Port, g: &mut Gro) -> bool {
    if g.is_empty() {
        return false;
    }
    let segs = g.segments() as u64;
    let bytes = g.take();
    let c = &mut port.counters;
    match port.tap.write(bytes) {
        Ok(n) if n == bytes.len() => {
            c.tx_writes += 1;
            c.tx_frames += segs;
            c.tx_bytes += (n - vnet::HEADER_LEN) as u64;
            if segs > 1 {
                c.tx_gro += 1;
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

/// One frame, with a zeroed virtio header on a vnet port (writev, no copy).
pub(crate) fn send_plain(port: &mut Port, frame: &[u8]) -> bool {
    let c = &mut port.counters;
    if frame.len() < ethernet::HEADER_LEN {
        c.tx_drop_short += 1;
        return false;
    }
    if frame.len() > max_frame_len(port.tap.mtu()) {
        c.tx_drop_oversize += 1;
        return false;
    }
    const ZERO: [u8; vnet::HEADER_LEN] = [0; vnet::HEADER_LEN];
    let (r, hdr) = if port.tap.offloads().vnet_hdr {
        (port.tap.write_vnet(&ZERO, frame), vnet::HEADER_LEN)
    } else {
        (port.tap.write(frame), 0)
    };
    match r {
        Ok(n) if n == frame.len() + hdr => {
            c.tx_writes += 1;
            c.tx_frames += 1;
            c.tx_bytes += frame.len() as u64;
            true
        }
        Ok(_) => {
            c.tx_drop_busy += 1;
            false
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            c.tx_drop_busy += 1;
            false
        }
        Err(_) => {
            c.tx_errors += 1;
            false
        }
    }
}
