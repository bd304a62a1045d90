//! ARP/ND suppression: ARP requests and IPv6 neighbour solicitations that
//! a port would flood are answered on the owner's behalf, into the asking
//! port, when the owner is known and alive; the common case then never
//! floods the mesh. Sans I/O: the table, the request and snoop decoding,
//! and the answers' bytes; the bridge calls them from its flood hook
//! (`forward.rs`) and where port and mesh frames pass (`mod.rs`).
//!
//! What the answers come from, in this order:
//! 1. the port policies: a VM port's `mac` owns its `ipv4`, `ipv6`, the
//!    IPv4 its DHCP ACK granted and the link-local address of its MAC
//!    (anti-spoofing keeps every other port from using them);
//! 2. what was snooped: the sender of every ARP packet whose sender MAC is
//!    its Ethernet source, the target of every NA (its target link-layer
//!    option, else the Ethernet source), the source of every NS that names
//!    its link-layer address, from our ports (after their policy admitted
//!    the frame) and from the mesh (so, what other nodes carried).
//!
//! The rules (those of Gluon's and EVPN's ARP suppression, stricter where
//! a proxy could do harm):
//! - an owner is answered for only while its MAC is live somewhere: in our
//!   FDB, or in the translation table (a remote client). Answers carry
//!   the owner's MAC, which a migration does not change, and the MAC's
//!   location follows the FDB/TT: an answer is never stale by location,
//!   and an address whose MAC has gone from the mesh is not answered;
//! - never to the owner itself (the request's source MAC is the owner's),
//!   never for the asking port's own addresses (its policy), and not when
//!   the owner sits behind the asking port (it hears the request there);
//! - gratuitous ARP (sender IP = target IP) and unsolicited NAs are
//!   announcements: never answered, always flooded (migrations need them);
//! - duplicate address detection (NS from ::, ARP probes from 0.0.0.0) is
//!   answered only for an address owned by another live MAC: the answer is
//!   the defence the real owner would send (NA to ff02::1 without S, an
//!   ARP reply), so the new VM sees its conflict, and an address nobody
//!   has is never defended by us;
//! - networks never mix: entries are keyed by the batman vid (VLAN) and
//!   the answer carries the request's tag;
//! - anything not answered goes out as before (flood, storm control);
//!   an answered request takes none of the port's broadcast budget (the
//!   ARP/ND rate at ingress still bounds it), as Gluon's limit-arp exempts
//!   requests answered locally.
//!
//! Snooped entries live five minutes after their last sighting (batman's
//! DAT cache timeout) and the table holds at most [`MAX_ENTRIES`]; when it
//! is full, new addresses are not learned (counted) until old ones expire.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::switch::announce::{pad, start_frame, ALL_NODES, ALL_NODES_MAC};
use crate::wire::arp::{self, Operation};
use crate::wire::ethernet::{self, ethertype, Frame};
use crate::wire::ndisc::{self, Ipv6Fixed, Message, Ndisc};
use crate::wire::MacAddr;

/// How long a snooped address is believed after its last sighting.
pub const ENTRY_TIMEOUT: Duration = Duration::from_secs(300);
/// Snooped addresses held at most (all networks).
pub const MAX_ENTRIES: usize = 16_384;
/// How often expired entries are swept out.
const EXPIRE_EVERY: Duration = Duration::from_secs(10);

/// The table's own counters (`ctl stats`, under `node`).
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct ArpNdCounters {
    /// Addresses in the table now.
    pub arp_nd_entries: u64,
    /// Addresses not learned because the table was full.
    pub arp_nd_table_full: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    mac: MacAddr,
    /// From the last NA: the owner is a router (its answers must say so,
    /// or hosts drop it from their default router list, RFC 4861 §7.2.5).
    router: bool,
    seen: Instant,
}

/// Snooped addresses by (batman vid, IP).
#[derive(Debug, Default)]
pub struct ArpNdTable {
    entries: HashMap<(u16, IpAddr), Entry>,
    table_full: u64,
    last_expire: Option<Instant>,
}

impl ArpNdTable {
    /// Learns (or refreshes) what a frame says about its sender.
    pub fn learn(&mut self, now: Instant, s: Snoop) {
        let key = (s.vid, s.ip);
        if let Some(e) = self.entries.get_mut(&key) {
            *e = Entry {
                mac: s.mac,
                router: s.router.unwrap_or(e.router && e.mac == s.mac),
                seen: now,
            };
            return;
        }
        if self.entries.len() >= MAX_ENTRIES {
            self.table_full += 1;
            return;
        }
        self.entries.insert(
            key,
            Entry {
                mac: s.mac,
                router: s.router.unwrap_or(false),
                seen: now,
            },
        );
    }

    /// The MAC (and router flag) last seen for `ip` in network `vid`.
    pub fn lookup(&self, now: Instant, vid: u16, ip: IpAddr) -> Option<(MacAddr, bool)> {
        self.entries
            .get(&(vid, ip))
            .filter(|e| now.saturating_duration_since(e.seen) < ENTRY_TIMEOUT)
            .map(|e| (e.mac, e.router))
    }

    /// Sweeps expired entries (at most every [`EXPIRE_EVERY`]).
    pub fn expire(&mut self, now: Instant) {
        if self
            .last_expire
            .is_some_and(|t| now.saturating_duration_since(t) < EXPIRE_EVERY)
        {
            return;
        }
        self.last_expire = Some(now);
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.seen) < ENTRY_TIMEOUT);
    }

    pub fn counters(&self) -> ArpNdCounters {
        ArpNdCounters {
            arp_nd_entries: self.entries.len() as u64,
            arp_nd_table_full: self.table_full,
        }
    }

    /// Every entry, for `ctl` and tests: (vid, ip, mac).
    pub fn entries(&self, now: Instant) -> Vec<(u16, IpAddr, MacAddr)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.seen) < ENTRY_TIMEOUT)
            .map(|(&(vid, ip), e)| (vid, ip, e.mac))
            .collect();
        v.sort();
        v
    }
}

/// What one frame says about its sender's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snoop {
    pub vid: u16,
    pub ip: IpAddr,
    pub mac: MacAddr,
    /// The NA's router flag (None: the frame does not say).
    pub router: Option<bool>,
}

/// Whether the frame can be ARP or an NS/NA at all, by a few byte reads:
/// the per-frame cost on the data path for everything else.
fn arp_or_nd(frame: &[u8]) -> Option<(usize, u16)> {
    let (off, et) = ethernet::l3_offset(frame)?;
    match et {
        ethertype::ARP => Some((off, et)),
        ethertype::IPV6 => {
            let next = *frame.get(off + 6)?;
            let ty = *frame.get(off + ndisc::IPV6_HEADER_LEN)?;
            let nd = next == ndisc::IPPROTO_ICMPV6
                && (ty == ndisc::TYPE_NEIGHBOR_SOLICIT || ty == ndisc::TYPE_NEIGHBOR_ADVERT);
            nd.then_some((off, et))
        }
        _ => None,
    }
}

/// A usable neighbour address: not unspecified, multicast or broadcast.
fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !a.is_unspecified() && !a.is_multicast() && !a.is_broadcast(),
        IpAddr::V6(a) => !a.is_unspecified() && !a.is_multicast(),
    }
}

/// What `frame` (a port frame after its policy, or a mesh frame) teaches
/// about its sender, if anything. Never panics.
pub fn snoop(frame: &[u8]) -> Option<Snoop> {
    let (off, et) = arp_or_nd(frame)?;
    let f = Frame::new_checked(frame).ok()?;
    let (src, vid) = (f.src_addr(), f.batman_vid());
    let l3 = frame.get(off..)?;
    let (ip, mac, router) = if et == ethertype::ARP {
        let a = arp::Repr::parse(&arp::Packet::new_checked(l3).ok()?).ok()?;
        // The sender must be the frame's own source: a frame about someone
        // else (a proxy, batman's loop-avoidance claims) teaches nothing.
        if a.sha != src || !matches!(a.operation, Operation::Request | Operation::Reply) {
            return None;
        }
        (IpAddr::V4(a.spa), a.sha, None)
    } else {
        let n = Ndisc::parse(l3).ok()?;
        if n.is_advert() {
            let mac = n.target_lladdr.unwrap_or(src);
            (
                IpAddr::V6(n.target),
                mac,
                Some(n.flags & ndisc::FLAG_ROUTER != 0),
            )
        } else {
            // An NS says where its source lives only with the option.
            (IpAddr::V6(n.src), n.source_lladdr?, None)
        }
    };
    (usable(ip) && mac.is_unicast() && !mac.is_zero()).then_some(Snoop {
        vid,
        ip,
        mac,
        router,
    })
}

/// A request a port would flood, that could be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Arp {
        vid: u16,
        vlan: Option<u16>,
        /// The frame's source MAC (the asker).
        asker: MacAddr,
        sha: MacAddr,
        /// 0.0.0.0 for an ARP probe (RFC 5227).
        spa: Ipv4Addr,
        target: Ipv4Addr,
    },
    Ns {
        vid: u16,
        vlan: Option<u16>,
        asker: MacAddr,
        /// :: for duplicate address detection.
        src: Ipv6Addr,
        target: Ipv6Addr,
    },
}

impl Request {
    /// Decodes an ARP request or an NS in a frame; None for anything else,
    /// for announcements (gratuitous ARP) and for what the views refuse.
    pub fn parse(frame: &[u8]) -> Option<Request> {
        let (off, et) = arp_or_nd(frame)?;
        let f = Frame::new_checked(frame).ok()?;
        let (asker, vid, vlan) = (f.src_addr(), f.batman_vid(), f.vlan_id());
        if !asker.is_unicast() || asker.is_zero() {
            return None;
        }
        let l3 = frame.get(off..)?;
        if et == ethertype::ARP {
            let a = arp::Repr::parse(&arp::Packet::new_checked(l3).ok()?).ok()?;
            let is_request = a.operation == Operation::Request;
            if !is_request || a.spa == a.tpa || a.sha != asker || !usable(IpAddr::V4(a.tpa)) {
                return None;
            }
            return Some(Request::Arp {
                vid,
                vlan,
                asker,
                sha: a.sha,
                spa: a.spa,
                target: a.tpa,
            });
        }
        let n = Ndisc::parse(l3).ok()?;
        if !n.is_solicit() || !usable(IpAddr::V6(n.target)) {
            return None;
        }
        // A DAD NS carries no source link-layer option (RFC 4861 §7.1.1).
        if n.src.is_unspecified() && n.source_lladdr.is_some() {
            return None;
        }
        Some(Request::Ns {
            vid,
            vlan,
            asker,
            src: n.src,
            target: n.target,
        })
    }

    pub fn vid(&self) -> u16 {
        match *self {
            Request::Arp { vid, .. } | Request::Ns { vid, .. } => vid,
        }
    }

    pub fn asker(&self) -> MacAddr {
        match *self {
            Request::Arp { asker, .. } | Request::Ns { asker, .. } => asker,
        }
    }

    pub fn target(&self) -> IpAddr {
        match *self {
            Request::Arp { target, .. } => IpAddr::V4(target),
            Request::Ns { target, .. } => IpAddr::V6(target),
        }
    }

    /// Duplicate address detection (ARP probe, DAD NS).
    pub fn is_dad(&self) -> bool {
        match *self {
            Request::Arp { spa, .. } => spa.is_unspecified(),
            Request::Ns { src, .. } => src.is_unspecified(),
        }
    }

    /// Writes the owner's answer into `out` (cleared first): an ARP reply
    /// to the asker, or an NA (S and O set; to ff02::1 without S for DAD),
    /// in the request's network (its VLAN tag).
    pub fn answer(&self, owner: MacAddr, router: bool, out: &mut Vec<u8>) {
        match *self {
            Request::Arp {
                vlan,
                asker,
                sha,
                spa,
                target,
                ..
            } => {
                let off = start_frame(out, asker, owner, ethertype::ARP, vlan, arp::PACKET_LEN);
                arp::Repr {
                    operation: Operation::Reply,
                    sha: owner,
                    spa: target,
                    tha: sha,
                    tpa: spa,
                }
                .emit(&mut arp::Packet::new_unchecked(
                    out.get_mut(off..).unwrap_or(&mut []),
                ));
                pad(out);
            }
            Request::Ns {
                vlan,
                asker,
                src,
                target,
                ..
            } => {
                let dad = src.is_unspecified();
                let (dmac, dst) = if dad {
                    (ALL_NODES_MAC, ALL_NODES)
                } else {
                    (asker, src)
                };
                let len = ndisc::AdvertRepr::LEN;
                let off = start_frame(
                    out,
                    dmac,
                    owner,
                    ethertype::IPV6,
                    vlan,
                    ndisc::IPV6_HEADER_LEN + len,
                );
                let mut h = Ipv6Fixed::new_unchecked(out.get_mut(off..).unwrap_or(&mut []));
                h.set_version_default();
                h.set_payload_len(len as u16);
                h.set_next_header(ndisc::IPPROTO_ICMPV6);
                h.set_hop_limit(ndisc::NDISC_HOP_LIMIT);
                h.set_src_addr(&target);
                h.set_dst_addr(&dst);
                let mut flags = ndisc::FLAG_OVERRIDE;
                if !dad {
                    flags |= ndisc::FLAG_SOLICITED;
                }
                if router {
                    flags |= ndisc::FLAG_ROUTER;
                }
                ndisc::AdvertRepr {
                    flags,
                    target,
                    target_lladdr: owner,
                }
                .emit(&mut Message::new_unchecked(h.payload_mut()), &target, &dst);
            }
        }
    }
}

use super::{Bridge, Egress};
use crate::port::PortId;
use crate::switch::Location;

impl Bridge {
    /// The ARP/ND answering hook, at the flood of a frame from `port`:
    /// true when the frame was a request answered into `port` (it must not
    /// flood), false when it goes out as before.
    pub(super) fn answer_arp_nd(
        &mut self,
        now: Instant,
        port: PortId,
        frame: &[u8],
        io: &mut impl Egress,
    ) -> bool {
        let Some(req) = Request::parse(frame) else {
            return false;
        };
        let v4 = matches!(req, Request::Arp { .. });
        let Some((owner, router)) = self.vouch(now, Some(port), &req) else {
            self.hooks.count_arp_nd(port, None);
            // Unknown here: the distributed ARP table may know it (the
            // flood then waits for its answer, `dat.rs`). An address we
            // know but do not answer for (the rules) floods at once.
            let (vid, ip) = (req.vid(), req.target());
            let known = self.arp_nd.lookup(now, vid, ip).is_some()
                || self.hooks.owner_of(vid, ip).is_some();
            return !known && self.dat_ask(now, port, &req, frame);
        };
        let mut buf = std::mem::take(&mut self.answer_buf);
        req.answer(owner, router, &mut buf);
        self.port_out(port, &buf, io);
        self.answer_buf = buf;
        self.hooks.count_arp_nd(port, Some(v4));
        true
    }

    /// Who answers `req` from `port` (None: a DHT_GET from another node),
    /// by the rules in the module doc: the owner's MAC and router flag.
    pub(super) fn vouch(
        &self,
        now: Instant,
        port: Option<PortId>,
        req: &Request,
    ) -> Option<(MacAddr, bool)> {
        let (vid, ip) = (req.vid(), req.target());
        let snooped = self.arp_nd.lookup(now, vid, ip);
        let by_policy = match self.hooks.owner_of(vid, ip) {
            // The asking port's own address: it is not asked for by proxy.
            Some((p, _)) if Some(p) == port => return None,
            Some((_, mac)) => {
                let router = snooped.is_some_and(|(m, r)| m == mac && r);
                Some((mac, router))
            }
            None => None,
        };
        for (mac, router) in [by_policy, snooped].into_iter().flatten() {
            if mac == req.asker() {
                return None;
            }
            match self.locate(now, mac, vid) {
                Some(Location::Port(p)) if Some(p) == port => return None,
                Some(_) => return Some((mac, router)),
                // Gone from the mesh: the next source, else a flood.
                None => continue,
            }
        }
        None
    }

    /// Where a MAC is live: behind one of our ports (our FDB), else at
    /// the originator the translation table names. A remote FDB entry is
    /// not enough: it is a cache a broadcast filled and may outlive the
    /// client, while the TT drops a client its originator withdrew.
    fn locate(&self, now: Instant, mac: MacAddr, vid: u16) -> Option<Location> {
        if let Some(e) = self.switch.lookup(now, mac, vid) {
            if e.location.is_local() {
                return Some(e.location);
            }
        }
        self.mesh
            .tt_global_lookup(mac, vid)
            .filter(|&o| o != self.mesh.originator())
            .map(Location::Originator)
    }

    /// Learns what a port frame (after its policy) or a mesh frame says
    /// about its sender's address.
    pub(super) fn snoop_arp_nd(&mut self, now: Instant, frame: &[u8]) {
        if let Some(s) = snoop(frame) {
            self.arp_nd.learn(now, s);
        }
    }

    /// The ARP/ND table's entries: (vid, ip, mac).
    pub fn arp_nd_entries(&self, now: Instant) -> Vec<(u16, IpAddr, MacAddr)> {
        self.arp_nd.entries(now)
    }

    pub fn arp_nd_counters(&self) -> ArpNdCounters {
        self.arp_nd.counters()
    }
}
