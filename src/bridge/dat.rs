//! batman-adv's distributed ARP table (DAT), the bridge half: what the
//! DHT messages carry, and how ARP requests from our ports use the DHT.
//! The mesh half (hashes, candidates, the 4addr packets, the capability in
//! OGMs) is `mesh/dat.rs`; the table is the ARP/ND suppression table
//! (`arp_nd.rs`), so what the DHT teaches answers our ports too, and what
//! our ports and policies know answers the DHT.
//!
//! As the kernel does (`distributed-arp-table.c`):
//! - an ARP request from a port that no local answer covers goes as
//!   DHT_GET to the (up to 3) candidates of its target address, and its
//!   flood is held back [`DAT_HOLD`] (`ARP_REQ_DELAY`, 250 ms): when a
//!   candidate's DAT_CACHE_REPLY taught us the address meanwhile, the
//!   flood is dropped; otherwise it goes out then (the fallback);
//! - an ARP reply from a port goes as DHT_PUT to the candidates of both
//!   its addresses;
//! - a DHT_GET for an address we can vouch for (the rules of `arp_nd.rs`)
//!   is answered with an ARP reply in a DAT_CACHE_REPLY to the requester's
//!   originator (by TT); one we cannot is counted and dropped. The kernel
//!   hands it to its clients instead, but the asker's held request floods
//!   250 ms later anyway, so every such request reached our VMs twice (an
//!   ARP flood from a VM on another node doubled);
//! - a DHT_PUT fills the table with both addresses of its ARP reply;
//! - a DAT_CACHE_REPLY fills the table and is delivered like a unicast.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::arp_nd::{Request, Snoop};
use super::{Bridge, Egress};
use crate::port::PortId;
use crate::wire::arp::{self, Operation};
use crate::wire::batman::subtype;
use crate::wire::ethernet::{self, ethertype, Frame};
use crate::wire::MacAddr;

/// How long a port's ARP request waits for the DHT before it floods
/// (the kernel's `ARP_REQ_DELAY`).
pub const DAT_HOLD: Duration = Duration::from_millis(250);
/// Requests held at most; past it, a request floods at once.
const MAX_HELD: usize = 256;

/// A port's ARP request waiting for the DHT.
#[derive(Debug)]
pub(super) struct Held {
    due: Instant,
    port: PortId,
    vid: u16,
    target: Ipv4Addr,
    frame: Vec<u8>,
    /// A candidate's cache reply was delivered (the others' are
    /// duplicates: every candidate that knows answers).
    answered: bool,
}

/// The held requests, oldest first (all wait the same time).
pub(super) type HeldQueue = VecDeque<Held>;

/// An Ethernet/IPv4 ARP packet in `frame` (behind up to two tags), with
/// the frame's batman vid.
fn arp_in(frame: &[u8]) -> Option<(arp::Repr, u16, MacAddr)> {
    let (off, et) = ethernet::l3_offset(frame)?;
    if et != ethertype::ARP {
        return None;
    }
    let f = Frame::new_checked(frame).ok()?;
    let a = arp::Repr::parse(&arp::Packet::new_checked(frame.get(off..)?).ok()?).ok()?;
    Some((a, f.batman_vid(), f.src_addr()))
}

/// An address DAT may store (the kernel's `batadv_arp_get_type` checks).
fn storable(ip: Ipv4Addr, mac: MacAddr) -> bool {
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.octets()[0] == 0
        || mac.is_zero()
        || mac.is_multicast())
}

impl Bridge {
    /// A DAT packet the mesh delivered to us.
    pub(super) fn dat_in(
        &mut self,
        now: Instant,
        kind: u8,
        source_orig: MacAddr,
        frame: &[u8],
        ttl: u8,
        io: &mut impl Egress,
    ) {
        let Some((a, vid, _)) = arp_in(frame) else {
            self.counters.dat_malformed += 1;
            return;
        };
        match kind {
            subtype::DAT_DHT_PUT => {
                if a.operation != Operation::Reply {
                    self.counters.dat_malformed += 1;
                    return;
                }
                self.dat_learn(now, vid, a.spa, a.sha);
                self.dat_learn(now, vid, a.tpa, a.tha);
            }
            subtype::DAT_DHT_GET => self.dat_get(now, source_orig, frame, a, vid),
            _ => {
                // DAT_CACHE_REPLY: an answer for one of our clients, once
                // per held request.
                if a.operation != Operation::Reply {
                    self.counters.dat_malformed += 1;
                    return;
                }
                self.dat_learn(now, vid, a.spa, a.sha);
                let held = self
                    .dat_held
                    .iter_mut()
                    .find(|h| h.vid == vid && h.target == a.spa);
                if let Some(h) = held {
                    if h.answered {
                        self.counters.dat_duplicate_replies += 1;
                        return;
                    }
                    h.answered = true;
                }
                self.deliver(now, frame, None, false, ttl, io);
            }
        }
    }

    fn dat_learn(&mut self, now: Instant, vid: u16, ip: Ipv4Addr, mac: MacAddr) {
        if storable(ip, mac) {
            self.arp_nd.learn(
                now,
                Snoop {
                    vid,
                    ip: IpAddr::V4(ip),
                    mac,
                    router: None,
                },
            );
        }
    }

    /// A DHT_GET: answered from what we know, else dropped (the asker's
    /// fallback flood brings the request to our ports).
    fn dat_get(
        &mut self,
        now: Instant,
        source_orig: MacAddr,
        frame: &[u8],
        a: arp::Repr,
        vid: u16,
    ) {
        if a.operation != Operation::Request || !storable(a.tpa, a.sha) {
            self.counters.dat_malformed += 1;
            return;
        }
        self.dat_learn(now, vid, a.spa, a.sha);
        let Some(req) = Request::parse(frame) else {
            // A gratuitous or odd request: nothing to answer.
            self.counters.dat_unanswered += 1;
            return;
        };
        match self.vouch(now, None, &req) {
            Some((owner, _)) => {
                let mut reply = std::mem::take(&mut self.answer_buf);
                req.answer(owner, false, &mut reply);
                // To the requester's originator, by TT (its client's MAC);
                // the sender of the DHT_GET if the TT does not know it.
                let to = self
                    .mesh
                    .tt_global_lookup(a.sha, vid)
                    .filter(|&o| o != self.mesh.originator())
                    .unwrap_or(source_orig);
                if self
                    .mesh
                    .send_dat(to, subtype::DAT_CACHE_REPLY, &reply, &mut self.out)
                {
                    self.counters.dat_answered += 1;
                }
                self.answer_buf = reply;
            }
            None => self.counters.dat_unanswered += 1,
        }
    }

    /// An ARP request from `port` that no local answer covered: a DHT_GET
    /// to the candidates and the flood held back. True when held.
    pub(super) fn dat_ask(
        &mut self,
        now: Instant,
        port: PortId,
        req: &Request,
        frame: &[u8],
    ) -> bool {
        let &Request::Arp { vid, target, .. } = req else {
            return false;
        };
        if req.is_dad() || self.dat_held.len() >= MAX_HELD || !self.mesh.dat_enabled() {
            return false;
        }
        let mut sent = false;
        for c in self.mesh.dat_candidates(target, vid) {
            sent |= self
                .mesh
                .send_dat(c, subtype::DAT_DHT_GET, frame, &mut self.out);
        }
        if sent {
            self.dat_held.push_back(Held {
                due: now + DAT_HOLD,
                port,
                vid,
                target,
                frame: frame.to_vec(),
                answered: false,
            });
        }
        sent
    }

    /// An ARP reply from a port: DHT_PUT for both of its addresses.
    pub(super) fn dat_put(&mut self, frame: &[u8]) {
        if !self.mesh.dat_enabled() {
            return;
        }
        let Some((a, vid, src)) = arp_in(frame) else {
            return;
        };
        if a.operation != Operation::Reply
            || a.sha != src
            || !storable(a.spa, a.sha)
            || !storable(a.tpa, a.tha)
        {
            return;
        }
        for ip in [a.spa, a.tpa] {
            for c in self.mesh.dat_candidates(ip, vid) {
                self.mesh
                    .send_dat(c, subtype::DAT_DHT_PUT, frame, &mut self.out);
            }
        }
    }

    /// Held requests whose time is up: dropped when the DHT answered
    /// meanwhile, flooded otherwise (through the port's storm control).
    pub(super) fn dat_tick(&mut self, now: Instant, io: &mut impl Egress) {
        while self.dat_held.front().is_some_and(|h| h.due <= now) {
            let Some(h) = self.dat_held.pop_front() else {
                break;
            };
            if h.answered
                || self
                    .arp_nd
                    .lookup(now, h.vid, IpAddr::V4(h.target))
                    .is_some()
            {
                self.counters.dat_fallback_prevented += 1;
                continue;
            }
            self.counters.dat_fallback += 1;
            if !self.ports.contains(&h.port) || !self.hooks.flood_admit(now, h.port, &h.frame) {
                continue;
            }
            self.flood_ports(Some(h.port), &h.frame, io);
            self.mesh.send_broadcast(now, &h.frame, &mut self.out);
        }
    }

    /// When the oldest held request is due.
    pub(super) fn dat_deadline(&self) -> Option<Instant> {
        self.dat_held.front().map(|h| h.due)
    }
}
