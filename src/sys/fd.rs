//! Plain I/O on a descriptor std has no type for (TAP queues, packet
//! sockets, eventfds), and poll(2) for the tests and benches.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use super::{cvt, cvt_len};

/// read(2) into `buf`; the kernel writes at most `buf.len()` bytes.
pub fn read(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length for the call.
    cvt_len(unsafe { libc::read(fd.as_fd().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// write(2) of `buf`.
pub fn write(fd: impl AsFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length for the call.
    cvt_len(unsafe { libc::write(fd.as_fd().as_raw_fd(), buf.as_ptr().cast(), buf.len()) })
}

/// writev(2) of `head` then `body` as one write (a virtio header and its
/// frame, with no copy to glue them).
pub fn write2(fd: impl AsFd, head: &[u8], body: &[u8]) -> io::Result<usize> {
    let iov = [
        libc::iovec {
            iov_base: head.as_ptr() as *mut libc::c_void,
            iov_len: head.len(),
        },
        libc::iovec {
            iov_base: body.as_ptr() as *mut libc::c_void,
            iov_len: body.len(),
        },
    ];
    // SAFETY: both iovecs describe live slices, which writev only reads.
    cvt_len(unsafe { libc::writev(fd.as_fd().as_raw_fd(), iov.as_ptr(), 2) })
}

/// recv(2) into `buf` with `flags`. With MSG_TRUNC the result is the
/// datagram's real length, which may exceed `buf.len()`.
pub fn recv(fd: impl AsFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length; the kernel writes
    // no more than that whatever the flags.
    cvt_len(unsafe {
        libc::recv(
            fd.as_fd().as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            flags,
        )
    })
}

/// send(2) of `buf` on a connected or bound socket.
pub fn send(fd: impl AsFd, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length for the call.
    cvt_len(unsafe {
        libc::send(
            fd.as_fd().as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            flags,
        )
    })
}

/// poll(2) on `fds` for up to `ms` milliseconds; how many are ready.
pub fn poll(fds: &mut [libc::pollfd], ms: libc::c_int) -> io::Result<usize> {
    // SAFETY: `fds` is a live array of its length, which poll writes
    // `revents` into.
    let n = cvt(unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) })?;
    Ok(n as usize)
}

/// A pollfd waiting for `fd` to be readable.
pub fn pollin(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}
