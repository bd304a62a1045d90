//! A port's device behind one interface: what the port layer reads frames
//! from and writes frames to, and what a worker polls.
//!
//! Every kind of port meets the same contract: one read is one frame, or
//! with [`Offloads::vnet_hdr`] a virtio-net header plus one (super-)frame;
//! one write likewise; `fd` is what a worker's epoll watches. A TAP the
//! process opened (or attached to) is the one kind today; the network side
//! of an existing TAP through AF_PACKET (with PACKET_VNET_HDR: the same
//! header) and vhost-user are the next variants. The dataplane sees a
//! [`PortId`](super::PortId) and its [`Queue`]s, never the kind.

use std::io;
use std::os::fd::RawFd;

use super::tap::{Offloads, Tap, TapOptions};

/// How a port is opened.
pub type PortOptions = TapOptions;

/// One queue of a port's device.
#[derive(Debug)]
pub enum Device {
    Tap(Tap),
}

/// What a further worker gets of a port: its own queue of the device, or
/// a write-only handle when the device has one queue (`polled` false:
/// reads stay with the worker that owns it, so frames of one flow are never
/// read by two threads).
#[derive(Debug)]
pub struct Queue {
    pub(super) dev: Device,
    pub(super) polled: bool,
}

impl Queue {
    /// The fd a worker's epoll watches, for a polled queue.
    pub fn poll_fd(&self) -> Option<RawFd> {
        self.polled.then(|| self.dev.fd())
    }
}

impl Device {
    /// Opens (or attaches to) TAP `name`.
    pub fn open_tap(name: &str, mtu: u16, opts: PortOptions) -> io::Result<Device> {
        Tap::open_with(name, mtu, opts).map(Device::Tap)
    }

    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Device::Tap(t) => t.read(buf),
        }
    }

    pub fn write(&self, frame: &[u8]) -> io::Result<usize> {
        match self {
            Device::Tap(t) => t.write(frame),
        }
    }

    /// Writes a virtio-net header and a frame as one.
    pub fn write_vnet(&self, hdr: &[u8], frame: &[u8]) -> io::Result<usize> {
        match self {
            Device::Tap(t) => t.write_vnet(hdr, frame),
        }
    }

    pub fn fd(&self) -> RawFd {
        match self {
            Device::Tap(t) => t.fd(),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Device::Tap(t) => t.name(),
        }
    }

    pub fn mtu(&self) -> u16 {
        match self {
            Device::Tap(t) => t.mtu(),
        }
    }

    pub fn ifindex(&self) -> Option<u32> {
        match self {
            Device::Tap(t) => t.ifindex(),
        }
    }

    /// Whether meshwire created the device (it goes when meshwire exits).
    pub fn created(&self) -> bool {
        match self {
            Device::Tap(t) => t.created(),
        }
    }

    pub fn offloads(&self) -> Offloads {
        match self {
            Device::Tap(t) => t.offloads(),
        }
    }

    /// The device has queues of its own for further workers.
    pub fn multi_queue(&self) -> bool {
        match self {
            Device::Tap(t) => t.multi_queue(),
        }
    }

    /// A further worker's queue of this device.
    pub fn queue_for_worker(&self) -> io::Result<Queue> {
        match self {
            Device::Tap(t) => t.queue_for_worker().map(|(q, polled)| Queue {
                dev: Device::Tap(q),
                polled,
            }),
        }
    }
}
