//! The registry of ports: PortId -> TAP and its counters.
//!
//! Owned by the dataplane thread that polls the TAP fds, so counters are
//! plain integers: no lock or atomic on the per-frame path.

use std::collections::BTreeMap;
use std::io;
use std::time::Instant;

use std::os::fd::RawFd;
use tracing::warn;

use serde::Serialize;

pub use super::counters::PortCounters;
use super::device::{Device, PortOptions, Queue};
use super::rx::PortRx;
use super::tap::{Offloads, Tap};
use super::tx::{send_plain, GroPool, Seg};
use super::tx_batch::{self, TxBatch};
use super::PortId;
use crate::log::RateLimit;
#[cfg(test)]
use crate::wire::ethernet;
use crate::wire::mtu;

/// Drop warnings per port per second.
const PORT_LOG_PER_SECOND: u32 = 2;

/// At most this many ports per process: bounds the registry.
pub const MAX_PORTS: usize = 4096;

/// Largest frame a port carries: its MTU plus the Ethernet header and one
/// 802.1Q tag ([`mtu::max_frame_len`]).
pub fn max_frame_len(mtu: u16) -> usize {
    mtu::max_frame_len(usize::from(mtu))
}

/// One port: its device and what went through it.
#[derive(Debug)]
pub struct Port {
    /// The port's name (the TAP's, or the one given to an attached device).
    pub name: String,
    pub dev: Device,
    pub counters: PortCounters,
    /// This set reads the queue (false: a worker's duplicate of a
    /// single-queue TAP's fd, for writes only).
    pub polled: bool,
    /// Merge UDP datagrams of a flow into USO super-frames (off by
    /// default: see [`Ports::set_udp_coalescing`]).
    pub udp_coalescing: bool,
    /// The Linux bridge this port's TAP is a port of (`bridged.rs`).
    pub bridge: Option<String>,
    /// Frames staged for one sendmmsg per round (attached ports only).
    pub(super) batch: Option<Box<TxBatch>>,
    /// Super-frame cut by the one-frame `recv` (tests only; allocated on
    /// first use).
    #[cfg(test)]
    rx: Option<Box<PortRx>>,
    /// Bounds the port's drop warnings.
    log: RateLimit,
}

impl Port {
    /// A frame too big for the port was dropped (and counted): say so, a
    /// few times a second at most. A guest with a larger MTU than its port
    /// loses its full-size frames this way, which nothing else would show.
    pub(super) fn warn_oversize(&mut self, dir: &str, len: usize, mtu: u16) {
        if let Some(suppressed) = self.log.allow(Instant::now()) {
            warn!(
                port = %self.name,
                len,
                mtu,
                suppressed,
                "frame {dir} the port dropped: longer than the port's MTU allows"
            );
        }
    }
}

/// What `meshwire ctl` shows about a port.
#[derive(Debug, Clone, Serialize)]
pub struct PortInfo {
    pub id: PortId,
    pub name: String,
    /// The netdev behind the port (the TAP itself, or the one attached to).
    pub device: String,
    pub ifindex: Option<u32>,
    pub mtu: u16,
    /// Whether meshwire created the TAP (it disappears when meshwire exits,
    /// unless bridged).
    pub created: bool,
    /// The Linux bridge the TAP is a port of (`[[port]] bridge`); its TAP
    /// is persistent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
    /// The offloads the kernel accepted on this TAP.
    pub offloads: Offloads,
    pub counters: PortCounters,
    /// A vhost-user port's connection and queues.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vhost: Option<super::vhost::queues::VhostInfo>,
}

/// Counters that belong to no port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PortsCounters {
    /// A send or receive named a port that is not (or no longer) registered.
    pub unknown_port: u64,
    /// A port could not be added because MAX_PORTS are open.
    pub refused_full: u64,
}

#[derive(Debug, Default)]
pub struct Ports {
    ports: BTreeMap<PortId, Port>,
    next_id: PortId,
    counters: PortsCounters,
    /// Super-frames `send_gro` is building, shared by all ports.
    gro: GroPool,
    /// The vhost-user ports, notified at each flush.
    vhost: Vec<PortId>,
    /// The ports whose sends are staged (attached ones), sent at each flush.
    batched: Vec<PortId>,
}

impl Ports {
    pub fn new() -> Ports {
        Ports::default()
    }

    /// Opens (or attaches to) TAP `name` with the default options (offloads
    /// on) and registers it.
    pub fn open(&mut self, name: &str, mtu: u16) -> io::Result<PortId> {
        self.open_with(name, mtu, PortOptions::default())
    }

    /// Opens (or attaches to) TAP `name` with `opts` and registers it.
    pub fn open_with(&mut self, name: &str, mtu: u16, opts: PortOptions) -> io::Result<PortId> {
        self.check_room(name)?;
        let dev = Device::open_tap(name, mtu, opts)?;
        self.insert_device(name, dev)
    }

    /// Registers port `name` on the network side of the existing netdev
    /// `ifname` (a TAP whose file side qemu holds).
    pub fn attach(&mut self, name: &str, ifname: &str) -> io::Result<PortId> {
        self.check_room(name)?;
        if self.ports.values().any(|p| p.dev.name() == ifname) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{ifname} is already a port"),
            ));
        }
        let dev = Device::attach(ifname).map_err(|e| match e.kind() {
            // The one capability beyond CAP_NET_ADMIN a port can need:
            // say which, a bare EPERM leaves the operator guessing.
            io::ErrorKind::PermissionDenied => io::Error::new(
                e.kind(),
                format!("{e}: attaching opens an AF_PACKET socket, which needs CAP_NET_RAW"),
            ),
            _ => e,
        })?;
        self.insert_device(name, dev)
    }

    /// Registers port `name` as the vhost-user device of a VM whose qemu
    /// connects to the unix socket `path`, given `access` (`vhost/`).
    pub fn open_vhost(
        &mut self,
        name: &str,
        path: &std::path::Path,
        access: super::vhost::SocketAccess,
        mtu: u16,
        offload: bool,
    ) -> io::Result<PortId> {
        self.check_room(name)?;
        if (self.ports.values())
            .any(|p| matches!(&p.dev, Device::Vhost(_)) && p.dev.name() == path.to_string_lossy())
        {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is already a port", path.display()),
            ));
        }
        let dev = Device::vhost_user(path, access, mtu, offload)?;
        self.insert_device(name, dev)
    }

    /// Gives a vhost-user port's socket file another group and mode (a
    /// reload); the connected qemu stays connected.
    pub fn set_vhost_access(
        &self,
        id: PortId,
        access: super::vhost::SocketAccess,
    ) -> io::Result<()> {
        match self.ports.get(&id).map(|p| &p.dev) {
            Some(Device::Vhost(v)) => v.set_access(access),
            _ => Ok(()),
        }
    }

    /// Registers an open TAP under a new id.
    pub fn insert(&mut self, tap: Tap) -> io::Result<PortId> {
        let name = tap.name().to_owned();
        self.insert_device(&name, Device::Tap(tap))
    }

    /// Devices that went away are looked for again (call about once a
    /// second); returns how many ports are without their device.
    pub fn reattach(&mut self) -> usize {
        self.ports.values().filter(|p| !p.dev.reattach()).count()
    }

    /// Registers an open device under a new id. Ids are not reused while the
    /// process runs, so a stale id in another table can never hit a new port.
    fn insert_device(&mut self, name: &str, dev: Device) -> io::Result<PortId> {
        self.check_room(name)?;
        let id = self.next_id;
        if matches!(dev, Device::Vhost(_)) {
            self.vhost.push(id);
        }
        if matches!(dev, Device::Packet(_)) {
            self.batched.push(id);
        }
        self.next_id = self
            .next_id
            .checked_add(1)
            .ok_or_else(|| io::Error::other("port ids exhausted"))?;
        self.ports.insert(
            id,
            Port {
                name: name.to_owned(),
                batch: TxBatch::for_device(&dev),
                dev,
                counters: PortCounters::default(),
                polled: true,
                udp_coalescing: false,
                bridge: None,
                #[cfg(test)]
                rx: None,
                log: RateLimit::new(PORT_LOG_PER_SECOND),
            },
        );
        Ok(id)
    }

    /// A further worker's set of the same ports under the same ids: its own
    /// queue of every multi-queue TAP, a write-only duplicate of the others.
    pub fn replica(&self) -> io::Result<Ports> {
        let mut r = Ports {
            next_id: self.next_id,
            ..Ports::default()
        };
        for (&id, p) in &self.ports {
            let q = self.queue_for_worker(id)?;
            r.insert_queue(id, q, p.udp_coalescing);
        }
        Ok(r)
    }

    /// Adds to a replica a worker's queue of a port another set opened
    /// under `id` (from [`Ports::queue_for_worker`]).
    pub fn insert_queue(&mut self, id: PortId, q: Queue, udp_coalescing: bool) {
        if matches!(q.dev, Device::Vhost(_)) && !self.vhost.contains(&id) {
            self.vhost.push(id);
        }
        if matches!(q.dev, Device::Packet(_)) && !self.batched.contains(&id) {
            self.batched.push(id);
        }
        self.ports.insert(
            id,
            Port {
                name: q.name,
                batch: TxBatch::for_device(&q.dev),
                dev: q.dev,
                counters: PortCounters::default(),
                polled: q.polled,
                udp_coalescing,
                // The owning set keeps the bridge (and unpersists on removal).
                bridge: None,
                #[cfg(test)]
                rx: None,
                log: RateLimit::new(PORT_LOG_PER_SECOND),
            },
        );
        self.next_id = self.next_id.max(id.saturating_add(1));
    }

    /// UDP coalescing on port `id` (when its TAP took USO): consecutive
    /// datagrams of a flow leave as one USO super-frame, one write for up
    /// to 64 datagrams. Off by default: whoever counts packets after the
    /// TAP (interface counters, a guest that negotiated USO) sees one
    /// packet per super-frame, and where the receiving application is the
    /// limit it gains nothing (README, "Performance").
    pub fn set_udp_coalescing(&mut self, id: PortId, on: bool) -> bool {
        match self.ports.get_mut(&id) {
            Some(p) => {
                p.udp_coalescing = on;
                true
            }
            None => false,
        }
    }

    /// Every port's counters by id (to add up the workers' queues).
    pub fn port_counters(&self) -> impl Iterator<Item = (PortId, PortCounters)> + '_ {
        self.ports.iter().map(|(id, p)| (*id, p.counters))
    }

    fn check_room(&mut self, name: &str) -> io::Result<()> {
        if self.ports.len() >= MAX_PORTS {
            self.counters.refused_full += 1;
            return Err(io::Error::other(format!(
                "too many ports (limit {MAX_PORTS})"
            )));
        }
        if self.id_by_name(name).is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("port {name} is already open"),
            ));
        }
        Ok(())
    }

    /// Unregisters a port and hands its device back (dropping it closes
    /// the fd).
    pub fn remove(&mut self, id: PortId) -> Option<Device> {
        self.gro.forget_port(id);
        self.vhost.retain(|&v| v != id);
        self.batched.retain(|&v| v != id);
        let mut p = self.ports.remove(&id)?;
        tx_batch::flush(&mut p);
        if p.bridge.is_some() {
            // A removed port goes away, bridged or not.
            super::bridged::release(&p.dev);
        }
        Some(p.dev)
    }

    /// A further worker's queue of port `id`.
    pub fn queue_for_worker(&self, id: PortId) -> io::Result<Queue> {
        match self.ports.get(&id) {
            Some(p) => p.dev.queue_for_worker().map(|mut q| {
                q.name.clone_from(&p.name);
                q
            }),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    /// The fd a worker's epoll watches for port `id` (None: not polled by
    /// this set, or no such port).
    pub fn poll_fd(&self, id: PortId) -> Option<RawFd> {
        self.ports.get(&id).filter(|p| p.polled).map(|p| p.dev.fd())
    }

    pub fn get(&self, id: PortId) -> Option<&Port> {
        self.ports.get(&id)
    }

    pub(super) fn get_mut(&mut self, id: PortId) -> Option<&mut Port> {
        self.ports.get_mut(&id)
    }

    pub fn id_by_name(&self, name: &str) -> Option<PortId> {
        self.ports
            .iter()
            .find(|(_, p)| p.name == name)
            .map(|(id, _)| *id)
    }

    pub fn name(&self, id: PortId) -> Option<&str> {
        self.ports.get(&id).map(|p| p.name.as_str())
    }

    pub fn ids(&self) -> impl Iterator<Item = PortId> + '_ {
        self.ports.keys().copied()
    }

    pub fn len(&self) -> usize {
        self.ports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    pub fn counters(&self) -> &PortsCounters {
        &self.counters
    }

    fn port_mut(&mut self, id: PortId) -> Option<&mut Port> {
        let p = self.ports.get_mut(&id);
        if p.is_none() {
            self.counters.unknown_port += 1;
        }
        p
    }

    /// Reads what port `id` has queued into `rx` (replacing its previous
    /// contents): up to a few 64 KB super-frames or up to
    /// [`super::rx::MAX_ENTRIES`] frames, one read(2) each. Then take the
    /// frames with `rx.next_frame()` / `rx.for_each_frame(..)`: super-frames
    /// come out cut to MTU-sized frames with complete checksums.
    ///
    /// `Ok(n)`: `rx` yields `n` frames (0: everything read was dropped and
    /// counted; call again). `Err(WouldBlock)`: nothing was queued.
    pub fn recv_batch(&mut self, id: PortId, rx: &mut PortRx) -> io::Result<usize> {
        let Some(port) = self.port_mut(id) else {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such port"));
        };
        let mtu = port.dev.mtu();
        let r = rx.fill(&port.dev, &mut port.counters, max_frame_len(mtu));
        port.counters.rx_drop_ring += port.dev.take_rx_drops();
        if let Some(len) = rx.take_oversize() {
            port.warn_oversize("from", len, mtu);
        }
        r
    }

    /// Reads one frame from port `id` into `buf`.
    ///
    /// `Ok(Some(n))`: a valid frame is in `buf[..n]`. `Ok(None)`: a frame was
    /// read and dropped (counted); read again. `Err(WouldBlock)`: nothing
    /// queued. `buf` must hold at least `max_frame_len(mtu) + 1` bytes: the
    /// kernel silently cuts a frame to the buffer and returns the cut length,
    /// so a read that fills the whole buffer is dropped as possibly cut.
    ///
    /// On a port with offloads a super-frame is read into the port's own
    /// buffer and handed out one segment per call (copied into `buf`);
    /// [`Ports::recv_batch`] avoids that copy. Tests only: the dataplane
    /// reads batches.
    #[cfg(test)]
    pub fn recv(&mut self, id: PortId, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let Some(port) = self.port_mut(id) else {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such port"));
        };
        if port.dev.offloads().vnet_hdr {
            return recv_vnet(port, buf);
        }
        let c = &mut port.counters;
        let n = match port.dev.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
            Err(e) => {
                c.rx_errors += 1;
                return Err(e);
            }
        };
        c.rx_reads += 1;
        if n < ethernet::HEADER_LEN {
            c.rx_drop_short += 1;
            return Ok(None);
        }
        if n >= buf.len() || n > max_frame_len(port.dev.mtu()) {
            c.rx_drop_oversize += 1;
            return Ok(None);
        }
        c.rx_frames += 1;
        c.rx_bytes += n as u64;
        Ok(Some(n))
    }

    /// Sends one frame out of port `id` at once; true when the kernel took
    /// it. Every refusal is counted under its reason, so the flood path can
    /// ignore it. A coalesced frame pending on the port goes first, so order
    /// on the port holds.
    pub fn send(&mut self, id: PortId, frame: &[u8]) -> bool {
        let Some(port) = self.ports.get_mut(&id) else {
            self.counters.unknown_port += 1;
            return false;
        };
        self.gro.flush_port(id, port);
        let sent = port.counters.tx_frames;
        send_plain(port, frame);
        tx_batch::flush(port);
        port.counters.tx_frames > sent
    }

    /// Sends one frame out of port `id`, coalescing consecutive in-order TCP
    /// segments of a flow into one super-frame when the port has TSO, and
    /// consecutive datagrams of a UDP flow when it has USO (up to
    /// [`super::tx::GRO_SLOTS`] flows held across all ports). Held frames go
    /// out at the latest with [`Ports::flush`], which the caller must call
    /// at the end of each batch of work. True when the
    /// frame was taken (written or held); refusals are counted.
    pub fn send_gro(&mut self, id: PortId, frame: &[u8]) -> bool {
        let Some(port) = self.ports.get_mut(&id) else {
            self.counters.unknown_port += 1;
            return false;
        };
        let mut offloads = port.dev.offloads();
        offloads.uso &= port.udp_coalescing;
        let seg = if frame.len() <= max_frame_len(port.dev.tx_mtu()) {
            Seg::classify(offloads, frame)
        } else {
            None
        };
        let Some(seg) = seg else {
            self.gro.flush_port(id, port);
            return send_plain(port, frame);
        };
        self.gro.push(&mut self.ports, id, frame, &seg)
    }

    /// Writes every frame `send_gro` holds, and sends what attached ports
    /// staged (one sendmmsg each). Returns how many super-frames it wrote
    /// or staged and sendmmsg calls it made.
    pub fn flush(&mut self) -> usize {
        let mut n = self.gro.flush_all(&mut self.ports);
        for id in &self.batched {
            if let Some(p) = self.ports.get_mut(id) {
                n += tx_batch::flush(p);
            }
        }
        for id in &self.vhost {
            if let Some(p) = self.ports.get(id) {
                p.dev.flush();
            }
        }
        n
    }

    pub fn info(&self) -> Vec<PortInfo> {
        self.ports
            .iter()
            .map(|(id, p)| PortInfo {
                id: *id,
                name: p.name.clone(),
                device: p.dev.name().to_owned(),
                ifindex: p.dev.ifindex(),
                mtu: p.dev.mtu(),
                created: p.dev.created(),
                bridge: p.bridge.clone(),
                offloads: p.dev.offloads(),
                counters: p.counters,
                vhost: p.dev.vhost_info(),
            })
            .collect()
    }
}

/// The one-frame `recv` on a vnet port: segments of the port's own batch,
/// copied out one per call.
#[cfg(test)]
fn recv_vnet(port: &mut Port, buf: &mut [u8]) -> io::Result<Option<usize>> {
    let rx = port
        .rx
        .get_or_insert_with(|| Box::new(PortRx::with_reads(1)));
    if rx.is_drained() {
        let max = max_frame_len(port.dev.mtu());
        if rx.fill(&port.dev, &mut port.counters, max)? == 0 {
            return Ok(None);
        }
    }
    let Some(f) = rx.next_frame() else {
        return Ok(None);
    };
    // Counted as received at read time; a caller buffer too short for a
    // valid frame is the caller's bug, still counted.
    let n = f.len();
    if n >= buf.len() {
        port.counters.rx_drop_oversize += 1;
        return Ok(None);
    }
    buf[..n].copy_from_slice(f);
    Ok(Some(n))
}
