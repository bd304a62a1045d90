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
//!
//! The TAP may go away and come back (VM restart, migration): the socket
//! stays, and [`PacketDev::reattach`] binds it again to whatever netdev
//! has the name now (AF_PACKET sockets may be bound again).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::tap::Offloads;
use crate::sys::ifreq::{ifindex_of, mtu_of};
use crate::sys::{fd, socket, sockopt};
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
}

impl PacketDev {
    /// Opens a packet socket and binds it to `ifname`. A device that does
    /// not exist yet (the VM is not running: meshwire started first, or the
    /// VM is being restarted) leaves the socket unbound, with a warning;
    /// [`PacketDev::reattach`] binds it when the device appears.
    pub fn open(ifname: &str) -> io::Result<PacketDev> {
        let ifindex = ifindex_of(ifname)?.unwrap_or(0);
        let sock = socket::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            i32::from(ALL),
        )?;
        for (opt, v) in [
            (libc::PACKET_VNET_HDR, 1),
            (libc::PACKET_VNET_HDR_SZ, vnet::HEADER_LEN as i32),
            (libc::PACKET_IGNORE_OUTGOING, 1),
            (libc::PACKET_QDISC_BYPASS, 1),
        ] {
            sockopt::set_int(&sock, libc::SOL_PACKET, opt, v)?;
        }
        if ifindex != 0 {
            socket::bind_packet(&sock, ifindex, ALL)?;
        } else {
            tracing::warn!(device = %ifname, "no such device yet: the port waits for it");
        }
        Ok(PacketDev {
            sock: Arc::new(sock),
            ifname: ifname.to_owned(),
            bound: Arc::new(AtomicU32::new(ifindex)),
        })
    }

    /// Binds the socket again when the netdev of that name is another one
    /// than the bound (it went and came back) or none is bound. Returns
    /// whether the socket is bound now.
    pub fn reattach(&self) -> bool {
        let now = ifindex_of(&self.ifname).ok().flatten();
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

    /// Reads one virtio header and frame; `WouldBlock` when none is queued.
    /// The netdev going away shows as one error (ENETDOWN), reported as
    /// `WouldBlock` here: the port stays and [`PacketDev::reattach`] binds
    /// it again when the netdev is back.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
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
    /// is gone.
    pub fn mtu(&self) -> u16 {
        mtu_of(&self.ifname).unwrap_or(1500)
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
        }
    }
}

/// A netdev that went away (ENETDOWN, ENXIO, ENODEV) is no error of the
/// port's: it waits for the netdev to come back.
fn detached(e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ENETDOWN | libc::ENXIO | libc::ENODEV) => io::ErrorKind::WouldBlock.into(),
        _ => e,
    }
}
