//! A port's device behind one interface: what the port layer reads frames
//! from and writes frames to, and what a worker polls.
//!
//! Every kind of port meets the same contract: one read is one frame, or
//! with [`Offloads::vnet_hdr`] a virtio-net header plus one (super-)frame;
//! one write likewise; `fd` is what a worker's epoll watches. The kinds: a
//! TAP the process opened (or attached to as its file side), and the
//! network side of a TAP someone else holds, through AF_PACKET with the
//! same virtio header (`packet.rs`), and the virtqueues of a VM whose qemu
//! connected over vhost-user (`vhost/`). The dataplane sees a
//! [`PortId`](super::PortId) and its [`Queue`]s, never the kind.

use std::io;
use std::os::fd::RawFd;

use super::packet::PacketDev;
use super::tap::{Offloads, Tap, TapOptions};
use super::vhost::VhostDev;

/// How a port is opened.
pub type PortOptions = TapOptions;

/// One queue of a port's device.
#[derive(Debug)]
pub enum Device {
    /// A TAP whose file side this process holds.
    Tap(Tap),
    /// The network side of a TAP someone else holds (AF_PACKET).
    Packet(PacketDev),
    /// A VM's virtio-net device over vhost-user (`vhost/`).
    Vhost(VhostDev),
}

/// What a further worker gets of a port: its own queue of the device, or
/// a write-only handle when the device has one queue (`polled` false:
/// reads stay with the worker that owns it, so frames of one flow are never
/// read by two threads).
#[derive(Debug)]
pub struct Queue {
    pub(super) dev: Device,
    pub(super) polled: bool,
    /// The port's name (set by `Ports::queue_for_worker`).
    pub(super) name: String,
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
            Device::Packet(p) => p.read(buf),
            Device::Vhost(v) => v.read(buf),
        }
    }

    pub fn write(&self, frame: &[u8]) -> io::Result<usize> {
        match self {
            Device::Tap(t) => t.write(frame),
            Device::Packet(p) => p.write(frame),
            Device::Vhost(v) => v.write(frame),
        }
    }

    /// Writes a virtio-net header and a frame as one.
    pub fn write_vnet(&self, hdr: &[u8], frame: &[u8]) -> io::Result<usize> {
        match self {
            Device::Tap(t) => t.write_vnet(hdr, frame),
            Device::Packet(p) => p.write_vnet(hdr, frame),
            Device::Vhost(v) => v.write_vnet(hdr, frame),
        }
    }

    pub fn fd(&self) -> RawFd {
        match self {
            Device::Tap(t) => t.fd(),
            Device::Packet(p) => p.fd(),
            Device::Vhost(v) => v.fd(),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Device::Tap(t) => t.name(),
            Device::Packet(p) => p.ifname(),
            Device::Vhost(v) => v.path(),
        }
    }

    pub fn mtu(&self) -> u16 {
        match self {
            Device::Tap(t) => t.mtu(),
            Device::Packet(p) => p.mtu(),
            Device::Vhost(v) => v.mtu(),
        }
    }

    /// The MTU the send side checks frames against: an attached port's as
    /// last looked up (a lookup per frame would cost more than the send).
    pub fn tx_mtu(&self) -> u16 {
        match self {
            Device::Packet(p) => p.cached_mtu(),
            _ => self.mtu(),
        }
    }

    pub fn ifindex(&self) -> Option<u32> {
        match self {
            Device::Tap(t) => t.ifindex(),
            Device::Packet(p) => p.ifindex(),
            Device::Vhost(_) => None,
        }
    }

    /// Whether meshwire created the device (it goes when meshwire exits).
    pub fn created(&self) -> bool {
        match self {
            Device::Tap(t) => t.created(),
            Device::Packet(_) | Device::Vhost(_) => false,
        }
    }

    pub fn offloads(&self) -> Offloads {
        match self {
            Device::Tap(t) => t.offloads(),
            Device::Packet(p) => p.offloads(),
            Device::Vhost(v) => v.offloads(),
        }
    }

    /// The device has queues of its own for further workers.
    pub fn multi_queue(&self) -> bool {
        match self {
            Device::Tap(t) => t.multi_queue(),
            Device::Packet(_) | Device::Vhost(_) => false,
        }
    }

    /// A further worker's queue of this device.
    pub fn queue_for_worker(&self) -> io::Result<Queue> {
        match self {
            Device::Tap(t) => t.queue_for_worker().map(|(q, polled)| Queue {
                dev: Device::Tap(q),
                polled,
                name: String::new(),
            }),
            Device::Packet(p) => Ok(Queue {
                dev: Device::Packet(p.handle()),
                polled: false,
                name: String::new(),
            }),
            Device::Vhost(v) => Ok(Queue {
                dev: Device::Vhost(v.handle()),
                polled: false,
                name: String::new(),
            }),
        }
    }

    /// Opens a packet socket on the existing netdev `ifname`.
    pub fn attach(ifname: &str) -> io::Result<Device> {
        PacketDev::open(ifname).map(Device::Packet)
    }

    /// Listens on `path` for the vhost-user connection of a VM's qemu.
    pub fn vhost_user(
        path: &std::path::Path,
        access: super::vhost::SocketAccess,
        mtu: u16,
        offload: bool,
    ) -> io::Result<Device> {
        refuse_non_socket(path)?;
        VhostDev::open(path, access, mtu, offload).map(Device::Vhost)
    }

    /// What a batch put into the device leaves now: the guest of a
    /// vhost-user port is notified once per batch, not per frame.
    pub fn flush(&self) {
        if let Device::Vhost(v) = self {
            v.flush();
        }
    }

    /// Frames the device dropped before the port layer saw them (an
    /// attached port's ring) since the last call.
    pub fn take_rx_drops(&self) -> u64 {
        match self {
            Device::Packet(p) => p.take_drops(),
            Device::Tap(_) | Device::Vhost(_) => 0,
        }
    }

    /// A vhost-user port's queues (`ctl ports`).
    pub fn vhost_info(&self) -> Option<super::vhost::queues::VhostInfo> {
        match self {
            Device::Vhost(v) => Some(v.info()),
            _ => None,
        }
    }

    /// A device that can go away and come back looks for it again; true
    /// while it is there.
    pub fn reattach(&self) -> bool {
        match self {
            Device::Tap(_) => true,
            Device::Packet(p) => p.reattach(),
            Device::Vhost(v) => v.connected(),
        }
    }
}

/// The listener replaces what is at a vhost-user path (a stale socket of
/// an earlier run): anything else there is refused, so a mistyped path (or
/// a `ctl port add` from a member of the control group) cannot delete a
/// file, and a symlink is not followed.
fn refuse_non_socket(path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket: meshwire replaces only a stale socket there",
                path.display()
            ),
        )),
        _ => Ok(()),
    }
}
