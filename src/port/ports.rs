//! The registry of ports: PortId -> TAP and its counters.
//!
//! Owned by the dataplane thread that polls the TAP fds, so counters are
//! plain integers: no lock or atomic on the per-frame path.

use std::collections::BTreeMap;
use std::io;

use serde::Serialize;

use super::tap::Tap;
use super::PortId;
use crate::wire::ethernet;

/// At most this many ports per process: bounds the registry.
pub const MAX_PORTS: usize = 4096;

/// Largest frame a port carries: its MTU plus the Ethernet header and one
/// 802.1Q tag.
pub fn max_frame_len(mtu: u16) -> usize {
    usize::from(mtu) + ethernet::HEADER_LEN + ethernet::VLAN_TAG_LEN
}

/// Per-port counters; drops are counted by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PortCounters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// From the kernel: shorter than an Ethernet header.
    pub rx_drop_short: u64,
    /// From the kernel: longer than MTU + header + tag (or than the buffer).
    pub rx_drop_oversize: u64,
    /// read(2) failed with something other than EAGAIN.
    pub rx_errors: u64,
    pub tx_drop_short: u64,
    pub tx_drop_oversize: u64,
    /// The kernel side's queue was full (EAGAIN), or it took part of a frame.
    pub tx_drop_busy: u64,
    /// write(2) failed otherwise (e.g. EIO while the link is down).
    pub tx_errors: u64,
}

/// One port: the TAP and what went through it.
#[derive(Debug)]
pub struct Port {
    pub tap: Tap,
    pub counters: PortCounters,
}

/// What `meshwire ctl` shows about a port.
#[derive(Debug, Clone, Serialize)]
pub struct PortInfo {
    pub id: PortId,
    pub name: String,
    pub ifindex: Option<u32>,
    pub mtu: u16,
    /// Whether meshwire created the TAP (it disappears when meshwire exits).
    pub created: bool,
    pub counters: PortCounters,
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
}

impl Ports {
    pub fn new() -> Ports {
        Ports::default()
    }

    /// Opens (or attaches to) TAP `name` and registers it.
    pub fn open(&mut self, name: &str, mtu: u16) -> io::Result<PortId> {
        self.check_room(name)?;
        let tap = Tap::open(name, mtu)?;
        self.insert(tap)
    }

    /// Registers an open TAP under a new id. Ids are not reused while the
    /// process runs, so a stale id in another table can never hit a new port.
    pub fn insert(&mut self, tap: Tap) -> io::Result<PortId> {
        self.check_room(tap.name())?;
        let id = self.next_id;
        self.next_id = self
            .next_id
            .checked_add(1)
            .ok_or_else(|| io::Error::other("port ids exhausted"))?;
        self.ports.insert(
            id,
            Port {
                tap,
                counters: PortCounters::default(),
            },
        );
        Ok(id)
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

    /// Unregisters a port and hands its TAP back (dropping it closes the fd).
    pub fn remove(&mut self, id: PortId) -> Option<Tap> {
        self.ports.remove(&id).map(|p| p.tap)
    }

    pub fn get(&self, id: PortId) -> Option<&Port> {
        self.ports.get(&id)
    }

    pub fn id_by_name(&self, name: &str) -> Option<PortId> {
        self.ports
            .iter()
            .find(|(_, p)| p.tap.name() == name)
            .map(|(id, _)| *id)
    }

    pub fn name(&self, id: PortId) -> Option<&str> {
        self.ports.get(&id).map(|p| p.tap.name())
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

    /// Reads one frame from port `id` into `buf`.
    ///
    /// `Ok(Some(n))`: a valid frame is in `buf[..n]`. `Ok(None)`: a frame was
    /// read and dropped (counted); read again. `Err(WouldBlock)`: nothing
    /// queued. `buf` must hold at least `max_frame_len(mtu) + 1` bytes: the
    /// kernel silently cuts a frame to the buffer and returns the cut length,
    /// so a read that fills the whole buffer is dropped as possibly cut.
    pub fn recv(&mut self, id: PortId, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let Some(port) = self.ports.get_mut(&id) else {
            self.counters.unknown_port += 1;
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such port"));
        };
        let c = &mut port.counters;
        let n = match port.tap.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
            Err(e) => {
                c.rx_errors += 1;
                return Err(e);
            }
        };
        if n < ethernet::HEADER_LEN {
            c.rx_drop_short += 1;
            return Ok(None);
        }
        if n >= buf.len() || n > max_frame_len(port.tap.mtu()) {
            c.rx_drop_oversize += 1;
            return Ok(None);
        }
        c.rx_frames += 1;
        c.rx_bytes += n as u64;
        Ok(Some(n))
    }

    /// Sends one frame out of port `id`; true when the kernel took it. Every
    /// refusal is counted under its reason, so the flood path can ignore it.
    pub fn send(&mut self, id: PortId, frame: &[u8]) -> bool {
        let Some(port) = self.ports.get_mut(&id) else {
            self.counters.unknown_port += 1;
            return false;
        };
        let c = &mut port.counters;
        if frame.len() < ethernet::HEADER_LEN {
            c.tx_drop_short += 1;
            return false;
        }
        if frame.len() > max_frame_len(port.tap.mtu()) {
            c.tx_drop_oversize += 1;
            return false;
        }
        match port.tap.write(frame) {
            Ok(n) if n == frame.len() => {
                c.tx_frames += 1;
                c.tx_bytes += n as u64;
                true
            }
            Ok(_) => {
                c.tx_drop_busy += 1;
                false
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.tx_drop_busy += 1;
                false
            }
            Err(_) => {
                c.tx_errors += 1;
                false
            }
        }
    }

    pub fn info(&self) -> Vec<PortInfo> {
        self.ports
            .iter()
            .map(|(id, p)| PortInfo {
                id: *id,
                name: p.tap.name().to_owned(),
                ifindex: p.tap.ifindex(),
                mtu: p.tap.mtu(),
                created: p.tap.created(),
                counters: p.counters,
            })
            .collect()
    }
}
