//! Batched receive: one recvmmsg fills up to RX_BATCH slots, and with UDP
//! GRO on, the kernel may put a whole train of equal-sized datagrams from
//! one source into a single slot (a control message gives the segment
//! size). Either way the caller sees plain datagrams, one at a time, through
//! `RxBatch::datagrams`.
//!
//! Memory: RX_BATCH x RX_SLOT bytes (2 MiB), allocated once per socket
//! owner; pages the kernel never writes to are never touched.

use std::io;
use std::net::SocketAddr;

use super::socket::{UdpSocket, RX_DATAGRAM_MAX};
use crate::sys::mmsg::{self, Received, RecvCmsg};
use crate::sys::socket::SockAddr;

/// recvmmsg entries per call.
pub const RX_BATCH: usize = 32;
/// One entry's buffer: a GRO train is at most 64 KiB (the largest IP
/// packet the kernel builds); smaller, and a train would arrive truncated.
pub const RX_SLOT: usize = 1 << 16;
/// Receive buffers for one recvmmsg call.
pub struct RxBatch {
    bufs: Box<[u8]>,
    addrs: Box<[SockAddr]>,
    ctrl: Box<[RecvCmsg]>,
    /// Length, truncation and GRO segment size of each entry.
    got: [Received; RX_BATCH],
    count: usize,
}

impl Default for RxBatch {
    fn default() -> Self {
        Self::new()
    }
}

/// One datagram out of a batch.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    /// At most RX_DATAGRAM_MAX bytes.
    pub data: &'a [u8],
    /// None if the source was not an IP address.
    pub from: Option<SocketAddr>,
    /// Longer than RX_DATAGRAM_MAX, or cut short by the kernel: drop it.
    pub oversize: bool,
}

impl RxBatch {
    pub fn new() -> RxBatch {
        RxBatch {
            bufs: vec![0u8; RX_BATCH * RX_SLOT].into_boxed_slice(),
            addrs: vec![SockAddr::default(); RX_BATCH].into_boxed_slice(),
            ctrl: vec![RecvCmsg::default(); RX_BATCH].into_boxed_slice(),
            got: [Received::default(); RX_BATCH],
            count: 0,
        }
    }

    /// Entries filled by the last recv_batch.
    /// Forgets the batch, so it is never processed twice.
    pub fn clear(&mut self) {
        self.count = 0;
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// GRO segment size of entry `i` (0: a single datagram).
    pub fn segment_size(&self, i: usize) -> usize {
        if i < self.count {
            self.got[i].segment_size
        } else {
            0
        }
    }

    /// The datagrams of entry `i`: one, or a GRO train split at its
    /// segment size (the last segment may be shorter).
    pub fn datagrams(&self, i: usize) -> Datagrams<'_> {
        if i >= self.count {
            return Datagrams::empty();
        }
        let start = i * RX_SLOT;
        let got = self.got[i];
        let len = got.len.min(RX_SLOT);
        let data = self.bufs.get(start..start + len).unwrap_or(&[]);
        Datagrams {
            data,
            seg: got.segment_size,
            from: self.addrs.get(i).and_then(SockAddr::to_std),
            truncated: got.truncated,
            done: false,
        }
    }
}

/// Iterator over one entry's datagrams. Bounded by the slot: a train of
/// tiny segments yields at most RX_SLOT datagrams (the kernel makes at most
/// 64), each counted and dropped by the caller if it is junk.
pub struct Datagrams<'a> {
    data: &'a [u8],
    seg: usize,
    from: Option<SocketAddr>,
    truncated: bool,
    done: bool,
}

impl Datagrams<'_> {
    fn empty() -> Self {
        Datagrams {
            data: &[],
            seg: 0,
            from: None,
            truncated: false,
            done: true,
        }
    }
}

impl<'a> Iterator for Datagrams<'a> {
    type Item = Datagram<'a>;

    fn next(&mut self) -> Option<Datagram<'a>> {
        if self.done {
            return None;
        }
        let take = match self.seg {
            0 => self.data.len(),
            s => s.min(self.data.len()),
        };
        let (head, rest) = self.data.split_at(take);
        self.data = rest;
        // A zero-length datagram is still one datagram (junk, but counted).
        self.done = rest.is_empty();
        // Only the last piece can have been cut by MSG_TRUNC.
        let cut = self.done && self.truncated;
        Some(Datagram {
            data: head.get(..RX_DATAGRAM_MAX).unwrap_or(head),
            from: self.from,
            oversize: cut || head.len() > RX_DATAGRAM_MAX,
        })
    }
}

impl UdpSocket {
    /// Receives up to `max` (at most RX_BATCH) entries; Ok(0) when nothing
    /// is waiting.
    pub fn recv_batch(&self, batch: &mut RxBatch, max: usize) -> io::Result<usize> {
        // Stale datagrams must never be seen twice, whatever happens below.
        batch.count = 0;
        let max = max.clamp(1, RX_BATCH);
        let n = match mmsg::recv::<RX_BATCH>(
            self.fd(),
            &mut batch.bufs,
            RX_SLOT,
            &mut batch.addrs,
            &mut batch.ctrl,
            &mut batch.got[..max],
        ) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        batch.count = n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::socket::SOCKET_BUFFER_BYTES;

    fn collect(
        b: &UdpSocket,
        batch: &mut RxBatch,
        want: usize,
    ) -> Vec<(Vec<u8>, Option<SocketAddr>, bool)> {
        let mut got = Vec::new();
        for _ in 0..100 {
            if b.recv_batch(batch, RX_BATCH).unwrap() > 0 {
                for i in 0..batch.count() {
                    for d in batch.datagrams(i) {
                        got.push((d.data.to_vec(), d.from, d.oversize));
                    }
                }
            }
            if got.len() >= want {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        got
    }

    /// Real datagrams over loopback through sendto and recvmmsg, with the
    /// v4-mapped source normalised and an oversized datagram flagged.
    #[test]
    fn loopback_batch() {
        let a = UdpSocket::bind(0).unwrap();
        let b = UdpSocket::bind(0).unwrap();
        if crate::sys::ns::is_root() {
            // FORCE lets root pass rmem_max; Linux reports double the request.
            assert!(a.rcvbuf().unwrap() >= SOCKET_BUFFER_BYTES as usize);
        }
        let b_addr: SocketAddr = format!("127.0.0.1:{}", b.local_port().unwrap())
            .parse()
            .unwrap();
        let a_port = a.local_port().unwrap();
        for i in 0..5u8 {
            a.send_to(&[i; 100], b_addr).unwrap();
        }
        a.send_to(&vec![7u8; RX_DATAGRAM_MAX + 10], b_addr).unwrap();
        let mut batch = RxBatch::new();
        let got = collect(&b, &mut batch, 6);
        assert_eq!(got.len(), 6);
        for (i, (d, from, oversize)) in got.iter().take(5).enumerate() {
            assert_eq!(d, &vec![i as u8; 100]);
            assert_eq!(*from, Some(SocketAddr::from(([127, 0, 0, 1], a_port))));
            assert!(!oversize);
        }
        assert!(got[5].2);
        assert_eq!(got[5].0.len(), RX_DATAGRAM_MAX);
        assert_eq!(b.recv_batch(&mut batch, RX_BATCH).unwrap(), 0);
    }

    /// A hand-made GSO send (one sendmsg, UDP_SEGMENT 1000, 3500 bytes)
    /// reaches a GRO socket as one train and splits back into 1000, 1000,
    /// 1000 and 500 bytes; without GRO the kernel splits it itself.
    #[test]
    fn gro_train_splits_into_datagrams() {
        let a = UdpSocket::bind(0).unwrap();
        if !a.gso {
            eprintln!("kernel without UDP_SEGMENT: nothing to test");
            return;
        }
        let payload: Vec<u8> = (0..3500u32).map(|i| (i / 1000) as u8 + 1).collect();
        for gro in [true, false] {
            let mut b = UdpSocket::bind(0).unwrap();
            assert_eq!(b.set_gro(gro), gro, "UDP_GRO needs Linux 5.0");
            let to = SocketAddr::from(([127, 0, 0, 1], b.local_port().unwrap()));
            send_gso(&a, &payload, 1000, to);
            let mut batch = RxBatch::new();
            let got = collect(&b, &mut batch, 4);
            let lens: Vec<usize> = got.iter().map(|g| g.0.len()).collect();
            assert_eq!(lens, [1000, 1000, 1000, 500], "gro {gro}");
            for (k, (d, _, oversize)) in got.iter().enumerate() {
                assert!(d.iter().all(|&x| x == k as u8 + 1));
                assert!(!oversize);
            }
            if gro {
                assert_eq!(batch.count(), 1, "one train");
                assert_eq!(batch.segment_size(0), 1000);
            }
        }
    }

    /// Entry shapes the kernel should never produce still split safely:
    /// empty, a segment size past the data, a 1-byte segment size, a cut
    /// train, a single datagram over the limit.
    #[test]
    fn odd_entries_split_without_panic() {
        let mut b = RxBatch::new();
        let shapes = [
            (0usize, 0usize, false),
            (100, 5000, false),
            (10, 1, false),
            (2500, 1000, true),
            (RX_SLOT, 0, false),
            (RX_SLOT + 7, 3, true),
        ];
        for (i, &(len, seg, cut)) in shapes.iter().enumerate() {
            b.got[i] = Received {
                len,
                truncated: cut,
                segment_size: seg,
            };
        }
        b.count = shapes.len();
        let split = |i: usize| -> Vec<(usize, bool)> {
            b.datagrams(i).map(|d| (d.data.len(), d.oversize)).collect()
        };
        assert_eq!(split(0), [(0, false)]);
        assert_eq!(split(1), [(100, false)]);
        assert_eq!(split(2), vec![(1, false); 10]);
        assert_eq!(split(3), [(1000, false), (1000, false), (500, true)]);
        assert_eq!(split(4), [(RX_DATAGRAM_MAX, true)]);
        // A length past the slot is clamped to it.
        assert_eq!(split(5).len(), RX_SLOT.div_ceil(3));
        assert_eq!(split(6).len(), 0, "past count: nothing");
    }

    /// One UDP GSO message: `payload` cut by the kernel into datagrams of
    /// `seg` bytes (the last may be shorter).
    fn send_gso(a: &UdpSocket, payload: &[u8], seg: u16, to: SocketAddr) {
        let seg = usize::from(seg);
        let lens: Vec<usize> = payload.chunks(seg).map(<[u8]>::len).collect();
        let plan = [mmsg::Planned {
            first: 0,
            count: lens.len(),
        }];
        let names = [SockAddr::from_std(to, a.v6).unwrap()];
        let mut sent = None;
        mmsg::send::<64>(a.fd(), payload, seg, &lens, &plan, &names, |_, r| {
            sent = Some(r.map_err(|e| e.to_string()));
            None
        });
        assert_eq!(sent, Some(Ok(1)));
    }
}
