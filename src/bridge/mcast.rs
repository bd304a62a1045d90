//! The hub's side of multicast: IGMP/MLD snooping at the ports feeding the
//! translation table and our MCAST flags (`mcast_snoop.rs`), the querier's
//! general queries into the ports, and a port's multicast into the mesh
//! the way batman-adv's `batadv_mcast_forw_send` sends it (as unicast
//! copies to the originators that want it, or dropped, or broadcast).

use std::time::Instant;

use super::mcast_snoop::{Query, Seen};
use super::{Bridge, Egress};
use crate::mesh::multicast::McastForw;
use crate::port::PortId;
use crate::wire::igmp;
use crate::wire::MacAddr;

impl Bridge {
    /// Snoops a frame from `port` (after the ingress policy); false: a
    /// membership message that does not parse, dropped.
    pub(super) fn mcast_snoop(&mut self, now: Instant, port: PortId, frame: &[u8]) -> bool {
        if !self.mesh.multicast_enabled() || self.hooks.port_vid(port) != 0 {
            return true;
        }
        let vm_port = self.hooks.policy(port).is_some_and(|p| p.mac.is_some());
        let seen = self.snoop.from_port(now, port, frame, vm_port);
        self.mcast_apply();
        seen != Seen::Malformed
    }

    /// The snooper's translation-table changes, into the mesh.
    pub(super) fn mcast_apply(&mut self) {
        for (mac, add) in self.snoop.take_changes() {
            if add {
                self.mesh.tt_mcast_add(mac);
            } else {
                self.mesh.tt_mcast_del(mac);
            }
        }
    }

    /// Timers: listeners expire, general queries go out, our MCAST flags
    /// follow what the snooper knows.
    pub(super) fn mcast_tick(&mut self, now: Instant, io: &mut impl Egress) {
        if !self.mesh.multicast_enabled() {
            return;
        }
        let query = self.snoop.tick(now);
        self.mcast_apply();
        let ports: Vec<PortId> = match query {
            Query::All => self.ports.clone(),
            Query::Ports(p) => p,
        };
        let ports: Vec<PortId> = ports
            .into_iter()
            .filter(|&p| self.ports.contains(&p) && self.hooks.port_vid(p) == 0)
            .collect();
        if !ports.is_empty() {
            self.send_queries(&ports, io);
        }
        let tagged = self.ports.iter().any(|&p| {
            self.hooks.port_vid(p) != 0
                || self
                    .hooks
                    .policy(p)
                    .is_some_and(|pol| !pol.trunk.is_empty())
        });
        let f = self.snoop.own_flags(now, tagged);
        self.mesh.set_mcast_own_flags(f);
    }

    /// An IGMPv3 and an MLDv2 general query into each of `ports`, from our
    /// originator MAC and its link-local address.
    fn send_queries(&mut self, ports: &[PortId], io: &mut impl Egress) {
        let src = self.mesh.originator();
        let mut buf = std::mem::take(&mut self.answer_buf);
        igmp::igmp_general_query(src, &mut buf);
        for &p in ports {
            self.port_out(p, &buf, io);
        }
        igmp::mld_general_query(src, super::policy::link_local(src), &mut buf);
        for &p in ports {
            self.port_out(p, &buf, io);
        }
        self.snoop.counters.queries_sent += 2 * ports.len() as u64;
        self.answer_buf = buf;
    }

    /// A multicast frame from a port, into the mesh (`batadv_mcast_forw_mode`
    /// decides; the local ports already had their copies).
    pub(super) fn mcast_to_mesh(&mut self, now: Instant, frame: &[u8], io: &mut impl Egress) {
        match self.mesh.mcast_forw_mode(frame) {
            McastForw::Broadcast => {
                self.counters.mcast_broadcast += 1;
                self.mesh.send_broadcast(now, frame, &mut self.out);
            }
            McastForw::Drop => self.counters.mcast_no_listener += 1,
            McastForw::Unicasts(origs) => {
                for o in origs {
                    self.counters.mcast_unicast_copies += 1;
                    if !self.unicast_direct(o, frame, io)
                        && !self.mesh.send_unicast(now, o, frame, &mut self.out)
                    {
                        self.counters.no_route += 1;
                    }
                }
            }
        }
    }

    /// The groups snooped on `port` (for `ctl` and tests).
    pub fn mcast_groups(&self, port: PortId) -> Vec<std::net::IpAddr> {
        self.snoop.groups(port)
    }

    pub fn snoop_counters(&self) -> super::mcast_snoop::SnoopCounters {
        self.snoop.counters
    }
}

/// Multicast other than broadcast: the frames `mcast_to_mesh` handles.
pub(super) fn is_group(dst: MacAddr) -> bool {
    dst.is_multicast() && !dst.is_broadcast()
}
