//! vhost-user ports (`[[port]] vhost_user = "/run/meshwire/vm1.sock"`):
//! meshwire is the VM's virtio-net device over shared memory. qemu (or
//! libvirt's `<interface type='vhostuser'>`) connects to the socket as the
//! client and hands over the guest's memory (memfds, mapped here) and two
//! virtqueues; frames then move between the guest's rings and the switch
//! with no kernel in between and no system call per frame.
//!
//! - [`backend`]: the device as the `vhost-user-backend` crate sees it: the
//!   virtio-net features we offer, and what a guest's kick does (it wakes
//!   the worker that reads the port).
//! - [`rx`]: frames the guest sent (its TX virtqueue, queue 1), one
//!   descriptor chain per read, in the port layer's read contract
//!   (virtio_net_hdr + frame).
//! - [`tx`]: frames for the guest into its RX virtqueue (queue 0) with
//!   mergeable buffers; the used ring is published once per frame.
//! - [`listen`]: the listening socket, one connection at a time; qemu
//!   reconnecting after a restart gets a fresh device.
//!
//! The port layer sees a [`VhostDev`] like any other device: `read` is one
//! virtio header and frame, `write_vnet` likewise, and `fd` is an eventfd of
//! ours that the backend's thread makes readable when the guest kicks its
//! TX queue (the kick eventfds themselves change with every connection, the
//! worker's epoll watches one fd for the port's life). Guest notifications
//! are batched: TX completions when a read finds the queue empty, RX ones at
//! the dataplane's flush.

pub mod backend;
pub mod hostile;
pub mod listen;
pub mod rx;
pub mod tx;

#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use vhost_user_backend::bitmap::BitmapMmapRegion;
use vhost_user_backend::{VringMutex, VringState, VringT};
use virtio_queue::QueueT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::tap::Offloads;
use backend::features;

/// The guest's memory as the port maps it. Every region carries a dirty
/// bitmap that stays empty (a no-op per write) until qemu starts a live
/// migration and hands over its log (SET_LOG_BASE): from then on each
/// write meshwire makes into the guest (RX buffers, both used rings, the
/// avail event) sets its page's bit there, through vm-memory's writes, so
/// qemu copies those pages again. Marking is an atomic OR in shared memory,
/// no system call.
pub type Mem = GuestMemoryMmap<BitmapMmapRegion>;
/// One virtqueue as the backend crate keeps it.
pub type Vring = VringMutex<GuestMemoryAtomic<Mem>>;

/// virtio-net's queue numbers: the guest receives on 0, sends on 1.
pub const RX_QUEUE: usize = 0;
pub const TX_QUEUE: usize = 1;

/// What the port, its workers' handles, the backend thread and the
/// listener share.
pub struct Shared {
    path: PathBuf,
    /// The guest's memory: replaced on every SET_MEM_TABLE, emptied when
    /// the guest goes.
    mem: GuestMemoryAtomic<Mem>,
    /// The connection's virtqueues, adopted from the backend's first event
    /// (the crate creates them per connection); None while no guest is
    /// connected.
    vrings: Mutex<Option<Vec<Vring>>>,
    /// The features the guest acked (offloads follow from them).
    acked: AtomicU64,
    /// Offer checksum and TSO offloads (`[[port]] offload`).
    offload: bool,
    /// Readable while the guest's TX queue may hold frames.
    notify: EventFd,
    /// Frames went into the RX queue since the guest was last notified.
    rx_unsignalled: AtomicBool,
    /// The RX queue's used index when the guest was last notified (for
    /// EVENT_IDX).
    rx_signalled_at: AtomicU16,
    /// Descriptor chains the guest gave that were not usable (addresses
    /// outside its memory, a chain too long, no room for the header).
    pub bad_chains: AtomicU64,
    /// Set when the port goes: the listener stops.
    stopping: AtomicBool,
    /// Cuts the connected guest off when the port goes.
    conn: Mutex<Option<vhost_user_backend::ShutdownHandle>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("vhost::Shared")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Takes the connection's vrings on the backend's first event.
    fn adopt(&self, vrings: &[Vring]) {
        let mut v = self.lock_vrings();
        if v.is_none() && vrings.len() > TX_QUEUE {
            *v = Some(vrings.to_vec());
        }
    }

    /// The guest went: its queues and memory are forgotten.
    fn disconnected(&self) {
        *self.lock_vrings() = None;
        self.acked.store(0, Ordering::Relaxed);
        self.rx_signalled_at.store(0, Ordering::Relaxed);
        self.rx_unsignalled.store(false, Ordering::Relaxed);
        self.mem.lock().map(|g| g.replace(Mem::default())).ok();
        // A worker may be waiting for frames that will never come.
        let _ = self.notify.write(1);
    }

    fn lock_vrings(&self) -> MutexGuard<'_, Option<Vec<Vring>>> {
        // A panic elsewhere while holding it leaves the data as it was.
        self.vrings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One vring of the connection, if a guest is connected.
    fn vring(&self, i: usize) -> Option<Vring> {
        self.lock_vrings().as_ref().and_then(|v| v.get(i).cloned())
    }
}

/// A vhost-user port: the owner (listening, removed with the port) or a
/// worker's write handle on the same device.
#[derive(Debug)]
pub struct VhostDev {
    shared: Arc<Shared>,
    mtu: u16,
    owner: bool,
}

impl VhostDev {
    /// Listens on `path` (a stale socket there is replaced) for the VM's
    /// qemu.
    pub fn open(path: &Path, mtu: u16, offload: bool) -> io::Result<VhostDev> {
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            mem: GuestMemoryAtomic::new(Mem::default()),
            vrings: Mutex::new(None),
            acked: AtomicU64::new(0),
            offload,
            notify: EventFd::new(EFD_NONBLOCK)?,
            rx_unsignalled: AtomicBool::new(false),
            rx_signalled_at: AtomicU16::new(0),
            bad_chains: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            conn: Mutex::new(None),
        });
        listen::spawn(Arc::clone(&shared))?;
        Ok(VhostDev {
            shared,
            mtu,
            owner: true,
        })
    }

    /// Reads the next frame the guest sent: a virtio header and the frame;
    /// `WouldBlock` when its TX queue is empty (or no guest is connected).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(vring) = self.shared.vring(TX_QUEUE) else {
            drain(&self.shared.notify);
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let mem = self.shared.mem.memory();
        let mut st = vring.get_mut();
        if !usable(&st) {
            drain(&self.shared.notify);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        loop {
            let q = st.get_queue_mut();
            match rx::pop_frame(q, &*mem, buf) {
                rx::Popped::Frame(n) => return Ok(n),
                rx::Popped::Bad => {
                    self.shared.bad_chains.fetch_add(1, Ordering::Relaxed);
                    // Counted by the port as a short frame too.
                    return Ok(0);
                }
                rx::Popped::Empty => {}
            }
            // The queue is empty: the guest hears of what we took, once,
            // and kicks again when it adds more.
            if q.needs_notification(&*mem).unwrap_or(true) {
                let _ = st.signal_used_queue();
            }
            drain(&self.shared.notify);
            match st.get_queue_mut().enable_notification(&*mem) {
                Ok(true) => {
                    // The guest queued more while we looked, and it may not
                    // kick for it (with EVENT_IDX it compared against the
                    // avail event we are only now moving). The worker may
                    // stop before the queue runs dry (a bounded number of
                    // batches per wake-up): the eventfd must stay readable
                    // until then, or those frames wait for a kick that
                    // never comes (seen: a guest's TCP stream stalled for
                    // good after one second).
                    let _ = self.shared.notify.write(1);
                }
                _ => return Err(io::ErrorKind::WouldBlock.into()),
            }
        }
    }

    /// Puts a virtio header and a frame into the guest's RX queue. No room
    /// (the guest has not given buffers) is `WouldBlock`, as a full TAP.
    pub fn write_vnet(&self, hdr: &[u8], frame: &[u8]) -> io::Result<usize> {
        let Some(vring) = self.shared.vring(RX_QUEUE) else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        let mergeable = self.acked(features::MRG_RXBUF);
        let mem = self.shared.mem.memory();
        let mut st = vring.get_mut();
        if !usable(&st) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match tx::put_frame(st.get_queue_mut(), &*mem, hdr, frame, mergeable) {
            Ok(()) => {
                self.shared.rx_unsignalled.store(true, Ordering::Relaxed);
                Ok(hdr.len() + frame.len())
            }
            Err(tx::PutError::NoRoom) => Err(io::ErrorKind::WouldBlock.into()),
            Err(tx::PutError::Bad) => {
                self.shared.bad_chains.fetch_add(1, Ordering::Relaxed);
                Err(io::ErrorKind::WouldBlock.into())
            }
        }
    }

    /// A virtio header and a frame already joined (a coalesced super-frame).
    pub fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        match bytes.split_at_checked(crate::wire::vnet::HEADER_LEN) {
            Some((hdr, frame)) => self.write_vnet(hdr, frame),
            None => Err(io::ErrorKind::InvalidInput.into()),
        }
    }

    /// Tells the guest about frames put into its RX queue since the last
    /// time, if it asked to hear (once per dataplane batch).
    pub fn flush(&self) {
        if !self.shared.rx_unsignalled.swap(false, Ordering::Relaxed) {
            return;
        }
        let Some(vring) = self.shared.vring(RX_QUEUE) else {
            return;
        };
        let mem = self.shared.mem.memory();
        let mut st = vring.get_mut();
        if !usable(&st) {
            return;
        }
        let last = self.shared.rx_signalled_at.load(Ordering::Relaxed);
        let (notify, now) = tx::needs_notification(st.get_queue_mut(), &*mem, last);
        self.shared.rx_signalled_at.store(now, Ordering::Relaxed);
        if notify {
            let _ = st.signal_used_queue();
        }
    }

    fn acked(&self, bit: u32) -> bool {
        self.shared.acked.load(Ordering::Relaxed) & (1u64 << bit) != 0
    }

    pub fn fd(&self) -> RawFd {
        self.shared.notify.as_raw_fd()
    }

    /// The socket's path (what `ctl ports` shows as the device).
    pub fn path(&self) -> &str {
        self.shared.path.to_str().unwrap_or("vhost-user")
    }

    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// A virtio header on every frame; super-frames and partial checksums
    /// toward the guest as far as it acked them (frames from the guest are
    /// cut and completed whatever it sends).
    pub fn offloads(&self) -> Offloads {
        let csum = self.acked(features::GUEST_CSUM);
        Offloads {
            vnet_hdr: true,
            csum,
            tso: csum && self.acked(features::GUEST_TSO4) && self.acked(features::GUEST_TSO6),
            uso: false,
        }
    }

    /// Whether a guest is connected.
    pub fn connected(&self) -> bool {
        self.shared.lock_vrings().is_some()
    }

    /// Descriptor chains of the guest's that were dropped as unusable.
    pub fn bad_chains(&self) -> u64 {
        self.shared.bad_chains.load(Ordering::Relaxed)
    }

    /// A worker's write handle on the same device (worker 0 reads).
    pub fn handle(&self) -> VhostDev {
        VhostDev {
            shared: Arc::clone(&self.shared),
            mtu: self.mtu,
            owner: false,
        }
    }
}

impl Drop for VhostDev {
    fn drop(&mut self) {
        if self.owner {
            listen::stop(&self.shared);
        }
    }
}

/// A queue the guest set up and the frontend enabled (a stopped or reset
/// one has addresses we must not write to).
fn usable(st: &VringState<GuestMemoryAtomic<Mem>>) -> bool {
    // What a hostile guest put in the rings (addresses, alignment,
    // indices) is checked on every access by virtio-queue and vm-memory.
    st.get_queue().ready() && st.is_enabled()
}

/// Empties our wake-up eventfd (nonblocking: nothing to read is fine).
fn drain(fd: &EventFd) {
    let _ = fd.read();
}
