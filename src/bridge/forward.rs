//! Carrying out a forwarding decision: to a local port, to an originator
//! over the mesh, or flooded; and frames the mesh delivered.
//!
//! The unknown destination is decided here, in one place: the FDB does not
//! know the MAC, so the translation table is asked (and its answer cached in
//! the FDB); with no answer the frame is flooded to the other ports and the
//! mesh. A unicast with no route is flooded too: a VM must not lose its
//! traffic while routes converge.

use std::time::Instant;

use super::{links, Bridge, Egress};
use crate::port::PortId;
use crate::switch::announce::Announce;
use crate::switch::{Decision, DropReason};
use crate::wire::ethernet::Frame;
use crate::wire::MacAddr;

impl Bridge {
    /// Carries out a switch decision for a frame from port `from`.
    pub(super) fn forward(
        &mut self,
        now: Instant,
        from: Option<PortId>,
        decision: Decision,
        frame: &[u8],
        io: &mut impl Egress,
    ) {
        match decision {
            Decision::Port(p) => self.port_out(p, frame, io),
            Decision::Originator(o) => self.unicast_or_flood(now, o, frame, from, io),
            Decision::Flood { except, mesh } => {
                if !self.flood_admit(now, from, frame, io) {
                    return;
                }
                self.flood_ports(except, frame, io);
                if mesh && from.is_some() && super::mcast::is_group(dst_and_vid(frame).0) {
                    self.mcast_to_mesh(now, frame, io);
                } else if mesh {
                    self.mesh.send_broadcast(now, frame, &mut self.out);
                }
            }
            Decision::Unknown { except } => self.unknown(now, except, frame, io),
            Decision::Drop(_) => {}
        }
    }

    /// A destination the FDB does not know: the translation table's
    /// originator (cached in the FDB for the next frame), else a flood.
    fn unknown(
        &mut self,
        now: Instant,
        except: Option<PortId>,
        frame: &[u8],
        io: &mut impl Egress,
    ) {
        let (dst, vid) = dst_and_vid(frame);
        match self.mesh.tt_global_lookup(dst, vid) {
            Some(o) if o != self.mesh.originator() => {
                self.counters.tt_resolved += 1;
                self.switch.learn_from_tt(now, dst, vid, o);
                self.unicast_or_flood(now, o, frame, except, io);
            }
            _ => {
                if !self.flood_admit(now, except, frame, io) {
                    return;
                }
                self.flood_ports(except, frame, io);
                self.mesh.send_broadcast(now, frame, &mut self.out);
            }
        }
    }

    /// The flood hook for a frame from port `from` (None: from the mesh,
    /// whose floods their origin node limited and answered): an ARP
    /// request or NS answered on the owner's behalf goes no further
    /// (`arp_nd.rs`), the rest meets storm control.
    fn flood_admit(
        &mut self,
        now: Instant,
        from: Option<PortId>,
        frame: &[u8],
        io: &mut impl Egress,
    ) -> bool {
        let Some(p) = from else {
            return true;
        };
        !self.answer_arp_nd(now, p, frame, io) && self.hooks.flood_admit(now, p, frame)
    }

    /// Unicast to `orig`; with no route, flood like an unknown destination.
    fn unicast_or_flood(
        &mut self,
        now: Instant,
        orig: MacAddr,
        frame: &[u8],
        except: Option<PortId>,
        io: &mut impl Egress,
    ) {
        if self.unicast_direct(orig, frame, io) {
            return;
        }
        if !self.mesh.send_unicast(now, orig, frame, &mut self.out) {
            self.counters.no_route += 1;
            if !self.flood_admit(now, except, frame, io) {
                return;
            }
            self.flood_ports(except, frame, io);
            self.mesh.send_broadcast(now, frame, &mut self.out);
        }
    }

    /// The hot path: a client frame that fits the link goes out behind its
    /// batman unicast header, with no allocation and no copy beyond the one
    /// into the send batch. Frames that need fragments, and the no-route
    /// case, take the mesh's own path.
    pub(super) fn unicast_direct(
        &mut self,
        orig: MacAddr,
        frame: &[u8],
        io: &mut impl Egress,
    ) -> bool {
        let Some(r) = self.mesh.unicast_route(orig) else {
            return false;
        };
        let Some(link) = self.link_by_hardif(r.hardif) else {
            return false;
        };
        if link
            .mtu
            .is_some_and(|mtu| r.header.len() + frame.len() > mtu)
        {
            return false;
        }
        let (peer, src) = (link.peer, link.mac);
        self.mesh.unicast_sent();
        links::send(io, peer, r.next_hop, src, [&r.header, frame]);
        true
    }

    /// A broadcast, multicast or unknown unicast to every local port but
    /// `except`. The flood hook point (storm control, ARP/ND answers).
    pub(super) fn flood_ports(
        &mut self,
        except: Option<PortId>,
        frame: &[u8],
        io: &mut impl Egress,
    ) {
        for i in 0..self.ports.len() {
            let p = self.ports[i];
            if Some(p) != except {
                self.port_out(p, frame, io);
            }
        }
    }

    /// A frame out of a local port, through the port egress hook (network
    /// isolation, DHCP address learning) and the MSS clamp; the port
    /// backend counts its own refusals.
    pub(super) fn port_out(&mut self, port: PortId, frame: &[u8], io: &mut impl Egress) {
        let Some(copy) = self.hooks.port_egress(port, frame) else {
            return;
        };
        let copy = self.hooks.clamp_mss(port, frame, copy);
        io.to_port(port, copy.as_deref().unwrap_or(frame));
        if let Some(c) = copy {
            self.hooks.done_with(c);
        }
        // A migrating VM's frames are also kept for its new place.
        self.dual_keep(port, frame);
    }

    /// A client frame the mesh delivered to this node: to the local port
    /// that has its destination, or to all of them. A unicast for a client
    /// that just left one of our ports goes on to its new originator with
    /// the received TTL minus one (the old node of a migration: frames
    /// other nodes still send here are not lost while their tables catch up).
    pub(super) fn deliver(
        &mut self,
        now: Instant,
        frame: &[u8],
        source_orig: Option<MacAddr>,
        broadcast: bool,
        ttl: u8,
        io: &mut impl Egress,
    ) {
        self.snoop_arp_nd(now, frame);
        // A broadcast's originator field is only the word of whoever sent
        // it (an authenticated peer can forge or relay one "from" anybody):
        // it teaches the FDB only what the translation table, which only
        // routed originators fill, does not contradict. Announcements
        // (gratuitous ARP, RARP, unsolicited NA) still move a MAC at once:
        // a migration's new node sends them before its TT claim, and any
        // node may claim a MAC through TT anyway. A silent move is not lost
        // either: its new node's TT claim moves the FDB (`sync.rs`).
        let source_orig = match source_orig {
            Some(o) if self.tt_contradicts(frame, o) => {
                self.counters.mesh_source_contradicted += 1;
                None
            }
            other => other,
        };
        match self.switch.from_mesh(now, frame, source_orig) {
            Decision::Port(p) => self.port_out(p, frame, io),
            Decision::Flood { .. } | Decision::Unknown { .. } => self.flood_ports(None, frame, io),
            Decision::Drop(DropReason::RemoteDestination) if !broadcast => {
                // An incoming guest's frames: here too (`dual.rs`).
                if let Some(p) = self.dual_expected_port(frame) {
                    self.port_out(p, frame, io);
                }
                self.redirect(now, frame, ttl);
            }
            // A mesh frame never goes back to the mesh otherwise.
            Decision::Originator(_) | Decision::Drop(_) => {}
        }
        // A mesh frame from a MAC we had locally: it moved away.
        self.withdraw();
        self.log_moves(now);
    }

    /// Whether the translation table puts the frame's source at another
    /// originator than `orig` (and the frame is no announcement).
    fn tt_contradicts(&self, frame: &[u8], orig: MacAddr) -> bool {
        let Ok(f) = Frame::new_checked(frame) else {
            return false;
        };
        if Announce::detect(&f).is_some() {
            return false;
        }
        src_and_vid(frame).is_some_and(|(src, vid)| {
            self.mesh
                .tt_global_lookup(src, vid)
                .is_some_and(|t| t != orig)
        })
    }

    /// Sends a delivered unicast on to the client's new originator, if it
    /// left one of our ports recently (`Switch::redirect_for`).
    fn redirect(&mut self, now: Instant, frame: &[u8], ttl: u8) {
        let Some(orig) = self.switch.redirect_for(now, frame) else {
            return;
        };
        if orig == self.mesh.originator() {
            return;
        }
        let ttl = ttl.saturating_sub(1);
        if self
            .mesh
            .send_unicast_ttl(now, orig, frame, ttl, &mut self.out)
        {
            self.counters.redirected += 1;
        }
    }
}

/// Destination MAC and VLAN in batman encoding (0 untagged, 0x8000|id tagged).
fn src_and_vid(frame: &[u8]) -> Option<(MacAddr, u16)> {
    Frame::new_checked(frame)
        .ok()
        .map(|e| (e.src_addr(), e.batman_vid()))
}

fn dst_and_vid(frame: &[u8]) -> (MacAddr, u16) {
    match Frame::new_checked(frame) {
        Ok(e) => (e.dst_addr(), e.batman_vid()),
        Err(_) => (MacAddr::ZERO, 0),
    }
}
