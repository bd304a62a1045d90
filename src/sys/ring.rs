//! A packet socket's mmap'd receive ring (TPACKET_V2): the kernel writes
//! each frame into the next free slot of a ring shared with us and flips
//! the slot's status word to "user"; we read the slot and flip it back. No
//! system call per frame.
//!
//! TPACKET_V2, not V3: with `PACKET_VNET_HDR` the kernel writes the virtio
//! header just before the frame in V1/V2 slots, and a V2 frame too large
//! for its slot is also queued whole on the socket (`PACKET_COPY_THRESH`,
//! the slot says `TP_STATUS_COPY`), which is how 64 KB super-frames get
//! through small slots. V3 has neither the copy nor a per-frame slot.
//!
//! What the slots contain is parsed elsewhere (`port::packet_slot`, safe
//! code, fuzzed): this module only maps, hands out and gives back slots.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU32, Ordering};

/// The ring's geometry: `frames` slots of `frame_size` bytes, packed into
/// blocks of `block_size` bytes (a page multiple; slots never span blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub block_size: usize,
    pub frame_size: usize,
    pub frames: usize,
}

impl Geometry {
    fn per_block(&self) -> usize {
        self.block_size / self.frame_size
    }

    fn blocks(&self) -> usize {
        self.frames / self.per_block()
    }

    fn bytes(&self) -> usize {
        self.blocks() * self.block_size
    }

    /// Byte offset of slot `i` in the mapping.
    fn offset(&self, i: usize) -> usize {
        (i / self.per_block()) * self.block_size + (i % self.per_block()) * self.frame_size
    }
}

/// The mapped ring. Slot `i` belongs to us while its status has
/// `TP_STATUS_USER`, to the kernel otherwise.
#[derive(Debug)]
pub struct RxRing {
    base: *mut u8,
    geo: Geometry,
}

// SAFETY: the mapping is owned by this value for its whole life and only
// reached through `&self` methods that follow the ring's ownership
// protocol (atomic status word, slots read only while user-owned); the
// dataplane reads a port's ring from one thread at a time.
unsafe impl Send for RxRing {}
// SAFETY: as above; shared references only read user-owned slots and
// store status words atomically.
unsafe impl Sync for RxRing {}

impl RxRing {
    /// Sets TPACKET_V2 and a receive ring of `geo` on `sock` (which must
    /// not be bound yet, so no frame lands on the socket's plain queue
    /// before the ring exists) and maps it.
    pub fn new(sock: impl AsFd, geo: Geometry) -> io::Result<RxRing> {
        let fd = sock.as_fd().as_raw_fd();
        let bad = geo.frame_size < libc::TPACKET2_HDRLEN
            || geo.frame_size % libc::TPACKET_ALIGNMENT != 0
            || geo.block_size % page_size() != 0
            || geo.block_size < geo.frame_size
            || geo.frames == 0
            || geo.frames % geo.per_block() != 0;
        if bad {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "ring geometry"));
        }
        let version = libc::tpacket_versions::TPACKET_V2 as libc::c_int;
        super::sockopt::set_int(&sock, libc::SOL_PACKET, libc::PACKET_VERSION, version)?;
        let req = libc::tpacket_req {
            tp_block_size: geo.block_size as libc::c_uint,
            tp_block_nr: geo.blocks() as libc::c_uint,
            tp_frame_size: geo.frame_size as libc::c_uint,
            tp_frame_nr: geo.frames as libc::c_uint,
        };
        super::sockopt::set(&sock, libc::SOL_PACKET, libc::PACKET_RX_RING, &req)?;
        // SAFETY: a fresh shared mapping of the ring just set on `fd`, of
        // exactly its size; the kernel keeps the pages while it is mapped.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                geo.bytes(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(RxRing {
            base: base.cast(),
            geo,
        })
    }

    pub fn frames(&self) -> usize {
        self.geo.frames
    }

    pub fn frame_size(&self) -> usize {
        self.geo.frame_size
    }

    fn status(&self, i: usize) -> &AtomicU32 {
        let off = self.geo.offset(i % self.geo.frames);
        // SAFETY: `off` is a slot start inside the mapping (16-byte
        // aligned: frame and block sizes are multiples of 16), where the
        // status word lives; the kernel writes it atomically too.
        unsafe { &*(self.base.add(off) as *const AtomicU32) }
    }

    /// Calls `f` with slot `i` (its whole `frame_size` bytes, header
    /// included) if the kernel has handed it to us; None if not. The slot
    /// stays ours until [`RxRing::release`].
    pub fn with_slot<R>(&self, i: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        // Acquire: the frame the kernel wrote before flipping the status.
        if self.status(i).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
            return None;
        }
        let off = self.geo.offset(i % self.geo.frames);
        // SAFETY: the slot lies inside the mapping, and while its status
        // says "user" the kernel does not write it (we release it only
        // after `f` returns, and `f` cannot keep the borrow).
        let slot = unsafe { std::slice::from_raw_parts(self.base.add(off), self.geo.frame_size) };
        Some(f(slot))
    }

    /// Gives slot `i` back to the kernel.
    pub fn release(&self, i: usize) {
        // Release: our reads of the slot happen before the kernel reuses it.
        self.status(i)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of that size, unmapped once.
        unsafe { libc::munmap(self.base.cast(), self.geo.bytes()) };
    }
}

/// PACKET_STATISTICS: frames the kernel dropped because the ring was full
/// since the last call (the kernel resets the counts when read).
pub fn take_drops(sock: impl AsFd) -> io::Result<u32> {
    let st: libc::tpacket_stats =
        super::sockopt::get(sock, libc::SOL_PACKET, libc::PACKET_STATISTICS)?;
    Ok(st.tp_drops)
}

/// SO_ERROR: takes the socket's pending error (a packet socket's netdev
/// going away leaves ENETDOWN there, and a ring never reports it
/// otherwise; left pending, it keeps epoll waking the worker).
pub fn take_error(sock: impl AsFd) -> io::Result<()> {
    match super::sockopt::get_int(sock, libc::SOL_SOCKET, libc::SO_ERROR)? {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).unwrap_or(4096).max(4096)
}
