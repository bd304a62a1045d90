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
//! What we announce is true for meshwire as it is: we do not snoop IGMP/MLD
//! yet and announce no listener entries, so we say we want all IPv4 and all
//! IPv6 multicast and all unsnoopable (link-local) multicast. No WANT_NO_RTR
//! bits: we cannot tell whether a multicast router sits behind a port, and
//! with the want-all bits they would not change what reaches us. No
//! FORW_MCAST: we do not parse the multicast packet type (0x05), so kernels
//! keep to unicast copies and broadcasts towards us.

use crate::wire::batman::tvlv::{self, tvlv_type};
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

/// The flags meshwire announces (see the module doc for why).
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
            let _ = tvlv::emit(region, tvlv_type::MCAST, 2, &[OWN_FLAGS, 0, 0, 0]);
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
