//! `struct ifreq` and the SIOC*IF* / TUN ioctls that take it, and the
//! netdev lookups built on them (ifindex, MTU).

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use super::cvt;

/// Interface names are at most 15 bytes plus the terminating NUL.
pub const IFNAMSIZ: usize = 16;

/// `struct ifreq`: the name, then a 24-byte union of which we use the
/// short (flags) and int (mtu, ifindex) members at its start.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct IfReq {
    name: [u8; IFNAMSIZ],
    data: [u8; 24],
}

const _: () = assert!(size_of::<IfReq>() == size_of::<libc::ifreq>());

impl IfReq {
    /// An ifreq for `name`, cut to 15 bytes (callers check names first).
    pub fn new(name: &str) -> IfReq {
        let mut r = IfReq {
            name: [0; IFNAMSIZ],
            data: [0; 24],
        };
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

/// The requests that read or write one `struct ifreq` (and nothing else),
/// so that [`ifreq`] is safe for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfReqOp {
    /// On a `/dev/net/tun` fd: create or attach the named TAP with the
    /// flags in the short member.
    TunSetIff,
    /// On a TAP fd: the flags it was attached with.
    TunGetIff,
    SetMtu,
    GetMtu,
    GetFlags,
    SetFlags,
    GetIndex,
}

impl IfReqOp {
    fn request(self) -> libc::Ioctl {
        match self {
            IfReqOp::TunSetIff => libc::TUNSETIFF as libc::Ioctl,
            IfReqOp::TunGetIff => libc::TUNGETIFF as libc::Ioctl,
            IfReqOp::SetMtu => libc::SIOCSIFMTU as libc::Ioctl,
            IfReqOp::GetMtu => libc::SIOCGIFMTU as libc::Ioctl,
            IfReqOp::GetFlags => libc::SIOCGIFFLAGS as libc::Ioctl,
            IfReqOp::SetFlags => libc::SIOCSIFFLAGS as libc::Ioctl,
            IfReqOp::GetIndex => libc::SIOCGIFINDEX as libc::Ioctl,
        }
    }
}

/// One `struct ifreq` ioctl; the SIOC* ones on any socket in the device's
/// namespace, the TUN ones on a `/dev/net/tun` fd.
pub fn ifreq(fd: impl AsFd, op: IfReqOp, r: &mut IfReq) -> io::Result<()> {
    // SAFETY: every IfReqOp reads and writes at most a `struct ifreq`,
    // which `IfReq` matches in size and layout, live for the call.
    cvt(unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), op.request(), r as *mut IfReq) }).map(drop)
}

/// An AF_INET datagram socket: the handle the SIOC*IF* ioctls need.
pub fn ctl_socket() -> io::Result<OwnedFd> {
    super::socket::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
}

/// The ifindex of `name` in our namespace, None when there is no such device.
pub fn ifindex_of(name: &str) -> io::Result<Option<u32>> {
    let c = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: `c` is a valid NUL-terminated string for the call.
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
    ifreq(&sock, IfReqOp::GetMtu, &mut r).ok()?;
    u16::try_from(r.int()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_members_and_loopback() {
        let mut r = IfReq::new("a-name-longer-than-fifteen");
        assert_eq!(r.name[IFNAMSIZ - 1], 0, "always NUL-terminated");
        r.set_short(-2);
        assert_eq!(r.short(), -2);
        r.set_int(70000);
        assert_eq!(r.int(), 70000);
        // Every namespace has a loopback device; reading needs no privilege.
        let sock = ctl_socket().unwrap();
        let mut r = IfReq::new("lo");
        ifreq(&sock, IfReqOp::GetIndex, &mut r).unwrap();
        assert_eq!(Some(r.int() as u32), ifindex_of("lo").unwrap());
        let mut r = IfReq::new("lo");
        ifreq(&sock, IfReqOp::GetMtu, &mut r).unwrap();
        let sys = std::fs::read_to_string("/sys/class/net/lo/mtu").unwrap();
        assert_eq!(r.int().to_string(), sys.trim());
        assert_eq!(ifindex_of("no-such-dev0").unwrap(), None);
        assert!(ifindex_of("a\0b").is_err());
    }
}
