//! Sockets below what std offers: socket(2) for any family, bind,
//! `sockaddr_storage` <-> `SocketAddr` (for the batched calls in
//! [`super::mmsg`]) and an AF_PACKET socket bound to a device. Options are
//! in [`super::sockopt`].

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use super::{cvt, cvt_len};

/// socket(2); the new descriptor is owned at once.
pub fn socket(domain: libc::c_int, ty: libc::c_int, proto: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers; it returns a new fd or -1.
    let fd = cvt(unsafe { libc::socket(domain, ty, proto) })?;
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An IP socket address as the kernel takes it: the storage and the
/// length of what it holds (0: nothing, as before a recvmmsg).
#[derive(Clone, Copy)]
pub struct SockAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl Default for SockAddr {
    fn default() -> SockAddr {
        SockAddr {
            // SAFETY: all-zero is a valid sockaddr_storage (AF_UNSPEC).
            storage: unsafe { zeroed() },
            len: 0,
        }
    }
}

impl std::fmt::Debug for SockAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SockAddr({:?})", self.to_std())
    }
}

impl SockAddr {
    /// The address to pass for `a` on a dual-stack (`v6`) or IPv4-only
    /// socket; None for an IPv6 destination on an IPv4-only socket.
    pub fn from_std(a: SocketAddr, v6: bool) -> Option<SockAddr> {
        let mut s = SockAddr::default();
        let a6 = match (a, v6) {
            (SocketAddr::V4(a4), false) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a4.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from(*a4.ip()).to_be(),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than and aligned for
                // every sockaddr; the write stays inside it.
                unsafe {
                    std::ptr::write((&mut s.storage as *mut libc::sockaddr_storage).cast(), sin)
                };
                s.len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
                return Some(s);
            }
            (SocketAddr::V6(_), false) => return None,
            (SocketAddr::V4(a4), true) => {
                SocketAddrV6::new(a4.ip().to_ipv6_mapped(), a4.port(), 0, 0)
            }
            (SocketAddr::V6(a6), true) => a6,
        };
        let sin6 = libc::sockaddr_in6 {
            sin6_family: libc::AF_INET6 as libc::sa_family_t,
            sin6_port: a6.port().to_be(),
            sin6_flowinfo: a6.flowinfo(),
            sin6_addr: libc::in6_addr {
                s6_addr: a6.ip().octets(),
            },
            sin6_scope_id: a6.scope_id(),
        };
        // SAFETY: as above, for sockaddr_in6.
        unsafe { std::ptr::write((&mut s.storage as *mut libc::sockaddr_storage).cast(), sin6) };
        s.len = size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        Some(s)
    }

    /// The address held, IPv4-mapped IPv6 made IPv4 ([`normalise`]); None
    /// for another family, or a length too short for its own.
    pub fn to_std(&self) -> Option<SocketAddr> {
        let ss = &self.storage;
        let len = self.len as usize;
        match libc::c_int::from(ss.ss_family) {
            libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says the storage holds a sockaddr_in,
                // and the storage is aligned for it.
                let sin: &libc::sockaddr_in =
                    unsafe { &*(ss as *const libc::sockaddr_storage).cast() };
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                Some(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(sin.sin_port),
                )))
            }
            libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
                // SAFETY: the family says the storage holds a sockaddr_in6.
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

    /// The length the kernel is told (0: an empty address).
    pub fn len(&self) -> libc::socklen_t {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// For msghdr.msg_name: the storage, which the kernel may fill.
    pub(super) fn as_mut_ptr(&mut self) -> *mut libc::c_void {
        (&mut self.storage as *mut libc::sockaddr_storage).cast()
    }

    /// Sets the length the kernel reported after filling the storage.
    pub(super) fn set_len(&mut self, len: libc::socklen_t) {
        self.len = len.min(Self::CAPACITY);
    }

    pub(super) fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.storage as *const libc::sockaddr_storage).cast()
    }

    /// Room for the kernel to write any address into.
    pub(super) const CAPACITY: libc::socklen_t = size_of::<libc::sockaddr_storage>() as _;
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

/// bind(2) to `addr`.
pub fn bind(fd: impl AsFd, addr: &SockAddr) -> io::Result<()> {
    // SAFETY: `addr` holds a valid sockaddr of `len` bytes.
    cvt(unsafe { libc::bind(fd.as_fd().as_raw_fd(), addr.as_ptr(), addr.len) }).map(drop)
}

/// getsockname(2).
pub fn local_addr(fd: impl AsFd) -> io::Result<SockAddr> {
    let mut a = SockAddr::default();
    let mut len = SockAddr::CAPACITY;
    // SAFETY: the storage is writable for `len` bytes, which the kernel
    // lowers to what it wrote.
    cvt(unsafe { libc::getsockname(fd.as_fd().as_raw_fd(), a.as_mut_ptr().cast(), &mut len) })?;
    a.len = len;
    Ok(a)
}

/// Binds an AF_PACKET socket to device `ifindex` for `proto` (an ethertype
/// in network order, as `socket(2)` takes it).
pub fn bind_packet(fd: impl AsFd, ifindex: u32, proto: u16) -> io::Result<()> {
    let sa = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: proto,
        sll_ifindex: i32::try_from(ifindex).map_err(|_| io::ErrorKind::InvalidInput)?,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    // SAFETY: passes a live sockaddr_ll and its size.
    cvt(unsafe {
        libc::bind(
            fd.as_fd().as_raw_fd(),
            (&sa as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// sendto(2) of one datagram.
pub fn send_to(fd: impl AsFd, buf: &[u8], to: &SockAddr) -> io::Result<usize> {
    // SAFETY: `buf` and `to` are live for the call with the lengths passed.
    cvt_len(unsafe {
        libc::sendto(
            fd.as_fd().as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            0,
            to.as_ptr(),
            to.len,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_roundtrip_and_mapping() {
        let v4: SocketAddr = "127.0.0.1:51820".parse().unwrap();
        let v6: SocketAddr = "[fd00::1]:51820".parse().unwrap();
        for dual in [true, false] {
            let s = SockAddr::from_std(v4, dual).unwrap();
            assert_eq!(s.to_std(), Some(v4), "dual {dual}");
        }
        let s = SockAddr::from_std(v6, true).unwrap();
        assert_eq!(s.len() as usize, size_of::<libc::sockaddr_in6>());
        assert_eq!(s.to_std(), Some(v6));
        assert!(SockAddr::from_std(v6, false).is_none());
        assert_eq!(SockAddr::default().to_std(), None);
        let mut cut = SockAddr::from_std(v6, true).unwrap();
        cut.set_len(8);
        assert_eq!(cut.to_std(), None, "the kernel's length counts");
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:9".parse().unwrap();
        assert_eq!(
            normalise(mapped),
            "127.0.0.1:9".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn bind_and_local_addr() {
        let fd = socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0).unwrap();
        let any = SockAddr::from_std("127.0.0.1:0".parse().unwrap(), false).unwrap();
        bind(&fd, &any).unwrap();
        let got = local_addr(&fd).unwrap().to_std().unwrap();
        assert_eq!(got.ip(), "127.0.0.1".parse::<std::net::IpAddr>().unwrap());
        assert_ne!(got.port(), 0);
        use crate::sys::sockopt;
        sockopt::set_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, 65536).unwrap();
        assert!(sockopt::get_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF).unwrap() >= 65536);
    }
}
