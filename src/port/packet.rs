//! The network side of an existing TAP, through AF_PACKET: the port kind
//! for a VM whose TAP libvirt (or `qemu -netdev tap`) created and whose
//! file side qemu holds (`[[port]] attach = "vnet3"`).
//!
//! What qemu writes into its TAP arrives on the TAP netdev as received
//! frames; a packet socket bound to that netdev reads them, and what it
//! sends is transmitted on the netdev, which hands it to qemu. So meshwire
//! is the only switch the VM talks to, with no bridge between.
//!
//! - `PACKET_VNET_HDR` with `PACKET_VNET_HDR_SZ` = 12: every read and write
//!   carries the same virtio_net_hdr_v1 as a TAP fd with IFF_VNET_HDR, so
//!   the guest's TSO/USO super-frames and partial checksums pass through the
//!   port layer unchanged (rx.rs cuts them, tx.rs coalesces into them; the
//!   kernel segments in software what the netdev cannot take).
//! - `PACKET_IGNORE_OUTGOING`: our own transmissions (and the host stack's
//!   on that netdev) are not read back.
//! - `PACKET_QDISC_BYPASS`: a send goes straight to the netdev's xmit, as a
//!   TAP write does, not through a qdisc.
//! - Sends are batched by the port layer (`tx_batch.rs`): the frames of a
//!   worker's round toward this port leave with one sendmmsg(2).
//!
//! - A TPACKET_V2 receive ring (`sys::ring`): a batch of frames is taken
//!   from shared memory with no system call per frame; the worker's epoll
//!   still wakes on the socket. A frame larger than a slot (a super-frame)
//!   is also queued whole on the socket (`PACKET_COPY_THRESH`) and read
//!   from there with one recv(2), in ring order. Slots are parsed by
//!   `packet_slot` (hostile-safe); what does not parse is dropped and
//!   counted (`rx_drop_ring`), as are frames the kernel lost to a full ring.
//!
//! The TAP may go away and come back (VM restart, migration): the socket
//! and its ring stay, and [`PacketDev::reattach`] binds it again to
//! whatever netdev has the name now (AF_PACKET sockets may be bound again).

use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::packet_slot::{self, Slot};
use super::tap::Offloads;
use crate::sys::ifreq::{ifindex_of, mtu_of};
use crate::sys::ring::{self, Geometry, RxRing};
use crate::sys::{fd, mmsg, socket, sockopt};
use crate::wire::vnet;

/// `ETH_P_ALL` in network order, as `socket(2)` and `sockaddr_ll` want it.
const ALL: u16 = (libc::ETH_P_ALL as u16).to_be();

/// A packet socket on the netdev named `ifname`.
#[derive(Debug)]
pub struct PacketDev {
    sock: Arc<OwnedFd>,
    ifname: String,
    /// The ifindex the socket is bound to (0: none, the netdev is gone),
    /// shared with the workers' handles on the same socket.
    bound: Arc<AtomicU32>,
    /// The receive ring, on the reading device only (a worker's handle
    /// writes).
    rx: Option<Rx>,
    /// The netdev's MTU as last looked up, for the send side: looking it
    /// up costs three system calls (socket, ioctl, close), which per frame
    /// sent would cost more than the send. Refreshed by every [`mtu`]
    /// lookup (each receive batch, each reattach check, about once a
    /// second) and shared with the workers' handles.
    ///
    /// [`mtu`]: PacketDev::mtu
    mtu: Arc<AtomicU16>,
}

/// The reading side: the ring, the next slot to look at, and the frames
/// dropped there since the port layer last took the count.
#[derive(Debug)]
struct Rx {
    ring: RxRing,
    head: AtomicUsize,
    drops: AtomicU64,
}

/// The ring's memory per attached port (slots of one MTU-sized frame).
const RING_BYTES: usize = 1 << 20;

/// Slots for a netdev of `mtu`: the smallest power of two holding the
/// slot header, virtio header and a frame of MTU + Ethernet header + two
/// tags (af_packet.c puts the frame at 78 bytes; 128 leaves room), at least
/// 2 KB; as many as fit in [`RING_BYTES`], at least 64. Larger frames come
/// through the copy path.
fn geometry(mtu: u16) -> Geometry {
    let frame_size = (usize::from(mtu) + 22 + 128).next_power_of_two().max(2048);
    let block_size = frame_size.max(ring::page_size());
    let per_block = block_size / frame_size;
    let frames = (RING_BYTES / frame_size).max(64).div_ceil(per_block) * per_block;
    Geometry {
        block_size,
        frame_size,
        frames,
    }
}

impl PacketDev {
    /// Opens a packet socket and binds it to `ifname`. A device that does
    /// not exist yet (the VM is not running: meshwire started first, or the
    /// VM is being restarted) leaves the socket unbound, with a warning;
    /// [`PacketDev::reattach`] binds it when the device appears.
    pub fn open(ifname: &str) -> io::Result<PacketDev> {
        let ifindex = ifindex_of(ifname)?.unwrap_or(0);
        // Protocol 0: no frame is taken until the bind below names the
        // netdev and ETH_P_ALL (with a protocol here the socket would take
        // every netdev's frames, onto its plain queue, before the ring).
        let sock = socket::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )?;
        // The virtio header before the ring: the kernel refuses it after.
        for (opt, v) in [
            (libc::PACKET_VNET_HDR, 1),
            (libc::PACKET_VNET_HDR_SZ, vnet::HEADER_LEN as i32),
            (libc::PACKET_IGNORE_OUTGOING, 1),
            (libc::PACKET_QDISC_BYPASS, 1),
            // Any frame too long for its slot is also queued whole.
            (libc::PACKET_COPY_THRESH, 1),
        ] {
            sockopt::set_int(&sock, libc::SOL_PACKET, opt, v)?;
        }
        let mtu = if ifindex != 0 {
            mtu_of(ifname).unwrap_or(1500)
        } else {
            1500
        };
        let ring = RxRing::new(&sock, geometry(mtu))?;
        if ifindex != 0 {
            socket::bind_packet(&sock, ifindex, ALL)?;
        } else {
            tracing::warn!(device = %ifname, "no such device yet: the port waits for it");
        }
        Ok(PacketDev {
            sock: Arc::new(sock),
            ifname: ifname.to_owned(),
            bound: Arc::new(AtomicU32::new(ifindex)),
            rx: Some(Rx {
                ring,
                head: AtomicUsize::new(0),
                drops: AtomicU64::new(0),
            }),
            mtu: Arc::new(AtomicU16::new(mtu)),
        })
    }

    /// Binds the socket again when the netdev of that name is another one
    /// than the bound (it went and came back) or none is bound. Returns
    /// whether the socket is bound now.
    pub fn reattach(&self) -> bool {
        let now = ifindex_of(&self.ifname).ok().flatten();
        // The MTU may have changed with the device (or without it).
        self.mtu();
        let bound = self.bound.load(Ordering::Relaxed);
        match now {
            Some(i) if i == bound => true,
            Some(i) => match socket::bind_packet(&*self.sock, i, ALL) {
                Ok(()) => {
                    self.bound.store(i, Ordering::Relaxed);
                    tracing::info!(device = %self.ifname, ifindex = i, "attached again");
                    true
                }
                Err(_) => false,
            },
            None => {
                if bound != 0 {
                    self.bound.store(0, Ordering::Relaxed);
                    tracing::warn!(device = %self.ifname, "device gone: waiting for it");
                }
                false
            }
        }
    }

    /// Reads one virtio header and frame from the ring (or, for a frame
    /// larger than a slot, from the socket); `WouldBlock` when none is
    /// queued. A frame longer than `buf` reads as `buf.len()` (too long:
    /// the port layer drops it). The netdev going away shows as one error
    /// (ENETDOWN), reported as `WouldBlock` here: the port stays and
    /// [`PacketDev::reattach`] binds it again when the netdev is back.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(rx) = &self.rx else {
            return self.recv(buf);
        };
        // Bounded: each turn consumes a slot, and the kernel may refill.
        for _ in 0..rx.ring.frames() {
            let i = rx.head.load(Ordering::Relaxed);
            let taken = rx.ring.with_slot(i, |slot| {
                let p = packet_slot::parse(slot);
                let n = match &p.slot {
                    Slot::Frame { vnet, frame } => copy_out(slot, vnet, frame, buf),
                    _ => 0,
                };
                (p, n)
            });
            let Some((p, n)) = taken else {
                // Empty ring: collect a pending error (the netdev went),
                // which would otherwise keep epoll reporting the socket.
                return match ring::take_error(&*self.sock) {
                    Ok(()) => Err(io::ErrorKind::WouldBlock.into()),
                    Err(e) => Err(detached(e)),
                };
            };
            rx.ring.release(i);
            rx.head.store((i + 1) % rx.ring.frames(), Ordering::Relaxed);
            if p.losing {
                let lost = ring::take_drops(&*self.sock).unwrap_or(0);
                rx.drops.fetch_add(u64::from(lost), Ordering::Relaxed);
            }
            match p.slot {
                Slot::Frame { .. } => return Ok(n),
                // The whole frame is next on the socket's queue (copies
                // are queued in ring order).
                Slot::Copy => {
                    let mut r = fd::recv(&*self.sock, buf, libc::MSG_TRUNC);
                    if matches!(&r, Err(e) if e.kind() != io::ErrorKind::WouldBlock) {
                        // A pending error (the netdev went) is reported
                        // before queued data: the copy is still there, and
                        // left there it would pair with the next copy slot.
                        r = fd::recv(&*self.sock, buf, libc::MSG_TRUNC);
                    }
                    if let Ok(n) = r {
                        return Ok(n.min(buf.len()));
                    }
                }
                Slot::Cut | Slot::Bad => {}
            }
            rx.drops.fetch_add(1, Ordering::Relaxed);
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Frames dropped at the ring (cut or bad slots, a full ring) since
    /// the last call.
    pub fn take_drops(&self) -> u64 {
        self.rx
            .as_ref()
            .map_or(0, |rx| rx.drops.swap(0, Ordering::Relaxed))
    }

    /// The ring's slot size and count (0, 0 on a worker's handle).
    pub fn ring_geometry(&self) -> (usize, usize) {
        self.rx
            .as_ref()
            .map_or((0, 0), |rx| (rx.ring.frame_size(), rx.ring.frames()))
    }

    /// One datagram from the socket's own queue.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match fd::recv(&*self.sock, buf, libc::MSG_TRUNC) {
            // MSG_TRUNC: the real length, so a cut frame shows as too long.
            Ok(n) => Ok(n.min(buf.len())),
            Err(e) => Err(detached(e)),
        }
    }

    /// Writes a virtio header and a frame as one datagram.
    pub fn write_vnet(&self, hdr: &[u8], frame: &[u8]) -> io::Result<usize> {
        // The socket is bound, so no address is needed.
        fd::write2(&*self.sock, hdr, frame).map_err(detached)
    }

    /// Sends staged datagrams (each a virtio header and a frame) with as
    /// few sendmmsg calls as the kernel allows, in order; `done` hears of
    /// each one's outcome (see `sys::mmsg::send_each`), a netdev that went
    /// away as `WouldBlock` like a single write. Returns the calls made that
    /// took frames.
    pub fn send_batch(
        &self,
        bytes: &[u8],
        ranges: &[Range<usize>],
        mut done: impl FnMut(usize, io::Result<usize>),
    ) -> usize {
        mmsg::send_each::<{ super::tx_batch::BATCH_FRAMES }>(&*self.sock, bytes, ranges, |i, r| {
            done(i, r.map_err(detached))
        })
    }

    /// Writes one datagram as it is: a virtio header and a frame already
    /// joined (as a write to a TAP with IFF_VNET_HDR takes them).
    pub fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        fd::send(&*self.sock, bytes, 0).map_err(detached)
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// The attached netdev's name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn ifindex(&self) -> Option<u32> {
        Some(self.bound.load(Ordering::Relaxed)).filter(|&i| i != 0)
    }

    /// The netdev's MTU now (libvirt's, not ours to set), or 1500 when it
    /// is gone; remembered for [`PacketDev::cached_mtu`].
    pub fn mtu(&self) -> u16 {
        let mtu = mtu_of(&self.ifname).unwrap_or(1500);
        self.mtu.store(mtu, Ordering::Relaxed);
        mtu
    }

    /// The MTU as last looked up (no system call): what the send side
    /// checks frames against. A change shows within a receive batch or a
    /// second; a frame sent meanwhile over the new MTU is refused by the
    /// kernel and counted (`tx_errors`).
    pub fn cached_mtu(&self) -> u16 {
        self.mtu.load(Ordering::Relaxed)
    }

    /// Super-frames and partial checksums both ways: the kernel hands over
    /// what the netdev received as it was, and segments in software what we
    /// send that the netdev cannot take.
    pub fn offloads(&self) -> Offloads {
        Offloads {
            vnet_hdr: true,
            csum: true,
            tso: true,
            uso: true,
        }
    }

    /// A worker's handle on the same socket (write only: worker 0 reads, so
    /// the frames of one flow are never read by two threads).
    pub fn handle(&self) -> PacketDev {
        PacketDev {
            sock: Arc::clone(&self.sock),
            ifname: self.ifname.clone(),
            bound: Arc::clone(&self.bound),
            rx: None,
            mtu: Arc::clone(&self.mtu),
        }
    }
}

/// Puts a ring frame into `buf` as a read of the socket would: the slot's
/// 10-byte virtio header, a zero `num_buffers` (the v1 header's last
/// field), the frame. Returns the length, `buf.len()` when it is too short
/// (the port layer drops that as too long).
fn copy_out(slot: &[u8], vnet: &Range<usize>, frame: &Range<usize>, buf: &mut [u8]) -> usize {
    let (Some(hdr), Some(bytes)) = (slot.get(vnet.clone()), slot.get(frame.clone())) else {
        return buf.len();
    };
    let n = vnet::HEADER_LEN + bytes.len();
    if hdr.len() > vnet::HEADER_LEN || n > buf.len() {
        return buf.len();
    }
    buf[..hdr.len()].copy_from_slice(hdr);
    buf[hdr.len()..vnet::HEADER_LEN].fill(0);
    buf[vnet::HEADER_LEN..n].copy_from_slice(bytes);
    n
}

/// A netdev that went away (ENETDOWN, ENXIO, ENODEV) is no error of the
/// port's: it waits for the netdev to come back.
fn detached(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ENETDOWN | libc::ENXIO | libc::ENODEV) => io::ErrorKind::WouldBlock.into(),
        _ => e,
    }
}
