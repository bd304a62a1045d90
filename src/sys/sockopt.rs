//! Socket options: the int ones, and the classic BPF program that steers
//! a reuseport group's datagrams.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd};

use super::cvt;

/// A socket option's value that the kernel reads or fills byte for byte.
///
/// # Safety
/// Plain data: every bit pattern, all zeros included, is a valid value,
/// and it holds no pointer the kernel would follow (`sock_fprog` does: it
/// has its own call below).
pub unsafe trait OptVal: Copy {}

// SAFETY: integers and the kernel's plain option structs of integers.
unsafe impl OptVal for libc::c_int {}
// SAFETY: as above.
unsafe impl OptVal for libc::timeval {}
// SAFETY: as above.
unsafe impl OptVal for libc::ucred {}
// SAFETY: as above.
unsafe impl OptVal for libc::tpacket_req {}
// SAFETY: as above.
unsafe impl OptVal for libc::tpacket_stats {}

/// setsockopt(2) of a plain value.
pub fn set<T: OptVal>(
    fd: impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
    v: &T,
) -> io::Result<()> {
    // SAFETY: `v` lives for the call and its size is passed; OptVal says
    // the kernel reads nothing beyond it.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            (v as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// getsockopt(2) into a plain value (what the kernel did not fill stays
/// zero).
pub fn get<T: OptVal>(fd: impl AsFd, level: libc::c_int, name: libc::c_int) -> io::Result<T> {
    // SAFETY: all zeros is a valid T (OptVal).
    let mut v: T = unsafe { std::mem::zeroed() };
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live for the call; `len` says `v`'s size,
    // and any bytes the kernel writes make a valid T (OptVal).
    cvt(unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            (&mut v as *mut T).cast(),
            &mut len,
        )
    })?;
    Ok(v)
}

/// setsockopt(2) of an int option.
pub fn set_int(
    fd: impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    set(fd, level, name, &v)
}

/// getsockopt(2) of an int option.
pub fn get_int(fd: impl AsFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    get(fd, level, name)
}

/// SO_RCVTIMEO: a blocking receive gives up (EAGAIN) after `t`.
pub fn set_recv_timeout(fd: impl AsFd, t: std::time::Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: t.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_usec: t.subsec_micros() as libc::suseconds_t,
    };
    set(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
}

/// SO_ATTACH_REUSEPORT_CBPF: `prog` steers the datagrams of `fd`'s
/// reuseport group (the kernel copies it).
pub fn attach_reuseport_cbpf(fd: impl AsFd, prog: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).map_err(|_| io::ErrorKind::InvalidInput)?,
        // The kernel only reads the program.
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points at `len` live instructions for the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })
    .map(drop)
}
