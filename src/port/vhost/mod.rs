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
pub mod queues;
pub mod rx;
pub mod tx;

pub use listen::SocketAccess;

#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use vhost_user_backend::bitmap::BitmapMmapRegion;
use vhost_user_backend::{VringMutex, VringState};
use virtio_queue::QueueT;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
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
    /// Which RX queues the guest has not yet been told about.
    rx: queues::RxSignals,
    /// The TX queue (pair) read last: reading goes on from there.
    next_tx: AtomicUsize,
    /// Frames per queue pair.
    counts: queues::QueueCounters,
    /// Descriptor chains the guest gave that were not usable (addresses
    /// outside its memory, a chain too long, no room for the header).
    pub bad_chains: AtomicU64,
    /// Set when the port goes: the listener stops.
    stopping: AtomicBool,
    /// The socket file we bound (device, inode): the one `stop` removes.
    socket: std::sync::OnceLock<(u64, u64)>,
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
    fn new(path: &Path, offload: bool) -> io::Result<Shared> {
        Ok(Shared {
            path: path.to_owned(),
            mem: GuestMemoryAtomic::new(Mem::default()),
            vrings: Mutex::new(None),
            acked: AtomicU64::new(0),
            offload,
            notify: EventFd::new(EFD_NONBLOCK)?,
            rx: queues::RxSignals::default(),
            next_tx: AtomicUsize::new(0),
            counts: queues::QueueCounters::default(),
            bad_chains: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            socket: std::sync::OnceLock::new(),
            conn: Mutex::new(None),
        })
    }

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
        self.rx.reset();
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
    /// qemu, who needs the `access` given to the socket file.
    pub fn open(
        path: &Path,
        access: SocketAccess,
        mtu: u16,
        offload: bool,
    ) -> io::Result<VhostDev> {
        let shared = Arc::new(Shared::new(path, offload)?);
        listen::spawn(Arc::clone(&shared), access)?;
        Ok(VhostDev {
            shared,
            mtu,
            owner: true,
        })
    }

    /// Gives the socket file another group and mode.
    pub fn set_access(&self, access: SocketAccess) -> io::Result<()> {
        listen::apply(&self.shared.path, access)
    }

    /// Reads the next frame the guest sent on any of its TX queues: a
    /// virtio header and the frame; `WouldBlock` when they are all empty
    /// (or no guest is connected).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        queues::read(&self.shared, &self.shared.next_tx, buf)
    }

    /// Puts a virtio header and a frame into the guest's RX queue for its
    /// flow. No room (the guest has not given buffers) is `WouldBlock`, as
    /// a full TAP.
    pub fn write_vnet(&self, hdr: &[u8], frame: &[u8]) -> io::Result<usize> {
        let mergeable = self.acked(features::MRG_RXBUF);
        match queues::write(&self.shared, hdr, frame, mergeable) {
            Ok(()) => Ok(hdr.len() + frame.len()),
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

    /// Tells the guest about frames put into its RX queues since the last
    /// time, if it asked to hear (once per dataplane batch).
    pub fn flush(&self) {
        queues::flush(&self.shared);
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
            uso: csum && self.acked(features::GUEST_USO4) && self.acked(features::GUEST_USO6),
        }
    }

    /// The port's queues for `ctl ports`.
    pub fn info(&self) -> queues::VhostInfo {
        queues::info(&self.shared)
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
