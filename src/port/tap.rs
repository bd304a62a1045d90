//! A TAP device whose file descriptor this process holds.
//!
//! Created through `/dev/net/tun` (the kernel here refuses TAP creation over
//! rtnetlink). A TAP we create is not persistent, so the kernel removes it
//! when the fd closes, on a clean exit and on a crash alike; a persistent
//! TAP that an operator prepared is attached to and left as it was.
//!
//! The netdev may later be moved to another network namespace (a test VM)
//! or enslaved to a Linux bridge; the fd keeps working in both cases. MTU
//! and link state are set here at open, while the netdev is still in our
//! namespace, because the ioctls address it by name in the caller's one.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use serde::Serialize;

use crate::sys::fd;

pub use crate::sys::ifreq::IFNAMSIZ;
use crate::sys::ifreq::{self, ctl_socket, IfReq, IfReqOp};

/// A valid Linux interface name: 1..=15 bytes, no '/', NUL, or whitespace.
fn check_name(name: &str) -> io::Result<()> {
    let ok = !name.is_empty()
        && name.len() < IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace());
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?}"),
        ))
    }
}

/// How a TAP is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapOptions {
    /// IFF_VNET_HDR with checksum and segmentation offloads, so the kernel
    /// hands over (and takes) 64 KB super-frames. On by default; off gives
    /// the plain one-frame-per-read device.
    pub offload: bool,
    /// IFF_MULTI_QUEUE, so that more fds can attach further queues of the
    /// same device ([`Tap::attach_queue`]): one per dataplane worker, the
    /// kernel spreading flows over them by hash. A device that exists
    /// without it cannot take it; such a TAP is opened single-queue
    /// ([`Tap::multi_queue`] says which).
    pub multi_queue: bool,
}

impl Default for TapOptions {
    fn default() -> TapOptions {
        TapOptions {
            offload: true,
            multi_queue: false,
        }
    }
}

/// What the kernel accepted on this fd (what `TapOptions::offload` got).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Offloads {
    /// Every read and write carries a 12-byte virtio_net_hdr_v1.
    pub vnet_hdr: bool,
    /// TUN_F_CSUM: frames may come with a partial checksum (NEEDS_CSUM).
    pub csum: bool,
    /// TUN_F_TSO4 | TUN_F_TSO6: TCP super-frames both ways.
    pub tso: bool,
    /// TUN_F_USO4 | TUN_F_USO6 (kernel >= 6.2): UDP super-frames.
    pub uso: bool,
}

/// A TAP device (IFF_TAP | IFF_NO_PI): one read or write is one frame, or
/// with [`Offloads::vnet_hdr`] one virtio header plus one (super-)frame.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    mtu: u16,
    ifindex: Option<u32>,
    created: bool,
    offloads: Offloads,
    multi_queue: bool,
}

impl Tap {
    /// Opens TAP `name` without offloads (plain frames), creating it if no
    /// device of that name exists, sets its MTU and brings it up. The fd is
    /// nonblocking.
    pub fn open(name: &str, mtu: u16) -> io::Result<Tap> {
        Tap::open_with(
            name,
            mtu,
            TapOptions {
                offload: false,
                multi_queue: false,
            },
        )
    }

    /// Like [`Tap::open`], with offloads as `opts` asks and the kernel
    /// allows: see [`Tap::offloads`] for what is on.
    pub fn open_with(name: &str, mtu: u16, opts: TapOptions) -> io::Result<Tap> {
        check_name(name)?;
        let file = open_clone_dev()?;
        let fd = file.as_fd();
        let a = attach(fd, name, opts)?;
        let offloads = if a.vnet_hdr {
            offload::enable(fd)?
        } else {
            Offloads::default()
        };
        let mut tap = Tap {
            file,
            name: name.to_owned(),
            mtu,
            ifindex: None,
            created: a.created,
            offloads,
            multi_queue: a.multi_queue,
        };
        tap.configure()?;
        Ok(tap)
    }

    /// Opens one more queue of this multi-queue TAP: a new fd with the same
    /// flags, on which the kernel delivers the flows it hashes to it and
    /// takes frames like on any other. The device stays until its last
    /// queue closes. Not for a single-queue TAP (EINVAL).
    pub fn attach_queue(&self) -> io::Result<Tap> {
        if !self.multi_queue {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let file = open_clone_dev()?;
        let mut flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_MULTI_QUEUE) as i16;
        if self.offloads.vnet_hdr {
            flags |= libc::IFF_VNET_HDR as i16;
        }
        attach_existing(file.as_fd(), &self.name, flags)?;
        // Header size and offloads are the device's, set by the first queue;
        // setting them again per fd is harmless and keeps this fd's view
        // (and a reader's assumptions) explicit.
        let offloads = if self.offloads.vnet_hdr {
            offload::enable(file.as_fd())?
        } else {
            Offloads::default()
        };
        Ok(Tap {
            file,
            name: self.name.clone(),
            mtu: self.mtu,
            ifindex: self.ifindex,
            created: false,
            offloads,
            multi_queue: true,
        })
    }

    /// What a further worker uses for this port: its own queue of a
    /// multi-queue TAP (`true`: the worker polls it), or else a duplicate of
    /// this fd (`false`: the worker only writes to it; reads stay with the
    /// worker that owns the single queue, so frames of one flow are never
    /// read by two threads).
    pub fn queue_for_worker(&self) -> io::Result<(Tap, bool)> {
        if self.multi_queue {
            return Ok((self.attach_queue()?, true));
        }
        Ok((
            Tap {
                file: self.file.try_clone()?,
                name: self.name.clone(),
                mtu: self.mtu,
                ifindex: self.ifindex,
                created: false,
                offloads: self.offloads,
                multi_queue: false,
            },
            false,
        ))
    }

    /// The device has IFF_MULTI_QUEUE: [`Tap::attach_queue`] works.
    pub fn multi_queue(&self) -> bool {
        self.multi_queue
    }

    pub fn offloads(&self) -> Offloads {
        self.offloads
    }

    /// MTU, IFF_UP and the ifindex, through a socket in our namespace.
    fn configure(&mut self) -> io::Result<()> {
        let sock = ctl_socket()?;
        let mut r = IfReq::new(&self.name);
        r.set_int(i32::from(self.mtu));
        ifreq::ifreq(&sock, IfReqOp::SetMtu, &mut r)?;

        let mut r = IfReq::new(&self.name);
        ifreq::ifreq(&sock, IfReqOp::GetFlags, &mut r)?;
        let flags = r.short() | libc::IFF_UP as i16;
        r.set_short(flags);
        ifreq::ifreq(&sock, IfReqOp::SetFlags, &mut r)?;

        let mut r = IfReq::new(&self.name);
        ifreq::ifreq(&sock, IfReqOp::GetIndex, &mut r)?;
        self.ifindex = u32::try_from(r.int()).ok();
        Ok(())
    }

    /// Reads one frame; `WouldBlock` when none is queued. A frame longer than
    /// `buf` is cut to `buf.len()` by the kernel without telling us, so give a
    /// buffer larger than any valid frame and treat a full one as cut.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        fd::read(&self.file, buf)
    }

    /// Writes one frame to the kernel side; `WouldBlock` when its queue is full.
    pub fn write(&self, frame: &[u8]) -> io::Result<usize> {
        fd::write(&self.file, frame)
    }

    /// Writes a virtio header and a frame in one writev(2): no copy to glue
    /// them. Only for a TAP with [`Offloads::vnet_hdr`].
    pub fn write_vnet(&self, hdr: &[u8], frame: &[u8]) -> io::Result<usize> {
        fd::write2(&self.file, hdr, frame)
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The MTU set at open.
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// The ifindex in the namespace where we opened it (it may change if the
    /// netdev is moved to another namespace).
    pub fn ifindex(&self) -> Option<u32> {
        self.ifindex
    }

    /// True when this process created the device (it goes away with us,
    /// unless made persistent).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Whether the device outlives our fds (TUNSETPERSIST): a bridged
    /// port's TAP stays in its bridge across our restarts.
    pub fn set_persist(&self, persist: bool) -> io::Result<()> {
        crate::sys::tun::set_persist(&self.file, persist)
    }
}

/// The clone device, nonblocking: every fd opened on it becomes one TAP
/// queue after TUNSETIFF.
fn open_clone_dev() -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
}

/// What TUNSETIFF gave us (as TUNGETIFF reports it, not as we asked).
struct Attached {
    created: bool,
    vnet_hdr: bool,
    multi_queue: bool,
}

/// TUNSETIFF: first exclusively, which only succeeds when we create the
/// device, then without IFF_TUN_EXCL to attach to an existing persistent one.
/// An existing device must be attached with the flags it was made with, so
/// the ones we asked for are dropped step by step (multi-queue first, then
/// the vnet header) until the kernel takes the fd.
fn attach(fd: BorrowedFd<'_>, name: &str, opts: TapOptions) -> io::Result<Attached> {
    let plain = (libc::IFF_TAP | libc::IFF_NO_PI) as i16;
    let vnet = if opts.offload {
        libc::IFF_VNET_HDR as i16
    } else {
        0
    };
    let mq = if opts.multi_queue {
        libc::IFF_MULTI_QUEUE as i16
    } else {
        0
    };
    let base = plain | vnet | mq;
    let mut r = IfReq::new(name);
    r.set_short(base | libc::IFF_TUN_EXCL as i16);
    let created = match ifreq::ifreq(fd, IfReqOp::TunSetIff, &mut r) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            let mut tries = vec![base];
            for f in [plain | vnet, plain | mq, plain] {
                if !tries.contains(&f) {
                    tries.push(f);
                }
            }
            let mut last = e;
            let mut ok = false;
            for f in tries {
                match attach_existing(fd, name, f) {
                    Ok(()) => {
                        ok = true;
                        break;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = e,
                    Err(e) => {
                        last = e;
                        break;
                    }
                }
            }
            if !ok {
                return Err(io::Error::new(
                    last.kind(),
                    format!("{name} exists and cannot be attached as a TAP: {last}"),
                ));
            }
            false
        }
        Err(e) => return Err(e),
    };
    let mut r = IfReq::new(name);
    ifreq::ifreq(fd, IfReqOp::TunGetIff, &mut r)?;
    let got = r.short();
    Ok(Attached {
        created,
        vnet_hdr: got & libc::IFF_VNET_HDR as i16 != 0,
        multi_queue: got & libc::IFF_MULTI_QUEUE as i16 != 0,
    })
}

fn attach_existing(fd: BorrowedFd<'_>, name: &str, flags: i16) -> io::Result<()> {
    // A queue its last holder just closed is released asynchronously (the
    // kernel frees it after an RCU grace period): EBUSY for a moment, longer
    // on a loaded machine, as when meshwire restarts onto a persistent TAP.
    // A device another process really holds stays busy: given up after
    // ATTACH_BUSY_WAIT.
    let deadline = std::time::Instant::now() + ATTACH_BUSY_WAIT;
    loop {
        let mut r = IfReq::new(name);
        r.set_short(flags);
        match ifreq::ifreq(fd, IfReqOp::TunSetIff, &mut r) {
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

/// How long an attach waits for a busy queue to be released.
const ATTACH_BUSY_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// The vnet header size, byte order and offload ioctls.
mod offload {
    use super::*;
    use crate::sys::tun::{self, IntOp};
    use crate::wire::vnet;

    /// 12-byte little-endian headers, then the widest offload set the
    /// kernel takes: USO needs 6.2, TSO needs CSUM. Falls back step by
    /// step and reports what stuck.
    pub(super) fn enable(fd: BorrowedFd<'_>) -> io::Result<Offloads> {
        tun::set_int(fd, IntOp::VnetHdrSz, vnet::HEADER_LEN as libc::c_int)?;
        // Little-endian is the virtio 1.x order and what the kernel uses
        // on LE hosts anyway; on a BE host it must be set or we misread.
        if let Err(e) = tun::set_int(fd, IntOp::VnetLe, 1) {
            if cfg!(target_endian = "big") {
                return Err(e);
            }
        }
        let csum = libc::TUN_F_CSUM;
        let tso = libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
        let uso = libc::TUN_F_USO4 | libc::TUN_F_USO6;
        let tries = [
            (csum | tso | uso, (true, true, true)),
            (csum | tso, (true, true, false)),
            (csum, (true, false, false)),
            (0, (false, false, false)),
        ];
        let mut last = None;
        for (flags, (c, t, u)) in tries {
            match tun::set_offload(fd, flags) {
                Ok(()) => {
                    return Ok(Offloads {
                        vnet_hdr: true,
                        csum: c,
                        tso: t,
                        uso: u,
                    })
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("TUNSETOFFLOAD")))
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}
