//! The device as `vhost-user-backend` drives it: the features offered to
//! the guest and what its kicks do.
//!
//! The crate runs the vhost-user protocol on its own thread and watches the
//! kick eventfds on another; both only touch the [`Shared`] state. The
//! frames themselves move on the dataplane worker that polls the port
//! (`mod.rs`), so a kick only makes our eventfd readable: one write per
//! kick, and the guest kicks once per batch it queues (with EVENT_IDX only
//! after we said the queue ran empty).

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_user_backend::bitmap::BitmapMmapRegion;
use vhost_user_backend::VhostUserBackend;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use super::queues::MAX_PAIRS;
use super::{Mem, Shared, Vring, TX_QUEUE};
use vm_memory::GuestMemoryAtomic;

/// virtio feature bit numbers (virtio 1.2, 5.1.3 and 6).
pub mod features {
    pub use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1 as VERSION_1;
    pub use virtio_bindings::virtio_net::{
        VIRTIO_NET_F_CSUM as CSUM, VIRTIO_NET_F_GUEST_ANNOUNCE as GUEST_ANNOUNCE,
        VIRTIO_NET_F_GUEST_CSUM as GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4 as GUEST_TSO4,
        VIRTIO_NET_F_GUEST_TSO6 as GUEST_TSO6, VIRTIO_NET_F_GUEST_USO4 as GUEST_USO4,
        VIRTIO_NET_F_GUEST_USO6 as GUEST_USO6, VIRTIO_NET_F_HOST_TSO4 as HOST_TSO4,
        VIRTIO_NET_F_HOST_TSO6 as HOST_TSO6, VIRTIO_NET_F_HOST_USO as HOST_USO,
        VIRTIO_NET_F_MQ as MQ, VIRTIO_NET_F_MRG_RXBUF as MRG_RXBUF,
    };
    pub use virtio_bindings::virtio_ring::{
        VIRTIO_RING_F_EVENT_IDX as EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC as INDIRECT_DESC,
    };
    /// vhost-user's own bit: the frontend may negotiate protocol features.
    pub const PROTOCOL_FEATURES: u32 = 30;
    /// vhost's own bit: the backend logs its writes into guest memory in
    /// the frontend's dirty bitmap (needed for live migration: qemu
    /// refuses to migrate a vhost device without it).
    pub const LOG_ALL: u32 = 26;

    /// Bits as a mask.
    pub const fn mask(bits: &[u32]) -> u64 {
        let mut m = 0;
        let mut i = 0;
        while i < bits.len() {
            m |= 1 << bits[i];
            i += 1;
        }
        m
    }

    /// Always offered. No VIRTIO_NET_F_MAC: the guest's MAC is its own
    /// (qemu's `mac=`), the port learns it like a TAP port's. MQ: up to
    /// `queues::MAX_PAIRS` queue pairs (qemu's `queues=`). PROTOCOL_FEATURES (vhost-user's own bit 30) because
    /// qemu cannot start a vhost-user net device without it (its
    /// vhost_net_start restores the rings' enable state with
    /// SET_VRING_ENABLE, which needs it); see vendor/README.md for the one
    /// check of the crates that had to follow. LOG_ALL for live migration
    /// (the writes are logged, `Mem`'s bitmap). GUEST_ANNOUNCE is qemu's
    /// announcement for a vhost-user NIC: its RARP rounds cannot reach the
    /// wire through a vhost-user netdev (qemu would ask the backend to send
    /// them, VHOST_USER_SEND_RARP, which the crates do not handle), so with
    /// this bit qemu asks the guest instead, and its driver sends a
    /// gratuitous ARP (and NA) itself at the destination; qemu masks the bit
    /// from the guest with `guest_announce=off`.
    pub const BASE: u64 = mask(&[
        VERSION_1,
        MRG_RXBUF,
        EVENT_IDX,
        INDIRECT_DESC,
        GUEST_ANNOUNCE,
        MQ,
    ]) | 1 << PROTOCOL_FEATURES
        | 1 << LOG_ALL;
    /// With `offload` (the default): the guest sends partial checksums and
    /// TSO and USO super-frames (HOST_*), which the port cuts and completes
    /// as a TAP's; it may take them (GUEST_*), which the port coalesces
    /// (UDP with `udp_coalescing`). USO needs qemu 8.2 and a guest kernel
    /// 6.2 or later; older ones do not know the bits and never ack them.
    pub const OFFLOADS: u64 = mask(&[
        CSUM, GUEST_CSUM, HOST_TSO4, HOST_TSO6, GUEST_TSO4, GUEST_TSO6, HOST_USO, GUEST_USO4,
        GUEST_USO6,
    ]);
}

/// Largest virtqueue the guest may set up (qemu's default is 256).
const MAX_QUEUE_SIZE: usize = 1024;

/// What the backend crate holds of the port: the shared state.
#[derive(Debug, Clone)]
pub struct Backend {
    pub(super) shared: Arc<Shared>,
}

impl VhostUserBackend for Backend {
    type Bitmap = BitmapMmapRegion;
    type Vring = Vring;

    fn num_queues(&self) -> usize {
        2 * MAX_PAIRS
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        if self.shared.offload {
            features::BASE | features::OFFLOADS
        } else {
            features::BASE
        }
    }

    fn acked_features(&self, f: u64) {
        self.shared.acked.store(f, Ordering::Relaxed);
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        // The dirty log comes as a shared memory fd (SET_LOG_BASE), which
        // the crate maps and hands to `Mem`'s bitmaps. Nothing else beyond
        // the base protocol: no config space (no MAC, no status), one
        // queue pair.
        // MQ: qemu asks how many queues we have (GET_QUEUE_NUM) before it
        // offers the guest more than one pair.
        VhostUserProtocolFeatures::LOG_SHMFD | VhostUserProtocolFeatures::MQ
    }

    fn set_event_idx(&self, _enabled: bool) {
        // The crate sets it on every vring; our code reads it from there.
    }

    fn update_memory(&self, _mem: GuestMemoryAtomic<Mem>) -> io::Result<()> {
        // The same atomic as ours: its content was replaced already.
        Ok(())
    }

    /// The kick thread's exit: without one it never ends, and dropping the
    /// connection's device (which joins it) would hang the listener.
    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC).ok()
    }

    fn handle_event(
        &self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[Vring],
        _thread_id: usize,
    ) -> io::Result<()> {
        self.shared.adopt(vrings);
        // TX queues are the odd ones (1, 3, ...).
        if usize::from(device_event) % 2 == TX_QUEUE {
            self.shared.notify.write(1)?;
        }
        // RX queue kicks (the guest gave buffers) need nothing: frames for
        // the guest are put in when they come, and dropped while it has
        // none, as a full TAP queue drops them.
        Ok(())
    }
}
