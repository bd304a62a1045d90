//! The underlay UDP socket, straight on libc: one nonblocking socket bound to
//! `[::]:port` with IPV6_V6ONLY off, so IPv4 and IPv6 peers share it (IPv4
//! peers appear as `::ffff:a.b.c.d` and are normalised back to IPv4). Hosts
//! without IPv6 get a plain IPv4 socket.
//!
//! Receive is batched with recvmmsg into buffers allocated once.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Socket buffers we ask for: at ~1.5 KB per datagram this absorbs a few
/// thousand packets of burst, which the 208 KiB default does not (see the
/// performance notes in DESIGN.md).
pub const SOCKET_BUFFER_BYTES: libc::c_int = 4 << 20;
/// Datagrams per recvmmsg call.
pub const RX_BATCH: usize = 32;
/// Largest datagram we take in; bigger ones arrive truncated and are counted.
/// Enough for a 9000-byte jumbo underlay.
pub const RX_DATAGRAM_MAX: usize = 9216;

pub struct UdpSocket {
    fd: OwnedFd,
    /// AF_INET6 dual-stack (true) or AF_INET only (false).
    v6: bool,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: v lives for the call and its size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    cvt(r).map(|_| ())
}

impl UdpSocket {
    /// Binds `[::]:port` dual-stack, or `0.0.0.0:port` without IPv6.
    /// Port 0 lets the kernel choose (tests); see `local_port`.
    pub fn bind(port: u16) -> io::Result<UdpSocket> {
        match Self::bind_family(port, true) {
            Ok(s) => Ok(s),
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                Self::bind_family(port, false)
            }
            Err(e) => Err(e),
        }
    }

    fn bind_family(port: u16, v6: bool) -> io::Result<UdpSocket> {
        let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
        // SAFETY: plain syscall; the fd is owned right after.
        let raw = cvt(unsafe {
            libc::socket(
                family,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        // SAFETY: raw is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if v6 {
            setsockopt_int(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0)?;
        }
        Self::size_buffers(raw);
        let any = if v6 {
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0))
        } else {
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
        };
        let (sa, len) =
            to_sockaddr(any, v6).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: sa is a valid sockaddr of length len.
        cvt(unsafe { libc::bind(raw, (&sa as *const libc::sockaddr_storage).cast(), len) })?;
        Ok(UdpSocket { fd, v6 })
    }

    /// FORCE variants pass net.core.{r,w}mem_max (needs CAP_NET_ADMIN, which
    /// works even inside a child netns); without it take what the limit allows.
    fn size_buffers(fd: RawFd) {
        for (force, plain) in [
            (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
            (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        ] {
            if setsockopt_int(fd, libc::SOL_SOCKET, force, SOCKET_BUFFER_BYTES).is_err() {
                let _ = setsockopt_int(fd, libc::SOL_SOCKET, plain, SOCKET_BUFFER_BYTES);
            }
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn is_dual_stack(&self) -> bool {
        self.v6
    }

    pub fn local_port(&self) -> io::Result<u16> {
        // SAFETY: storage is large enough for any address; len tells its size.
        let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        cvt(unsafe {
            libc::getsockname(
                self.raw_fd(),
                (&mut ss as *mut libc::sockaddr_storage).cast(),
                &mut len,
            )
        })?;
        from_sockaddr(&ss)
            .map(|a| a.port())
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
    }

    /// The kernel's receive buffer size after our request (doubled by Linux).
    pub fn rcvbuf(&self) -> io::Result<usize> {
        let mut v: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: v and len are valid for the call.
        cvt(unsafe {
            libc::getsockopt(
                self.raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        })?;
        Ok(usize::try_from(v).unwrap_or(0))
    }

    /// One datagram; `WouldBlock` when the send buffer is full.
    pub fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        let (sa, len) = to_sockaddr(to, self.v6)
            .ok_or_else(|| io::Error::from(io::ErrorKind::AddrNotAvailable))?;
        // SAFETY: buf and sa are valid for the duration of the call.
        let r = unsafe {
            libc::sendto(
                self.raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                0,
                (&sa as *const libc::sockaddr_storage).cast(),
                len,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }

    /// Receives up to RX_BATCH datagrams; Ok(0) when nothing is waiting.
    pub fn recv_batch(&self, batch: &mut RxBatch) -> io::Result<usize> {
        // Stale datagrams must never be seen twice, whatever happens below.
        batch.count = 0;
        // SAFETY: all-zero is a valid iovec/mmsghdr; the arrays are filled
        // with pointers into `batch`, which outlives the call.
        let mut iov: [libc::iovec; RX_BATCH] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; RX_BATCH] = unsafe { zeroed() };
        for (i, ((buf, addr), m)) in batch
            .bufs
            .chunks_exact_mut(RX_DATAGRAM_MAX)
            .zip(batch.addrs.iter_mut())
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
        }
        // SAFETY: msgs points at RX_BATCH initialised headers.
        let n = unsafe {
            libc::recvmmsg(
                self.raw_fd(),
                msgs.as_mut_ptr(),
                RX_BATCH as libc::c_uint,
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
        let n = n as usize;
        for (i, m) in msgs.iter().take(n).enumerate() {
            batch.lens[i] = m.msg_len as usize;
            batch.truncated[i] = m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        }
        batch.count = n;
        Ok(n)
    }
}

/// Receive buffers for one recvmmsg call, allocated once per `Tunnels`.
pub struct RxBatch {
    bufs: Box<[u8]>,
    addrs: Box<[libc::sockaddr_storage]>,
    lens: [usize; RX_BATCH],
    truncated: [bool; RX_BATCH],
    count: usize,
}

impl Default for RxBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RxBatch {
    pub fn new() -> RxBatch {
        RxBatch {
            bufs: vec![0u8; RX_BATCH * RX_DATAGRAM_MAX].into_boxed_slice(),
            // SAFETY: all-zero sockaddr_storage is valid (AF_UNSPEC).
            addrs: (0..RX_BATCH).map(|_| unsafe { zeroed() }).collect(),
            lens: [0; RX_BATCH],
            truncated: [false; RX_BATCH],
            count: 0,
        }
    }

    /// Datagrams filled by the last recv_batch.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Datagram `i`: its bytes, its source (None if not IP), and whether it
    /// was longer than RX_DATAGRAM_MAX.
    pub fn get(&self, i: usize) -> Option<(&[u8], Option<SocketAddr>, bool)> {
        if i >= self.count {
            return None;
        }
        let start = i * RX_DATAGRAM_MAX;
        let len = self.lens[i].min(RX_DATAGRAM_MAX);
        let data = self.bufs.get(start..start + len)?;
        Some((
            data,
            self.addrs.get(i).and_then(from_sockaddr),
            self.truncated[i],
        ))
    }
}

/// IPv4-mapped IPv6 addresses become IPv4, so endpoints compare and display
/// the same however the socket saw them.
pub fn normalise(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, v6.port())),
            None => a,
        },
        v4 => v4,
    }
}

fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in = unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
            let a = SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            ));
            Some(normalise(a))
        }
        _ => None,
    }
}

/// The sockaddr to pass for `a` on a dual-stack (`v6`) or IPv4-only socket;
/// None for an IPv6 destination on an IPv4-only socket.
fn to_sockaddr(a: SocketAddr, v6: bool) -> Option<(libc::sockaddr_storage, libc::socklen_t)> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let a6 = match (a, v6) {
        (SocketAddr::V4(a4), false) => {
            // SAFETY: storage is larger than and aligned for sockaddr_in.
            let sin: &mut libc::sockaddr_in =
                unsafe { &mut *(&mut ss as *mut libc::sockaddr_storage).cast() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a4.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a4.ip()).to_be();
            return Some((ss, size_of::<libc::sockaddr_in>() as libc::socklen_t));
        }
        (SocketAddr::V6(_), false) => return None,
        (SocketAddr::V4(a4), true) => SocketAddrV6::new(a4.ip().to_ipv6_mapped(), a4.port(), 0, 0),
        (SocketAddr::V6(a6), true) => a6,
    };
    // SAFETY: storage is larger than and aligned for sockaddr_in6.
    let sin6: &mut libc::sockaddr_in6 =
        unsafe { &mut *(&mut ss as *mut libc::sockaddr_storage).cast() };
    sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    sin6.sin6_port = a6.port().to_be();
    sin6.sin6_addr.s6_addr = a6.ip().octets();
    sin6.sin6_flowinfo = a6.flowinfo();
    sin6.sin6_scope_id = a6.scope_id();
    Some((ss, size_of::<libc::sockaddr_in6>() as libc::socklen_t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_roundtrip_and_mapping() {
        let v4: SocketAddr = "127.0.0.1:51820".parse().unwrap();
        let v6: SocketAddr = "[fd00::1]:51820".parse().unwrap();
        for dual in [true, false] {
            let (ss, _) = to_sockaddr(v4, dual).unwrap();
            assert_eq!(from_sockaddr(&ss), Some(v4), "dual {dual}");
        }
        let (ss, _) = to_sockaddr(v6, true).unwrap();
        assert_eq!(from_sockaddr(&ss), Some(v6));
        assert!(to_sockaddr(v6, false).is_none());
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:9".parse().unwrap();
        assert_eq!(
            normalise(mapped),
            "127.0.0.1:9".parse::<SocketAddr>().unwrap()
        );
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
        let mut got = Vec::new();
        for _ in 0..100 {
            if b.recv_batch(&mut batch).unwrap() > 0 {
                for i in 0..batch.count() {
                    let (d, from, trunc) = batch.get(i).unwrap();
                    got.push((d.to_vec(), from, trunc));
                }
            }
            if got.len() == 6 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(got.len(), 6);
        for (i, (d, from, trunc)) in got.iter().take(5).enumerate() {
            assert_eq!(d, &vec![i as u8; 100]);
            assert_eq!(*from, Some(SocketAddr::from(([127, 0, 0, 1], a_port))));
            assert!(!trunc);
        }
        assert!(got[5].2);
        assert_eq!(got[5].0.len(), RX_DATAGRAM_MAX);
        assert_eq!(b.recv_batch(&mut batch).unwrap(), 0);
    }
}
