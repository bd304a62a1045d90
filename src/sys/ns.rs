//! Network namespaces of the calling thread, and who we run as: what the
//! tests need to build their own topologies.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use super::cvt;

/// Moves the calling thread into a new network namespace (needs root).
pub fn unshare_net() -> io::Result<()> {
    // SAFETY: unshare takes no pointers; it changes this thread only.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) }).map(drop)
}

/// Moves the calling thread into the network namespace `ns` refers to.
pub fn setns_net(ns: impl AsFd) -> io::Result<()> {
    // SAFETY: setns takes no pointers; it changes this thread only.
    cvt(unsafe { libc::setns(ns.as_fd().as_raw_fd(), libc::CLONE_NEWNET) }).map(drop)
}

/// Whether we run as root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
