//! The underlay UDP socket, straight on libc: one nonblocking socket bound to
//! `[::]:port` with IPV6_V6ONLY off, so IPv4 and IPv6 peers share it (IPv4
//! peers appear as `::ffff:a.b.c.d` and are normalised back to IPv4). Hosts
//! without IPv6 get a plain IPv4 socket.
//!
//! Batching lives next door: `rx_batch.rs` (recvmmsg + UDP GRO) and
//! `tx_batch.rs` (sendmmsg + UDP GSO).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Socket buffers we ask for: at ~1.5 KB per datagram this absorbs a few
/// thousand packets of burst, which the 208 KiB default does not (see the
/// performance notes in DESIGN.md).
pub const SOCKET_BUFFER_BYTES: libc::c_int = 4 << 20;
/// Largest datagram we take in; bigger ones arrive truncated and are counted.
/// Enough for a 9000-byte jumbo underlay.
pub const RX_DATAGRAM_MAX: usize = 9216;

pub struct UdpSocket {
    fd: OwnedFd,
    /// AF_INET6 dual-stack (true) or AF_INET only (false).
    pub(super) v6: bool,
    /// UDP_GRO is on: one recvmmsg slot may hold a train of datagrams.
    pub(super) gro: bool,
    /// UDP_SEGMENT may be used on send: the kernel knows it (4.18+) and no
    /// send has failed with it yet (it needs checksum offload on the route's
    /// device; a failure turns it off for the socket's lifetime).
    pub(super) gso: bool,
}

pub(super) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub(super) use crate::sys::sockopt::set_int as setsockopt_int;

/// DF on every datagram, whatever the kernel learnt about the path: a
/// datagram over the route's MTU fails with EMSGSIZE instead of leaving in
/// IP fragments (which lose everything when one piece is lost and which
/// many underlays filter). The tunnel sizes its datagrams for the underlay
/// MTU (inner fragmentation), so only a path narrower than configured
/// makes sends fail, and those are counted. On a dual-stack socket the
/// IPv4 option covers the IPv4 (mapped) peers.
fn forbid_fragmentation(fd: RawFd, v6: bool) -> io::Result<()> {
    setsockopt_int(
        fd,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_DO,
    )?;
    if v6 {
        setsockopt_int(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        )?;
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 1)?;
    }
    Ok(())
}

impl UdpSocket {
    /// Binds `[::]:port` dual-stack, or `0.0.0.0:port` without IPv6.
    /// Port 0 lets the kernel choose (tests); see `local_port`.
    pub fn bind(port: u16) -> io::Result<UdpSocket> {
        Self::bind_shared(port, false)
    }

    /// Like `bind`; with `reuse_port` the socket joins an SO_REUSEPORT
    /// group on the port (one socket per dataplane worker; the kernel
    /// spreads senders over them by a hash of the 4-tuple, so one peer's
    /// datagrams all reach the same socket, in order). Every socket of the
    /// group must ask for it, the first one included.
    pub fn bind_shared(port: u16, reuse_port: bool) -> io::Result<UdpSocket> {
        match Self::bind_family(port, true, reuse_port) {
            Ok(s) => Ok(s),
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                Self::bind_family(port, false, reuse_port)
            }
            Err(e) => Err(e),
        }
    }

    /// A second handle on the same socket (dup): no new member of a
    /// reuseport group, the same port, queue and options.
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            fd: self.fd.try_clone()?,
            v6: self.v6,
            gro: self.gro,
            gso: self.gso,
        })
    }

    fn bind_family(port: u16, v6: bool, reuse_port: bool) -> io::Result<UdpSocket> {
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
        forbid_fragmentation(raw, v6)?;
        if reuse_port {
            setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
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
        let mut s = UdpSocket {
            fd,
            v6,
            gro: false,
            gso: false,
        };
        s.gso = s.probe_gso();
        s.set_gro(true);
        Ok(s)
    }

    /// Kernels before 4.18 know no UDP_SEGMENT: reading it fails there.
    fn probe_gso(&self) -> bool {
        let mut v: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: v and len are valid for the call.
        let r = unsafe {
            libc::getsockopt(
                self.raw_fd(),
                libc::SOL_UDP,
                libc::UDP_SEGMENT,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        r == 0
    }

    /// Turns UDP GRO on or off; stays off where the kernel (before 5.0)
    /// refuses it. Returns whether it is on.
    pub fn set_gro(&mut self, on: bool) -> bool {
        let ok = setsockopt_int(
            self.raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            on as libc::c_int,
        );
        self.gro = on && ok.is_ok();
        self.gro
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

    /// One datagram; `WouldBlock` when the send buffer is full (tests only:
    /// the node sends through the batch).
    #[cfg(test)]
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

pub(super) fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
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
pub(super) fn to_sockaddr(
    a: SocketAddr,
    v6: bool,
) -> Option<(libc::sockaddr_storage, libc::socklen_t)> {
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
}
