//! Batched receive: one recvmmsg fills up to RX_BATCH slots, and with UDP
//! GRO on, the kernel may put a whole train of equal-sized datagrams from
//! one source into a single slot (a control message gives the segment
//! size). Either way the caller sees plain datagrams, one at a time, through
//! `RxBatch::datagrams`.
//!
//! Memory: RX_BATCH x RX_SLOT bytes (2 MiB), allocated once per socket
//! owner; pages the kernel never writes to are never touched.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;

use super::socket::{from_sockaddr, UdpSocket, RX_DATAGRAM_MAX};

/// recvmmsg entries per call.
pub const RX_BATCH: usize = 32;
/// One entry's buffer: a GRO train is at most 64 KiB (the largest IP
/// packet the kernel builds); smaller, and a train would arrive truncated.
pub const RX_SLOT: usize = 1 << 16;
/// Control buffer per entry, in u64 for cmsghdr alignment: room for the
/// UDP_GRO cmsg (16-byte header + int) with slack for one more.
const CTRL_WORDS: usize = 8;

/// Receive buffers for one recvmmsg call.
pub struct RxBatch {
    bufs: Box<[u8]>,
    addrs: Box<[libc::sockaddr_storage]>,
    ctrl: Box<[[u64; CTRL_WORDS]]>,
    lens: [usize; RX_BATCH],
    /// GRO segment size of each entry; 0 when it holds one datagram.
    segs: [usize; RX_BATCH],
    truncated: [bool; RX_BATCH],
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
            // SAFETY: all-zero sockaddr_storage is valid (AF_UNSPEC).
            addrs: (0..RX_BATCH).map(|_| unsafe { zeroed() }).collect(),
            ctrl: vec![[0u64; CTRL_WORDS]; RX_BATCH].into_boxed_slice(),
            lens: [0; RX_BATCH],
            segs: [0; RX_BATCH],
            truncated: [false; RX_BATCH],
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
            self.segs[i]
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
        let len = self.lens[i].min(RX_SLOT);
        let data = self.bufs.get(start..start + len).unwrap_or(&[]);
        Datagrams {
            data,
            seg: self.segs[i],
            from: self.addrs.get(i).and_then(from_sockaddr),
            truncated: self.truncated[i],
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
        // SAFETY: all-zero is a valid iovec/mmsghdr; the arrays are filled
        // with pointers into `batch`, which outlives the call.
        let mut iov: [libc::iovec; RX_BATCH] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; RX_BATCH] = unsafe { zeroed() };
        for (i, (((buf, addr), ctrl), m)) in batch
            .bufs
            .chunks_exact_mut(RX_SLOT)
            .zip(batch.addrs.iter_mut())
            .zip(batch.ctrl.iter_mut())
            .zip(msgs.iter_mut())
            .enumerate()
        {
            iov[i] = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            m.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            m.msg_hdr.msg_iov = &mut iov[i];
            m.msg_hdr.msg_iovlen = 1;
            m.msg_hdr.msg_control = ctrl.as_mut_ptr().cast();
            m.msg_hdr.msg_controllen = size_of::<[u64; CTRL_WORDS]>() as _;
        }
        // SAFETY: msgs points at `max` initialised headers.
        let n = unsafe {
            libc::recvmmsg(
                self.raw_fd(),
                msgs.as_mut_ptr(),
                max as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let n = (n as usize).min(max);
        for (i, m) in msgs.iter().take(n).enumerate() {
            batch.lens[i] = m.msg_len as usize;
            batch.truncated[i] = m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            batch.segs[i] = gro_segment_size(&m.msg_hdr);
        }
        batch.count = n;
        Ok(n)
    }
}

/// The UDP_GRO control message's segment size, 0 if there is none.
fn gro_segment_size(hdr: &libc::msghdr) -> usize {
    // SAFETY: the kernel filled msg_control up to msg_controllen (it lowers
    // it to what it wrote); the CMSG_* macros stay inside that range.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP
                && (*c).cmsg_type == libc::UDP_GRO
                && (*c).cmsg_len as usize
                    >= libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as usize
            {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                return usize::try_from(v).unwrap_or(0);
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    0
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
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
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
            b.lens[i] = len;
            b.segs[i] = seg;
            b.truncated[i] = cut;
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

    fn send_gso(a: &UdpSocket, payload: &[u8], seg: u16, to: SocketAddr) {
        let (mut sa, salen) = crate::tunnel::socket::to_sockaddr(to, a.v6).unwrap();
        let mut iov = libc::iovec {
            iov_base: payload.as_ptr() as *mut _,
            iov_len: payload.len(),
        };
        let mut ctrl = [0u64; CTRL_WORDS];
        // SAFETY: every pointer refers to a local that outlives sendmsg.
        unsafe {
            let mut m: libc::msghdr = zeroed();
            m.msg_name = (&mut sa as *mut libc::sockaddr_storage).cast();
            m.msg_namelen = salen;
            m.msg_iov = &mut iov;
            m.msg_iovlen = 1;
            m.msg_control = ctrl.as_mut_ptr().cast();
            m.msg_controllen = libc::CMSG_SPACE(2) as _;
            let c = libc::CMSG_FIRSTHDR(&m);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = libc::UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(2) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg);
            assert_eq!(libc::sendmsg(a.raw_fd(), &m, 0), payload.len() as isize);
        }
    }
}
