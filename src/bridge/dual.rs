//! Dual delivery during a live migration, driven by a qemu watcher
//! (`crate::port::watch`): frames for a migrating VM go to its old and its new
//! location until the VM is seen at the new one (what OVN's
//! requested-chassis with two chassis does).
//!
//! meshwire cannot send a frame to the new location before the mesh knows
//! it: the source's qemu does not say where its guest goes, and batman has
//! no message for "about to arrive". So the two halves meet in time
//! instead:
//! - the source (its qemu migrating: [`Bridge::dual_depart`]) keeps
//!   delivering to the local port and keeps a copy of every frame for the
//!   VM's MAC: the last [`PRECOPY_WINDOW`] of them while the guest still
//!   runs (the watcher hears `STOP` a little after it happened), all of
//!   them once it stopped ([`Bridge::dual_stopped`]). When the mesh moves
//!   the MAC to another originator (the destination's claim at `RESUME`,
//!   by its watcher or the guest's first frame), the copies go there, in
//!   order, before the frames that follow. A frame the stopped guest never
//!   read is delivered after the downtime instead of lost; a frame it did
//!   read in the last window arrives twice (as a duplicate, which every
//!   protocol above Ethernet tolerates).
//! - the destination (an incoming qemu: [`Bridge::dual_expect`]) delivers
//!   a unicast for the VM's MAC that the mesh brings although its FDB
//!   still has the VM elsewhere to the local port as well (qemu queues it
//!   in the TAP until the guest runs), until the VM is seen here.
//!
//! Both end when the VM is seen at its new place, when its source resumes
//! it (a failed migration), or after [`DUAL_BOUND`] (counted). Copies are
//! bounded ([`MAX_KEPT`] frames, [`MAX_KEPT_BYTES`] per MAC).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Bridge, Egress};
use crate::port::PortId;
use crate::switch::Location;
use crate::wire::ethernet::Frame;
use crate::wire::MacAddr;

/// How long dual delivery lasts at most after the guest stopped at the
/// source (or after an incoming qemu announced itself).
pub const DUAL_BOUND: Duration = Duration::from_secs(10);
/// While the guest still runs at the source: how far back copies reach.
pub const PRECOPY_WINDOW: Duration = Duration::from_millis(50);
/// A precopy can last minutes, but not this long with nobody telling.
const PRECOPY_BOUND: Duration = Duration::from_secs(3600);
pub const MAX_KEPT: usize = 1024;
pub const MAX_KEPT_BYTES: usize = 2 << 20;
/// MACs in dual delivery at once (each a migrating VM).
const MAX_MIGRATING: usize = 256;

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct DualCounters {
    /// Source: MACs whose migration away started.
    pub departures: u64,
    /// Destination: MACs of incoming guests.
    pub expectations: u64,
    /// Source: copies kept of frames for a departing VM.
    pub copies_kept: u64,
    /// Source: copies sent on to the VM's new originator.
    pub copies_sent: u64,
    /// Source: copies dropped (aged out of the precopy window, over the
    /// bound, the migration failed, or no route).
    pub copies_dropped: u64,
    /// Destination: unicasts for an expected VM delivered to its port
    /// although the FDB had it elsewhere.
    pub expected_delivered: u64,
    /// Dual deliveries ended because the VM was seen at its new place.
    pub ended_seen: u64,
    /// Ended by the bound (DUAL_BOUND).
    pub ended_bound: u64,
    /// Ended because the source's guest runs there again.
    pub ended_stayed: u64,
}

struct Departing {
    port: PortId,
    mac: MacAddr,
    vid: u16,
    since: Instant,
    stopped: Option<Instant>,
    frames: VecDeque<(Instant, Vec<u8>)>,
    bytes: usize,
}

struct Expecting {
    port: PortId,
    mac: MacAddr,
    vid: u16,
    since: Instant,
}

#[derive(Default)]
pub(super) struct Dual {
    departing: Vec<Departing>,
    expecting: Vec<Expecting>,
    counters: DualCounters,
    /// The `now` of the bridge's current call (`port_out` has none).
    pub(super) now: Option<Instant>,
}

impl Dual {
    fn active(&self) -> bool {
        !self.departing.is_empty() || !self.expecting.is_empty()
    }
}

impl Bridge {
    pub fn dual_counters(&self) -> &DualCounters {
        &self.dual.counters
    }

    /// The source: the guest behind `port` with these MACs starts
    /// migrating away.
    pub fn dual_depart(&mut self, now: Instant, port: PortId, macs: &[MacAddr]) {
        let vid = self.hooks.port_vid(port);
        for &mac in macs {
            self.dual.departing.retain(|d| d.mac != mac || d.vid != vid);
            if self.dual.departing.len() >= MAX_MIGRATING {
                break;
            }
            self.dual.counters.departures += 1;
            self.dual.departing.push(Departing {
                port,
                mac,
                vid,
                since: now,
                stopped: None,
                frames: VecDeque::new(),
                bytes: 0,
            });
        }
    }

    /// The source: the guest stopped; every frame for it is kept from now.
    pub fn dual_stopped(&mut self, now: Instant, port: PortId) {
        for d in self.dual.departing.iter_mut().filter(|d| d.port == port) {
            d.stopped.get_or_insert(now);
        }
    }

    /// The source: the migration failed, the guest runs here again.
    pub fn dual_stay(&mut self, port: PortId) {
        let c = &mut self.dual.counters;
        self.dual.departing.retain(|d| {
            if d.port != port {
                return true;
            }
            c.copies_dropped += d.frames.len() as u64;
            c.ended_stayed += 1;
            false
        });
    }

    /// The destination: a guest with these MACs is on its way to `port`.
    pub fn dual_expect(&mut self, now: Instant, port: PortId, macs: &[MacAddr]) {
        let vid = self.hooks.port_vid(port);
        for &mac in macs {
            // Again (the migration started): the bound counts from now.
            let known = self
                .dual
                .expecting
                .iter_mut()
                .find(|e| e.mac == mac && e.vid == vid);
            if let Some(e) = known {
                e.port = port;
                e.since = now;
                continue;
            }
            if self.dual.expecting.len() >= MAX_MIGRATING {
                break;
            }
            self.dual.counters.expectations += 1;
            self.dual.expecting.push(Expecting {
                port,
                mac,
                vid,
                since: now,
            });
        }
    }

    /// The destination: the guest arrived (claimed) or will not come.
    pub fn dual_arrived(&mut self, port: PortId, seen: bool) {
        let c = &mut self.dual.counters;
        self.dual.expecting.retain(|e| {
            if e.port != port {
                return true;
            }
            if seen {
                c.ended_seen += 1;
            }
            false
        });
    }

    /// Whether a MAC of `port` is in dual delivery (for `ctl ports`).
    pub fn dual_state(&self, port: PortId) -> Option<&'static str> {
        if let Some(d) = self.dual.departing.iter().find(|d| d.port == port) {
            return Some(if d.stopped.is_some() {
                "departing (stopped)"
            } else {
                "departing"
            });
        }
        self.dual
            .expecting
            .iter()
            .any(|e| e.port == port)
            .then_some("expecting")
    }

    /// From `port_out`: a copy of a frame for a departing VM.
    #[inline]
    pub(super) fn dual_keep(&mut self, port: PortId, frame: &[u8]) {
        if self.dual.departing.is_empty() {
            return;
        }
        let Some(now) = self.dual.now else {
            return;
        };
        let Ok(f) = Frame::new_checked(frame) else {
            return;
        };
        let (dst, vid) = (f.dst_addr(), f.batman_vid());
        let c = &mut self.dual.counters;
        let Some(d) = self
            .dual
            .departing
            .iter_mut()
            .find(|d| d.port == port && d.mac == dst && d.vid == vid)
        else {
            return;
        };
        if d.stopped.is_none() {
            while d
                .frames
                .front()
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) > PRECOPY_WINDOW)
            {
                if let Some((_, f)) = d.frames.pop_front() {
                    d.bytes -= f.len();
                    c.copies_dropped += 1;
                }
            }
        }
        if d.frames.len() >= MAX_KEPT || d.bytes + frame.len() > MAX_KEPT_BYTES {
            c.copies_dropped += 1;
            return;
        }
        d.bytes += frame.len();
        d.frames.push_back((now, frame.to_vec()));
        c.copies_kept += 1;
    }

    /// From `deliver`: a unicast the mesh brought for a MAC the FDB has at
    /// another node, for an expected guest: to its port as well.
    pub(super) fn dual_expected_port(&mut self, frame: &[u8]) -> Option<PortId> {
        if self.dual.expecting.is_empty() {
            return None;
        }
        let f = Frame::new_checked(frame).ok()?;
        let (dst, vid) = (f.dst_addr(), f.batman_vid());
        let p = self
            .dual
            .expecting
            .iter()
            .find(|e| e.mac == dst && e.vid == vid)?
            .port;
        self.dual.counters.expected_delivered += 1;
        Some(p)
    }

    /// Ends what is over: a departing VM the mesh now has elsewhere gets
    /// its copies sent there; an expected one seen here stops being
    /// expected; both end at the bound.
    pub(super) fn dual_check(&mut self, now: Instant, io: &mut impl Egress) {
        if !self.dual.active() {
            return;
        }
        let own = self.mesh.originator();
        let mut i = 0;
        while i < self.dual.departing.len() {
            let d = &self.dual.departing[i];
            let place = self.switch.lookup(now, d.mac, d.vid).map(|e| e.location);
            let moved = match place {
                Some(Location::Originator(o)) if o != own => Some(Location::Originator(o)),
                Some(Location::Port(p)) if p != d.port => Some(Location::Port(p)),
                _ => None,
            };
            let bound = match d.stopped {
                Some(t) => t + DUAL_BOUND,
                None => d.since + PRECOPY_BOUND,
            };
            if moved.is_none() && now < bound {
                i += 1;
                continue;
            }
            let d = self.dual.departing.swap_remove(i);
            let c = &mut self.dual.counters;
            match moved {
                None => {
                    c.ended_bound += 1;
                    c.copies_dropped += d.frames.len() as u64;
                }
                Some(to) => {
                    c.ended_seen += 1;
                    tracing::info!(
                        mac = %d.mac,
                        copies = d.frames.len(),
                        "migration: the VM is at its new place; copies of the frames it missed sent there"
                    );
                    for (_, f) in &d.frames {
                        self.send_copy(now, to, f, io);
                    }
                }
            }
        }
        let c = &mut self.dual.counters;
        let switch = &self.switch;
        self.dual.expecting.retain(|e| {
            let here = switch
                .lookup(now, e.mac, e.vid)
                .is_some_and(|x| x.location == Location::Port(e.port));
            if here {
                c.ended_seen += 1;
            } else if now >= e.since + DUAL_BOUND {
                c.ended_bound += 1;
            }
            !here && now < e.since + DUAL_BOUND
        });
        self.flush(now, io);
    }

    fn send_copy(&mut self, now: Instant, to: Location, frame: &[u8], io: &mut impl Egress) {
        match to {
            Location::Port(p) => {
                self.port_out(p, frame, io);
                self.dual.counters.copies_sent += 1;
            }
            Location::Originator(o) => {
                if self.mesh.send_unicast(now, o, frame, &mut self.out) {
                    self.dual.counters.copies_sent += 1;
                } else {
                    self.dual.counters.copies_dropped += 1;
                }
            }
        }
    }
}
