//! batman-adv's multicast optimisation, the TVLV side (`multicast.c`):
//! the MCAST container (type 0x06, version 2) in our OGMs, and the flags
//! other originators announce in theirs.
//!
//! A kernel node decides how to send a multicast frame
//! (`batadv_mcast_forw_mode`) only while every originator it knows carries
//! this container; one without it counts as multicast-disabled and the
//! kernel floods all multicast as broadcast. So announcing it is what lets
//! kernel nodes send multicast as unicast copies to the nodes that want it
//! (up to their `mcast_fanout`, 16 by default) or drop it when nobody does.
//!
//! What we announce is set by the bridge's IGMP/MLD snooper
//! (`bridge/mcast_snoop.rs`): until it has heard the ports' answers to its
//! first query (and while a port carries a VLAN) we want all IPv4 and IPv6
//! multicast; then our listeners are TT local entries of their groups'
//! MACs, and WANT_NO_RTR4/6 say no multicast router sits behind a port
//! (none has sent a query). We always want all unsnoopable (link-local)
//! multicast: hosts do not report those groups. No FORW_MCAST: we do not
//! parse the multicast packet type (0x05), so kernels keep to unicast
//! copies and broadcasts towards us.
//!
//! Our own multicast from a port goes the way `batadv_mcast_forw_mode`
//! sends a kernel node's ([`Mesh::mcast_forw_mode`]).

use crate::wire::batman::tvlv::{self, tvlv_type};
use crate::wire::igmp;
use crate::wire::MacAddr;

use super::Mesh;

/// The MCAST TVLV's flag bits (`enum batadv_mcast_flags`).
pub mod flags {
    pub const WANT_ALL_UNSNOOPABLES: u8 = 0x01;
    pub const WANT_ALL_IPV4: u8 = 0x02;
    pub const WANT_ALL_IPV6: u8 = 0x04;
    pub const WANT_NO_RTR4: u8 = 0x08;
    pub const WANT_NO_RTR6: u8 = 0x10;
    pub const FORW_MCAST: u8 = 0x20;
}

/// `struct batadv_tvlv_mcast_data`: the flags byte and three reserved bytes.
pub const MCAST_DATA_LEN: usize = 4;
/// The container in an OGM: TVLV header and value.
pub const MCAST_TVLV_LEN: usize = tvlv::TVLV_HDR_LEN + MCAST_DATA_LEN;

/// The flags meshwire announces before its snooper knows the listeners.
pub const OWN_FLAGS: u8 =
    flags::WANT_ALL_UNSNOOPABLES | flags::WANT_ALL_IPV4 | flags::WANT_ALL_IPV6;

impl Mesh {
    /// Whether our OGMs carry the MCAST container (`[mesh] multicast`).
    pub fn multicast_enabled(&self) -> bool {
        self.cfg.multicast
    }

    /// Appends our MCAST container to an OGM's TVLV region, while enabled.
    pub(crate) fn mcast_ogm_tvlv(&self, region: &mut Vec<u8>) {
        if self.cfg.multicast {
            // cannot fail: a 4-byte value
            let _ = tvlv::emit(region, tvlv_type::MCAST, 2, &[self.mcast_own, 0, 0, 0]);
        }
    }

    /// The flags of a received version-2 MCAST value. The kernel takes a
    /// value shorter than `batadv_tvlv_mcast_data` as no container
    /// (`batadv_mcast_tvlv_ogm_handler` checks the length); so do we, and
    /// count it. Longer values keep their first byte (future fields).
    pub(crate) fn mcast_parse(&mut self, value: &[u8]) -> Option<u8> {
        if value.len() < MCAST_DATA_LEN {
            self.counters.malformed += 1;
            return None;
        }
        value.first().copied()
    }

    /// Records `orig`'s MCAST flags from its latest OGM (None: it carried
    /// none). Kept on the originator entry, so it is bounded and purged
    /// with it.
    pub(crate) fn mcast_capability(&mut self, orig: MacAddr, flags: Option<u8>) {
        if let Some(o) = self.origs.get_mut(&orig) {
            o.mcast_flags = flags;
        }
    }

    /// `orig`'s MCAST flags, None when unknown or not announced.
    pub fn mcast_flags(&self, orig: MacAddr) -> Option<u8> {
        self.origs.get(&orig).and_then(|o| o.mcast_flags)
    }
}

/// How many unicast copies of one multicast frame at most; beyond, one
/// broadcast is cheaper (the kernel's `multicast_fanout` default).
pub const MCAST_FANOUT: usize = 16;

/// How to send a multicast frame into the mesh (`enum batadv_forw_mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McastForw {
    Broadcast,
    /// Nobody in the mesh wants it.
    Drop,
    /// One batman unicast copy to each of these originators.
    Unicasts(Vec<MacAddr>),
}

impl Mesh {
    /// The flags our OGMs carry from now on (the snooper's view).
    pub fn set_mcast_own_flags(&mut self, f: u8) {
        self.mcast_own = f;
    }

    pub fn mcast_own_flags(&self) -> u8 {
        self.mcast_own
    }

    /// A group MAC with a listener behind our ports, announced as a TT
    /// local entry (untagged, as `batadv_mcast_mla_tt_add`). Not a client:
    /// other nodes announce the same MAC for their own listeners, so no
    /// roaming is involved.
    pub fn tt_mcast_add(&mut self, mac: MacAddr) {
        if self.tt.local_serves(mac, 0) {
            return;
        }
        if !self.tt.local_add(mac, 0) {
            self.counters.table_full += 1;
            return;
        }
        let now = self.now.unwrap_or_else(std::time::Instant::now);
        self.tt_change_ogm(now);
    }

    /// The last listener of a group left (`batadv_mcast_mla_tt_retract`).
    pub fn tt_mcast_del(&mut self, mac: MacAddr) {
        self.tt_local_del(mac, 0);
    }

    /// `batadv_mcast_forw_mode`: while every originator we route to
    /// announces the MCAST TVLV, a frame goes as unicast copies to the
    /// originators that want it (TT entries of its group MAC, want-all of
    /// its family, routers for routable groups), up to `MCAST_FANOUT`; to
    /// nobody it is dropped. Anything else is broadcast as before:
    /// unsnoopable groups someone wants, tagged or non-IP frames, reports
    /// (every snooper wants them), an originator without the TVLV.
    pub fn mcast_forw_mode(&self, frame: &[u8]) -> McastForw {
        if !self.cfg.multicast {
            return McastForw::Broadcast;
        }
        let Some(d) = igmp::mcast_dst(frame) else {
            return McastForw::Broadcast;
        };
        let Some(dst) = MacAddr::from_bytes(frame) else {
            return McastForw::Broadcast;
        };
        let (want_all, no_rtr) = if d.v6 {
            (flags::WANT_ALL_IPV6, flags::WANT_NO_RTR6)
        } else {
            (flags::WANT_ALL_IPV4, flags::WANT_NO_RTR4)
        };
        let mut to = Vec::new();
        for (o, node) in &self.origs.map {
            if self.origs.route(o).is_none() {
                continue;
            }
            // A secondary OGM stream (a peer's per-hardif originator, TTL 2)
            // carries no TVLV at all, no TT either: it is no node of its
            // own. A node that announces a TT but no MCAST container is
            // multicast-disabled: everything is broadcast, as the kernel does.
            let Some(f) = node.mcast_flags else {
                if !node.tt.initialised {
                    continue;
                }
                return McastForw::Broadcast;
            };
            if d.unsnoopable && f & flags::WANT_ALL_UNSNOOPABLES != 0 {
                return McastForw::Broadcast;
            }
            if f & want_all != 0 || (d.routable && f & no_rtr == 0) {
                to.push(*o);
            }
        }
        if let Some(list) = self.tt.global.get(&(dst, 0)) {
            for (o, _) in list {
                if !to.contains(o) && *o != self.originator() && self.origs.route(o).is_some() {
                    to.push(*o);
                }
            }
        }
        match to.len() {
            0 => McastForw::Drop,
            n if n <= MCAST_FANOUT => {
                to.sort();
                McastForw::Unicasts(to)
            }
            _ => McastForw::Broadcast,
        }
    }
}
