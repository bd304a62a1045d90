//! Batched send: datagrams are encrypted straight into TX_BATCH slots
//! allocated once, and one flush hands them all to the kernel with
//! sendmmsg. Runs of datagrams to the same endpoint with the same size (the
//! last may be shorter) go as one UDP GSO message (UDP_SEGMENT): the kernel
//! walks the stack once and cuts the train into datagrams at the device, or
//! never at all when the receiver on loopback asked for GRO.
//!
//! GSO needs checksum offload on the route's device; where the kernel says
//! EIO or EINVAL to a GSO message, the socket stops using it for good and the
//! same datagrams go again one message each. EMSGSIZE (a segment over the
//! path MTU) resends that run one by one but keeps GSO for the others;
//! a single datagram over the path MTU is dropped (the socket sets DF).

use std::net::SocketAddr;

use super::socket::{UdpSocket, RX_DATAGRAM_MAX};
use crate::sys::mmsg::{self, Planned};
use crate::sys::socket::SockAddr;

/// Datagrams one flush carries; a full batch flushes by itself.
pub const TX_BATCH: usize = 64;
/// One datagram's room: anything a meshwire peer accepts (RX_DATAGRAM_MAX).
pub const TX_SLOT: usize = RX_DATAGRAM_MAX;
/// The kernel's UDP_MAX_SEGMENTS was 64 before Linux 6.9.
const GSO_MAX_SEGMENTS: usize = 64;
/// A GSO message is one IP packet before segmentation: under 64 KiB with
/// room for IPv6 + UDP headers.
const GSO_MAX_BYTES: usize = 65_000;

/// Queued datagrams and their destinations. Holds no pointers (the
/// sendmmsg headers are built on the stack per flush), so it is Send.
pub struct TxBatch {
    bufs: Box<[u8]>,
    lens: [usize; TX_BATCH],
    dsts: [SocketAddr; TX_BATCH],
    /// Socket addresses of one flush's messages.
    names: Box<[SockAddr]>,
    count: usize,
}

impl Default for TxBatch {
    fn default() -> Self {
        Self::new()
    }
}

/// What became of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// The socket buffer was full: dropped.
    WouldBlock,
    /// EMSGSIZE: longer than the path MTU, and the socket forbids
    /// fragmentation: dropped.
    TooBig,
    /// Any other error (unreachable family, too big...): dropped.
    Failed,
}

/// Batch-size figures of one flush, added to the tunnel counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlushStats {
    pub sendmmsg_calls: u64,
    pub messages: u64,
    pub gso_messages: u64,
    pub gso_segments: u64,
    pub gso_fallbacks: u64,
    pub gso_too_big: u64,
    pub most_messages_per_call: u64,
}

impl TxBatch {
    pub fn new() -> TxBatch {
        TxBatch {
            bufs: vec![0u8; TX_BATCH * TX_SLOT].into_boxed_slice(),
            lens: [0; TX_BATCH],
            dsts: [SocketAddr::from(([0, 0, 0, 0], 0)); TX_BATCH],
            names: vec![SockAddr::default(); TX_BATCH].into_boxed_slice(),
            count: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn is_full(&self) -> bool {
        self.count >= TX_BATCH
    }

    /// The next free slot, to encrypt into; None when full.
    pub fn slot(&mut self) -> Option<&mut [u8]> {
        if self.is_full() {
            return None;
        }
        let start = self.count * TX_SLOT;
        self.bufs.get_mut(start..start + TX_SLOT)
    }

    /// Takes the `len` bytes at `offset` of the slot `slot()` returned as
    /// the next datagram (moved to the slot's start if need be). False if
    /// the batch is full or the range lies outside the slot.
    pub fn commit(&mut self, offset: usize, len: usize, to: SocketAddr) -> bool {
        let Some(end) = offset.checked_add(len).filter(|&e| e <= TX_SLOT) else {
            return false;
        };
        let i = self.count;
        let Some(slot) = self.slot() else {
            return false;
        };
        if offset != 0 {
            slot.copy_within(offset..end, 0);
        }
        self.lens[i] = len;
        self.dsts[i] = to;
        self.count += 1;
        true
    }

    /// Queues a copy of `msg`. False if full or longer than a slot.
    pub fn push(&mut self, msg: &[u8], to: SocketAddr) -> bool {
        match self.slot().and_then(|s| s.get_mut(..msg.len())) {
            Some(dst) => dst.copy_from_slice(msg),
            None => return false,
        }
        self.commit(0, msg.len(), to)
    }

    /// Datagram `i` as queued.
    pub fn datagram(&self, i: usize) -> &[u8] {
        let len = self.lens.get(i).copied().unwrap_or(0);
        self.bufs.get(i * TX_SLOT..i * TX_SLOT + len).unwrap_or(&[])
    }

    /// Where the datagrams i.. can go as one GSO message: how many of them.
    fn gso_run(&self, i: usize) -> usize {
        let seg = self.lens[i];
        let dst = self.dsts[i];
        let mut n = 1;
        let mut total = seg;
        while i + n < self.count && n < GSO_MAX_SEGMENTS {
            let len = self.lens[i + n];
            if self.dsts[i + n] != dst || len > seg || total + len > GSO_MAX_BYTES {
                break;
            }
            total += len;
            n += 1;
            // Only the last segment may be shorter.
            if len < seg {
                break;
            }
        }
        n
    }
}

impl UdpSocket {
    /// Sends every queued datagram (GSO runs as one message when `gso` is
    /// asked for and the socket still may), reports each datagram's fate in
    /// order, and empties the batch.
    pub fn send_batch(
        &mut self,
        tx: &mut TxBatch,
        gso: bool,
        report: &mut dyn FnMut(&[u8], Outcome),
    ) -> FlushStats {
        let mut stats = FlushStats::default();
        let mut next = 0;
        let mut plain_until = 0;
        // Each pass sends everything from `next`, or stops at a refused GSO
        // message and the next pass resends its datagrams one by one. A pass
        // starts past the previous one or with GSO just turned off, so there
        // are at most TX_BATCH + 1 of them.
        while next < tx.count {
            let use_gso = gso && self.gso;
            match self.send_pass(tx, next, plain_until, use_gso, &mut stats, report) {
                Refused::None => break,
                Refused::Offload(first) => {
                    // No checksum offload (EIO) or a limit (EINVAL): the
                    // socket's route will not do GSO; stop trying.
                    self.gso = false;
                    stats.gso_fallbacks += 1;
                    next = first;
                }
                Refused::TooBig(first, n) => {
                    // A segment exceeds the path MTU: each datagram is tried
                    // alone (the ones that fit go; with DF the others fail
                    // as TooBig); GSO stays on for other runs.
                    stats.gso_too_big += 1;
                    next = first;
                    plain_until = first + n;
                }
            }
        }
        tx.count = 0;
        stats
    }

    /// One sendmmsg round from datagram `from`; datagrams before
    /// `plain_until` go one message each.
    fn send_pass(
        &self,
        tx: &mut TxBatch,
        from: usize,
        plain_until: usize,
        gso: bool,
        stats: &mut FlushStats,
        report: &mut dyn FnMut(&[u8], Outcome),
    ) -> Refused {
        let mut plan = [Planned::default(); TX_BATCH];
        let mut planned = 0;
        let mut i = from;
        while i < tx.count {
            let n = if gso && i >= plain_until {
                tx.gso_run(i)
            } else {
                1
            };
            plan[planned] = Planned { first: i, count: n };
            // An IPv6 endpoint on an IPv4-only socket: an empty name, which
            // the kernel refuses for that message alone.
            tx.names[planned] = SockAddr::from_std(tx.dsts[i], self.v6).unwrap_or_default();
            planned += 1;
            i += n;
        }
        let tx = &*tx;
        let plan = &plan[..planned];
        let fate = |m: usize, o: Outcome, report: &mut dyn FnMut(&[u8], Outcome)| {
            let p = plan[m];
            for k in p.first..p.first + p.count {
                report(tx.datagram(k), o);
            }
        };
        let mut refused = Refused::None;
        let lens = &tx.lens[..tx.count];
        let names = &tx.names[..planned];
        mmsg::send::<TX_BATCH>(self.fd(), &tx.bufs, TX_SLOT, lens, plan, names, |m, r| {
            stats.sendmmsg_calls += 1;
            let err = match r {
                Ok(r) if r > 0 => {
                    stats.most_messages_per_call = stats.most_messages_per_call.max(r as u64);
                    for (k, p) in plan.iter().enumerate().skip(m).take(r) {
                        stats.messages += 1;
                        if p.count > 1 {
                            stats.gso_messages += 1;
                            stats.gso_segments += p.count as u64;
                        }
                        fate(k, Outcome::Sent, report);
                    }
                    return Some(m + r);
                }
                Ok(_) => None,
                Err(e) => e.raw_os_error(),
            };
            let gso_msg = plan[m].count > 1;
            match err {
                Some(libc::EINTR) => Some(m),
                Some(libc::EAGAIN) => {
                    // Socket buffer full: what is left is dropped, as a
                    // single sendto would have dropped it.
                    for k in m..planned {
                        fate(k, Outcome::WouldBlock, report);
                    }
                    None
                }
                Some(libc::EIO) | Some(libc::EINVAL) if gso_msg => {
                    refused = Refused::Offload(plan[m].first);
                    None
                }
                Some(libc::EMSGSIZE) if gso_msg => {
                    refused = Refused::TooBig(plan[m].first, plan[m].count);
                    None
                }
                Some(libc::EMSGSIZE) => {
                    fate(m, Outcome::TooBig, report);
                    Some(m + 1)
                }
                _ => {
                    fate(m, Outcome::Failed, report);
                    Some(m + 1)
                }
            }
        });
        refused
    }
}

/// A GSO message the kernel refused, by its first datagram.
enum Refused {
    None,
    /// EIO / EINVAL: GSO is unusable on this socket's route.
    Offload(usize),
    /// EMSGSIZE: a segment exceeds the path MTU; (first, datagrams).
    TooBig(usize, usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(items: &[(usize, u16)]) -> TxBatch {
        let mut b = TxBatch::new();
        for &(len, port) in items {
            assert!(b.push(&vec![1u8; len], SocketAddr::from(([127, 0, 0, 1], port))));
        }
        b
    }

    fn runs(b: &TxBatch) -> Vec<usize> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let n = b.gso_run(i);
            out.push(n);
            i += n;
        }
        out
    }

    /// Equal sizes to one endpoint form a run; a shorter datagram ends it;
    /// a longer one or another endpoint starts a new one.
    #[test]
    fn gso_runs() {
        let b = batch(&[
            (1000, 1),
            (1000, 1),
            (1000, 1),
            (400, 1), // shorter: last of the run
            (400, 1),
            (1000, 1), // longer: new run
            (1000, 2), // other endpoint
            (1000, 2),
            (60, 1),
        ]);
        assert_eq!(runs(&b), [4, 1, 1, 2, 1]);
    }

    #[test]
    fn gso_runs_are_bounded() {
        // 64 segments at most...
        let b = batch(&[(100, 1); TX_BATCH]);
        assert_eq!(runs(&b), [GSO_MAX_SEGMENTS]);
        // ...and under 64 KiB: 9000-byte datagrams go 7 at a time.
        let b = batch(&[(9000, 1); 10]);
        assert_eq!(runs(&b), [7, 3]);
    }

    #[test]
    fn full_batch_and_oversize_are_refused() {
        let mut b = batch(&[(10, 1); TX_BATCH]);
        assert!(b.is_full());
        assert!(!b.push(&[0; 10], SocketAddr::from(([127, 0, 0, 1], 1))));
        let mut b = TxBatch::new();
        assert!(!b.push(&vec![0; TX_SLOT + 1], SocketAddr::from(([127, 0, 0, 1], 1))));
        assert!(!b.commit(TX_SLOT - 10, 11, SocketAddr::from(([127, 0, 0, 1], 1))));
        assert!(b.is_empty());
        // A message written mid-slot is moved to its start.
        let s = b.slot().unwrap();
        s[100..105].copy_from_slice(b"hello");
        assert!(b.commit(100, 5, SocketAddr::from(([127, 0, 0, 1], 1))));
        assert_eq!(b.datagram(0), b"hello");
    }
}
