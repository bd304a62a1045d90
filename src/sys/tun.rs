//! The ioctls of a TAP fd that take no `struct ifreq`: its virtio header,
//! offloads and persistence.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use super::cvt;

/// The TAP ioctls that read one int through a pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntOp {
    /// TUNSETVNETHDRSZ: the virtio header's size.
    VnetHdrSz,
    /// TUNSETVNETLE: little-endian virtio headers.
    VnetLe,
}

pub fn set_int(fd: impl AsFd, op: IntOp, v: libc::c_int) -> io::Result<()> {
    let req = match op {
        IntOp::VnetHdrSz => libc::TUNSETVNETHDRSZ,
        IntOp::VnetLe => libc::TUNSETVNETLE,
    };
    // SAFETY: these requests read one int through the pointer, live for
    // the call.
    cvt(unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), req, &v as *const libc::c_int) }).map(drop)
}

/// TUNSETOFFLOAD: the TUN_F_* offloads the fd takes.
pub fn set_offload(fd: impl AsFd, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its flags by value, not by pointer.
    cvt(unsafe {
        libc::ioctl(
            fd.as_fd().as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(flags),
        )
    })
    .map(drop)
}

/// TUNSETPERSIST: whether the TAP outlives its last fd.
pub fn set_persist(fd: impl AsFd, persist: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes its argument by value.
    cvt(unsafe {
        libc::ioctl(
            fd.as_fd().as_raw_fd(),
            libc::TUNSETPERSIST,
            libc::c_ulong::from(persist),
        )
    })
    .map(drop)
}
