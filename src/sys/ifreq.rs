//! `struct ifreq` and the SIOC*IF* / TUN ioctls that take it, and the
//! netdev lookups built on them (ifindex, MTU).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Interface names are at most 15 bytes plus the terminating NUL.
pub const IFNAMSIZ: usize = 16;

/// `struct ifreq`: the name, then a 24-byte union of which we use the
/// short (flags) and int (mtu, ifindex) members at its start.
#[repr(C)]
pub struct IfReq {
    name: [u8; IFNAMSIZ],
    data: [u8; 24],
}

impl IfReq {
    pub fn new(name: &str) -> IfReq {
        let mut r = IfReq {
            name: [0; IFNAMSIZ],
            data: [0; 24],
        };
        // Longer names are cut at IFNAMSIZ (callers check names first).
        for (d, s) in r.name.iter_mut().take(IFNAMSIZ - 1).zip(name.bytes()) {
            *d = s;
        }
        r
    }

    pub fn set_short(&mut self, v: i16) {
        self.data[..2].copy_from_slice(&v.to_ne_bytes());
    }

    pub fn short(&self) -> i16 {
        i16::from_ne_bytes([self.data[0], self.data[1]])
    }

    pub fn set_int(&mut self, v: i32) {
        self.data[..4].copy_from_slice(&v.to_ne_bytes());
    }

    pub fn int(&self) -> i32 {
        i32::from_ne_bytes([self.data[0], self.data[1], self.data[2], self.data[3]])
    }
}

pub fn ioctl(fd: RawFd, req: libc::Ioctl, ifr: &mut IfReq) -> io::Result<()> {
    // SAFETY: every request used here reads/writes at most a `struct ifreq`,
    // which `IfReq` matches in size and layout.
    let r = unsafe { libc::ioctl(fd, req, ifr as *mut IfReq) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An AF_INET datagram socket: the handle the SIOC*IF* ioctls need.
pub fn ctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is wrapped at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// The ifindex of `name` in our namespace, None when there is no such device.
pub fn ifindex_of(name: &str) -> io::Result<Option<u32>> {
    let c = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: c is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    Ok((i != 0).then_some(i))
}

/// The MTU of `name` now.
pub fn mtu_of(name: &str) -> Option<u16> {
    if name.len() >= IFNAMSIZ {
        return None;
    }
    let sock = ctl_socket().ok()?;
    let mut r = IfReq::new(name);
    ioctl(sock.as_raw_fd(), libc::SIOCGIFMTU as libc::Ioctl, &mut r).ok()?;
    u16::try_from(r.int()).ok()
}
