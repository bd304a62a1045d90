//! The underlay UDP socket, on the `sys` wrappers: one nonblocking socket bound to
//! `[::]:port` with IPV6_V6ONLY off, so IPv4 and IPv6 peers share it (IPv4
//! peers appear as `::ffff:a.b.c.d` and are normalised back to IPv4). Hosts
//! without IPv6 get a plain IPv4 socket.
//!
//! Batching lives next door: `rx_batch.rs` (recvmmsg + UDP GRO) and
//! `tx_batch.rs` (sendmmsg + UDP GSO).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

pub use crate::sys::socket::normalise;
use crate::sys::socket::{self as sock, SockAddr};
use crate::sys::sockopt::{self, set_int as setsockopt_int};

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

/// DF on every datagram, whatever the kernel learnt about the path: a
/// datagram over the route's MTU fails with EMSGSIZE instead of leaving in
/// IP fragments (which lose everything when one piece is lost and which
/// many underlays filter). The tunnel sizes its datagrams for the underlay
/// MTU (inner fragmentation), so only a path narrower than configured
/// makes sends fail, and those are counted. On a dual-stack socket the
/// IPv4 option covers the IPv4 (mapped) peers.
fn forbid_fragmentation(fd: BorrowedFd<'_>, v6: bool) -> io::Result<()> {
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
        let fd = sock::socket(
            family,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )?;
        let raw = fd.as_fd();
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
        let sa = SockAddr::from_std(any, v6).ok_or(io::ErrorKind::InvalidInput)?;
        sock::bind(raw, &sa)?;
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
        sockopt::get_int(&self.fd, libc::SOL_UDP, libc::UDP_SEGMENT).is_ok()
    }

    /// Turns UDP GRO on or off; stays off where the kernel (before 5.0)
    /// refuses it. Returns whether it is on.
    pub fn set_gro(&mut self, on: bool) -> bool {
        let ok = setsockopt_int(&self.fd, libc::SOL_UDP, libc::UDP_GRO, on as libc::c_int);
        self.gro = on && ok.is_ok();
        self.gro
    }

    /// FORCE variants pass net.core.{r,w}mem_max (needs CAP_NET_ADMIN, which
    /// works even inside a child netns); without it take what the limit allows.
    fn size_buffers(fd: BorrowedFd<'_>) {
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

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn is_dual_stack(&self) -> bool {
        self.v6
    }

    pub fn local_port(&self) -> io::Result<u16> {
        sock::local_addr(&self.fd)?
            .to_std()
            .map(|a| a.port())
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
    }

    /// The kernel's receive buffer size after our request (doubled by Linux).
    pub fn rcvbuf(&self) -> io::Result<usize> {
        let v = sockopt::get_int(&self.fd, libc::SOL_SOCKET, libc::SO_RCVBUF)?;
        Ok(usize::try_from(v).unwrap_or(0))
    }

    /// One datagram; `WouldBlock` when the send buffer is full (tests only:
    /// the node sends through the batch).
    #[cfg(test)]
    pub fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        let sa = SockAddr::from_std(to, self.v6).ok_or(io::ErrorKind::AddrNotAvailable)?;
        sock::send_to(&self.fd, buf, &sa)
    }
}
