//! batman-adv's distributed ARP table (DAT), the mesh half: the DHT
//! addresses, the choice of candidates, the DAT capability every OGM
//! announces, and UNICAST_4ADDR packets with a DAT subtype in both
//! directions. What the packets carry (ARP in Ethernet) is the bridge's
//! business (`bridge/dat.rs`).
//!
//! The facts, from the kernel's `distributed-arp-table.c`,
//! `originator.h` and `batadv_packet.h` (re-implemented, not copied):
//! - the DHT space is 16 bits: an originator sits at
//!   `jhash(orig MAC, 6, 0) % 0xffff`, an address at the
//!   one-at-a-time hash of its 4 IPv4 bytes then its 2 vid bytes
//!   (host order, little endian on every kernel node we meet), `% 0xffff`;
//! - the 3 candidates for a key are the DAT-capable originators closest
//!   to it from the left on the ring: `(0xffff - addr + key) mod 2^16`
//!   largest first, ties to the lower MAC; the sender never picks itself;
//! - a node is DAT-capable while its OGMs carry the DAT container
//!   (type 2, version 1, empty); an OGM without it clears the capability;
//! - DHT_GET (subtype 2) carries an ARP request, DHT_PUT (3) an ARP
//!   reply, DAT_CACHE_REPLY (4) the candidate's answer, all as
//!   UNICAST_4ADDR (header 18 bytes: type, version, ttl, ttvn, dest,
//!   src originator, subtype, reserved).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::TTL;
use super::{Mesh, MeshOutput};
use crate::wire::batman::{packet_type, subtype, COMPAT_VERSION};
use crate::wire::MacAddr;

/// `BATADV_DAT_ADDR_MAX`: the DHT ring is 16 bits, hashes are taken modulo this.
pub const DAT_ADDR_MAX: u16 = 0xffff;
/// `BATADV_DAT_CANDIDATES_NUM`.
pub const CANDIDATES: usize = 3;
/// The UNICAST_4ADDR header length.
pub const HEADER_4ADDR_LEN: usize = 18;

/// The Linux kernel's `jhash()` (Bob Jenkins' lookup3 `hashlittle`, bytes
/// read little endian).
fn jhash(key: &[u8], initval: u32) -> u32 {
    let init = 0xdead_beef_u32
        .wrapping_add(key.len() as u32)
        .wrapping_add(initval);
    let (mut a, mut b, mut c) = (init, init, init);
    let word = |k: &[u8], off: usize| -> u32 {
        (0..4).fold(0u32, |w, i| {
            w | k.get(off + i).map_or(0, |&x| u32::from(x) << (8 * i))
        })
    };
    let mut k = key;
    while k.len() > 12 {
        a = a.wrapping_add(word(k, 0));
        b = b.wrapping_add(word(k, 4));
        c = c.wrapping_add(word(k, 8));
        // __jhash_mix
        a = a.wrapping_sub(c);
        a ^= c.rotate_left(4);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a);
        b ^= a.rotate_left(6);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b);
        c ^= b.rotate_left(8);
        b = b.wrapping_add(a);
        a = a.wrapping_sub(c);
        a ^= c.rotate_left(16);
        c = c.wrapping_add(b);
        b = b.wrapping_sub(a);
        b ^= a.rotate_left(19);
        a = a.wrapping_add(c);
        c = c.wrapping_sub(b);
        c ^= b.rotate_left(4);
        b = b.wrapping_add(a);
        k = &k[12..];
    }
    if k.is_empty() {
        return c;
    }
    a = a.wrapping_add(word(k, 0));
    b = b.wrapping_add(word(k, 4));
    c = c.wrapping_add(word(k, 8));
    // __jhash_final
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(24));
    c
}

/// Where originator `orig` sits in the DHT (`orig_node->dat_addr`).
pub fn dat_addr(orig: MacAddr) -> u16 {
    (jhash(&orig.0, 0) % u32::from(DAT_ADDR_MAX)) as u16
}

/// The DHT key of `ip` in network `vid` (batman encoding: 0 untagged,
/// 0x8000 | id tagged) — `batadv_hash_dat`.
pub fn dat_key(ip: Ipv4Addr, vid: u16) -> u16 {
    let mut h: u32 = 0;
    for &b in ip.octets().iter().chain(vid.to_le_bytes().iter()) {
        h = h.wrapping_add(u32::from(b));
        h = h.wrapping_add(h << 10);
        h ^= h >> 6;
    }
    h = h.wrapping_add(h << 3);
    h ^= h >> 11;
    h = h.wrapping_add(h << 15);
    (h % u32::from(DAT_ADDR_MAX)) as u16
}

/// The (up to) 3 candidates for `key` among `nodes` (DAT-capable
/// originators other than the sender), in the kernel's order.
pub fn select_candidates(key: u16, nodes: &[MacAddr]) -> Vec<MacAddr> {
    let mut chosen: Vec<MacAddr> = Vec::with_capacity(CANDIDATES);
    let mut last_max = DAT_ADDR_MAX;
    for _ in 0..CANDIDATES {
        let mut max: u16 = 0;
        let mut best: Option<MacAddr> = None;
        for &n in nodes {
            let dist = (u32::from(DAT_ADDR_MAX) - u32::from(dat_addr(n)) + u32::from(key)) as u16;
            if chosen.contains(&n) || dist > last_max || dist < max {
                continue;
            }
            if dist == max && best.is_some_and(|b| n.0 > b.0) {
                continue;
            }
            max = dist;
            best = Some(n);
        }
        chosen.extend(best);
        last_max = max;
    }
    chosen
}

/// The mesh's DAT state: on or off, and who else runs it.
#[derive(Debug, Default)]
pub(crate) struct DatState {
    pub enabled: bool,
    /// Originators whose last OGM carried the DAT container.
    capable: HashSet<MacAddr>,
}

impl Mesh {
    /// Whether this node takes part in the distributed ARP table.
    pub fn dat_enabled(&self) -> bool {
        self.dat.enabled
    }

    /// Records whether `orig`'s OGM carried the DAT container.
    pub(crate) fn dat_capability(&mut self, orig: MacAddr, has_dat: bool) {
        if has_dat {
            if self.dat.capable.len() >= super::originator::MAX_ORIGINATORS {
                let origs = &self.origs;
                self.dat.capable.retain(|o| origs.get(o).is_some());
            }
            self.dat.capable.insert(orig);
        } else {
            self.dat.capable.remove(&orig);
        }
    }

    /// The DHT candidates for `ip` in network `vid`: DAT-capable
    /// originators we know (never ourselves).
    pub fn dat_candidates(&self, ip: Ipv4Addr, vid: u16) -> Vec<MacAddr> {
        if !self.dat.enabled {
            return Vec::new();
        }
        let own = self.originator();
        let nodes: Vec<MacAddr> = self
            .dat
            .capable
            .iter()
            .copied()
            .filter(|o| *o != own && self.origs.get(o).is_some())
            .collect();
        select_candidates(dat_key(ip, vid), &nodes)
    }

    /// Sends `frame` to originator `dest` in a UNICAST_4ADDR with a DAT
    /// `subtype`; false when there is no route.
    pub fn send_dat(
        &mut self,
        dest: MacAddr,
        dat_subtype: u8,
        frame: &[u8],
        out: &mut Vec<MeshOutput>,
    ) -> bool {
        let Some((next_hop, hardif)) = self.origs.route(&dest) else {
            self.counters.no_route += 1;
            return false;
        };
        let mut p = Vec::with_capacity(HEADER_4ADDR_LEN + frame.len());
        p.extend_from_slice(&[
            packet_type::UNICAST_4ADDR,
            COMPAT_VERSION,
            TTL,
            self.tt_orig_ttvn(&dest),
        ]);
        p.extend_from_slice(&dest.0);
        p.extend_from_slice(&self.originator().0);
        p.extend_from_slice(&[dat_subtype, 0]);
        p.extend_from_slice(frame);
        match dat_subtype {
            subtype::DAT_DHT_GET => self.counters.dat_get_tx += 1,
            subtype::DAT_DHT_PUT => self.counters.dat_put_tx += 1,
            _ => self.counters.dat_cache_reply_tx += 1,
        }
        self.counters.tx_unicast += 1;
        self.transmit_unicast(hardif, next_hop, dest, p, out)
    }

    /// A UNICAST_4ADDR for us with a DAT subtype: to the bridge, or
    /// dropped and counted when DAT is off or the subtype unknown.
    pub(crate) fn dat_receive(
        &mut self,
        dat_subtype: u8,
        source_orig: MacAddr,
        frame: &[u8],
        ttl: u8,
        out: &mut Vec<MeshOutput>,
    ) {
        let counter = match dat_subtype {
            subtype::DAT_DHT_GET => &mut self.counters.dat_get_rx,
            subtype::DAT_DHT_PUT => &mut self.counters.dat_put_rx,
            subtype::DAT_CACHE_REPLY => &mut self.counters.dat_cache_reply_rx,
            _ => &mut self.counters.dat_dropped,
        };
        *counter += 1;
        let known = matches!(
            dat_subtype,
            subtype::DAT_DHT_GET | subtype::DAT_DHT_PUT | subtype::DAT_CACHE_REPLY
        );
        if !known {
            return;
        }
        // A cache reply is a frame for our client: delivered even with DAT
        // off (a kernel only sends one in answer to a DHT_GET of ours).
        if !self.dat.enabled && dat_subtype != subtype::DAT_CACHE_REPLY {
            self.counters.dat_dropped += 1;
            return;
        }
        if frame.len() < crate::wire::ethernet::HEADER_LEN {
            self.counters.malformed += 1;
            return;
        }
        out.push(MeshOutput::Dat {
            subtype: dat_subtype,
            source_orig,
            frame: frame.to_vec(),
            ttl,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jhash_matches_lookup3_reference_values() {
        // The values lookup3.c's own driver prints for hashlittle(), which
        // the kernel's jhash() is: mixing, the tail and the final rounds.
        assert_eq!(jhash(b"", 0), 0xdead_beef);
        assert_eq!(jhash(b"", 0xdead_beef), 0xbd5b_7dde);
        let four = b"Four score and seven years ago";
        assert_eq!(jhash(four, 0), 0x1777_0551);
        assert_eq!(jhash(four, 1), 0xcd62_8161);
    }

    #[test]
    fn candidates_are_the_closest_from_the_left_distinct_and_at_most_three() {
        let nodes: Vec<MacAddr> = (1..=6).map(|i| MacAddr([2, 0, 0, 0, i, 1])).collect();
        for ip in 0..200u8 {
            let ip = Ipv4Addr::new(198, 19, 1, ip);
            let key = dat_key(ip, 0);
            let c = select_candidates(key, &nodes);
            assert_eq!(c.len(), 3);
            let dist = |n: &MacAddr| (0xffff_u32 - u32::from(dat_addr(*n)) + u32::from(key)) as u16;
            // In order, and no node outside the choice is closer than the
            // last one chosen.
            assert!(dist(&c[0]) >= dist(&c[1]) && dist(&c[1]) >= dist(&c[2]));
            for n in nodes.iter().filter(|n| !c.contains(n)) {
                assert!(dist(n) <= dist(&c[2]), "{ip}");
            }
        }
        assert!(select_candidates(7, &[]).is_empty());
        assert_eq!(select_candidates(7, &nodes[..2]).len(), 2);
    }
}
