//! An eventfd: a counter another thread bumps to wake an epoll.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{cvt, fd};

#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; it returns a new fd or -1.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: fd is a fresh descriptor nobody else owns.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Another handle on the same counter (for a thread that only wakes).
    pub fn try_clone(&self) -> io::Result<EventFd> {
        Ok(EventFd(self.0.try_clone()?))
    }

    /// Wakes whoever waits on it. Cannot block: the counter would have to
    /// reach 2^64 - 1 first.
    pub fn notify(&self) {
        let _ = fd::write(&self.0, &1u64.to_ne_bytes());
    }

    /// Clears the counter (after a wake-up).
    pub fn drain(&self) {
        let _ = fd::read(&self.0, &mut [0u8; 8]);
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fd::{poll, pollin};

    #[test]
    fn wakes_until_drained() {
        let e = EventFd::new().unwrap();
        let other = e.try_clone().unwrap();
        let mut p = [pollin(e.fd())];
        assert_eq!(poll(&mut p, 0).unwrap(), 0);
        other.notify();
        other.notify();
        assert_eq!(poll(&mut p, 0).unwrap(), 1);
        e.drain();
        assert_eq!(poll(&mut p, 0).unwrap(), 0);
    }
}
