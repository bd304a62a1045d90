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

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;

use super::socket::{to_sockaddr, UdpSocket, RX_DATAGRAM_MAX};

/// Datagrams one flush carries; a full batch flushes by itself.
pub const TX_BATCH: usize = 64;
/// One datagram's room: anything a meshwire peer accepts (RX_DATAGRAM_MAX).
pub const TX_SLOT: usize = RX_DATAGRAM_MAX;
/// The kernel's UDP_MAX_SEGMENTS was 64 before Linux 6.9.
const GSO_MAX_SEGMENTS: usize = 64;
/// A GSO message is one IP packet before segmentation: under 64 KiB with
/// room for IPv6 + UDP headers.
const GSO_MAX_BYTES: usize = 65_000;
const CTRL_WORDS: usize = 4;

/// Queued datagrams and their destinations. Holds no pointers (the
/// sendmmsg headers are built on the stack per flush), so it is Send.
pub struct TxBatch {
    bufs: Box<[u8]>,
    lens: [usize; TX_BATCH],
    dsts: [SocketAddr; TX_BATCH],
    /// Socket addresses of one flush's messages.
    names: Box<[libc::sockaddr_storage]>,
    ctrl: Box<[[u64; CTRL_WORDS]]>,
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
            // SAFETY: all-zero sockaddr_storage is valid (AF_UNSPEC).
            names: (0..TX_BATCH).map(|_| unsafe { zeroed() }).collect(),
            ctrl: vec![[0u64; CTRL_WORDS]; TX_BATCH].into_boxed_slice(),
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
        // (first datagram, datagrams) per message.
        let mut plan = [(0usize, 0usize); TX_BATCH];
        let mut planned = 0;
        let mut i = from;
        while i < tx.count {
            let n = if gso && i >= plain_until {
                tx.gso_run(i)
            } else {
                1
            };
            plan[planned] = (i, n);
            planned += 1;
            i += n;
        }
        // SAFETY: all-zero is a valid iovec/mmsghdr.
        let mut iov: [libc::iovec; TX_BATCH] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; TX_BATCH] = unsafe { zeroed() };
        for (k, v) in iov.iter_mut().enumerate().take(tx.count).skip(from) {
            *v = libc::iovec {
                iov_base: tx.bufs[k * TX_SLOT..].as_mut_ptr().cast(),
                iov_len: tx.lens[k],
            };
        }
        for (m, &(first, n)) in plan.iter().take(planned).enumerate() {
            let Some((sa, salen)) = to_sockaddr(tx.dsts[first], self.v6) else {
                // An IPv6 endpoint on an IPv4-only socket: the kernel would
                // refuse it; leave the message empty so it fails there.
                continue;
            };
            tx.names[m] = sa;
            let h = &mut msgs[m].msg_hdr;
            h.msg_name = (&mut tx.names[m] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = salen;
            h.msg_iov = &mut iov[first];
            h.msg_iovlen = n as _;
            if n > 1 {
                set_segment_size(h, &mut tx.ctrl[m], tx.lens[first]);
            }
        }
        let tx = &*tx;
        let fate = |m: usize, o: Outcome, report: &mut dyn FnMut(&[u8], Outcome)| {
            let (first, n) = plan[m];
            for k in first..first + n {
                report(tx.datagram(k), o);
            }
        };
        let mut m = 0;
        while m < planned {
            // SAFETY: msgs[m..planned] are initialised headers whose
            // pointers refer to iov, tx.names, tx.ctrl and tx.bufs, all alive
            // and unmoved for the call.
            let r = unsafe {
                libc::sendmmsg(
                    self.raw_fd(),
                    msgs[m..].as_mut_ptr(),
                    (planned - m) as libc::c_uint,
                    0,
                )
            };
            stats.sendmmsg_calls += 1;
            if r > 0 {
                let r = (r as usize).min(planned - m);
                stats.most_messages_per_call = stats.most_messages_per_call.max(r as u64);
                for (k, &(_, n)) in plan.iter().enumerate().skip(m).take(r) {
                    stats.messages += 1;
                    if n > 1 {
                        stats.gso_messages += 1;
                        stats.gso_segments += n as u64;
                    }
                    fate(k, Outcome::Sent, report);
                }
                m += r;
                continue;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) if r < 0 => {}
                Some(libc::EAGAIN) if r < 0 => {
                    // Socket buffer full: what is left is dropped, as a
                    // single sendto would have dropped it.
                    for k in m..planned {
                        fate(k, Outcome::WouldBlock, report);
                    }
                    return Refused::None;
                }
                Some(libc::EIO) | Some(libc::EINVAL) if r < 0 && plan[m].1 > 1 => {
                    return Refused::Offload(plan[m].0);
                }
                Some(libc::EMSGSIZE) if r < 0 && plan[m].1 > 1 => {
                    return Refused::TooBig(plan[m].0, plan[m].1);
                }
                Some(libc::EMSGSIZE) => {
                    fate(m, Outcome::TooBig, report);
                    m += 1;
                }
                _ => {
                    fate(m, Outcome::Failed, report);
                    m += 1;
                }
            }
        }
        Refused::None
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

/// Puts a UDP_SEGMENT control message with `seg` into `h`, using `ctrl`.
fn set_segment_size(h: &mut libc::msghdr, ctrl: &mut [u64; CTRL_WORDS], seg: usize) {
    *ctrl = [0; CTRL_WORDS];
    h.msg_control = ctrl.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE(2) (24) fits in ctrl (32 bytes); CMSG_FIRSTHDR is
    // then non-null and its data lies inside ctrl.
    unsafe {
        h.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as _;
        let c = libc::CMSG_FIRSTHDR(h);
        if c.is_null() {
            h.msg_controllen = 0;
            return;
        }
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg as u16);
    }
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
