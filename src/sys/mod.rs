//! The system calls std does not wrap, behind safe functions: the only
//! module with `unsafe` (lib.rs denies it everywhere else; `wire`, `mesh`,
//! `switch`, `bridge` and `dataplane` forbid it outright). Each `unsafe`
//! block says why it is sound; callers hand over slices and fds, never raw
//! pointers, and nothing here copies or allocates per packet.
//!
//! - [`fd`]: read/write/writev/recv/send/poll on a descriptor.
//! - [`eventfd`]: the counter the workers and the control server are
//!   woken by.
//! - [`epoll`]: the event loops' epoll set and the signalfd.
//! - [`socket`]: socket(2), bind, `sockaddr` <-> std, AF_PACKET binding.
//! - [`sockopt`]: socket options, the reuseport steering program.
//! - [`mmsg`]: recvmmsg/sendmmsg with the UDP GRO/GSO control messages,
//!   plain sendmmsg for an attached port's batches.
//! - [`ifreq`]: `struct ifreq` ioctls (TAP creation, MTU, flags, ifindex).
//! - [`tun`]: the TAP fd's vnet header, offload and persistence ioctls.
//! - [`ns`]: network namespaces and the effective uid (tests).
//! - [`cred`]: a Unix socket peer's credentials, our ids, group names.
//! - [`sched`]: a thread's nice value (control threads yield to workers),
//!   its CPU time.
//! - [`rtnl`]: rtnetlink for bridged ports (enslave, bridge FDB delete).
//! - [`ring`]: a packet socket's mmap'd TPACKET_V2 receive ring.

pub mod cred;
pub mod epoll;
pub mod eventfd;
pub mod fd;
pub mod ifreq;
pub mod mmsg;
pub mod ns;
pub mod ring;
pub mod rtnl;
pub mod sched;
pub mod socket;
pub mod sockopt;
pub mod tun;

use std::io;

/// A libc return value: negative means `errno` says what went wrong.
pub(crate) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A byte count from read(2) and its kin; -1 means `errno`.
pub(crate) fn cvt_len(r: libc::ssize_t) -> io::Result<usize> {
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
}
