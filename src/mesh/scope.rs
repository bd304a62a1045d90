//! Scoped relaying between meshwire nodes: a broadcast or an OGM is not
//! re-sent to a meshwire neighbour that gets it anyway, because it hears
//! the packet's originator, or the neighbour we got the packet from, on its
//! own direct link. In a healthy full mesh nothing is re-sent at all (one
//! VM broadcast costs N-1 datagrams, control traffic grows with N, not N²);
//! when a direct link dies, re-sending starts towards exactly the two nodes
//! at its ends, and rerouting works as before (the relays carry the OGMs
//! that give the two-hop route).
//!
//! How a node knows what its neighbour hears: every meshwire node puts a
//! scope container in its OGMs (`tvlv_type::MESHWIRE_SCOPE`, ignored by
//! kernels): the count and an order-independent hash of D, the set of
//! originators it hears on their own live link and routes to directly, and
//! M, the originators it knows but does not hear directly (up to
//! [`MAX_MISSING`]; beyond, a flag). The receiver checks that hash against
//! its own view: D = everything it knows, plus itself, minus the neighbour
//! and M (the two nodes agree on who is in the mesh), or D = what it hears
//! directly, plus itself, minus the neighbour (both sit in one full-mesh
//! site). Only a match lets it skip: an unknown, stale or mismatching view
//! means the kernel's rules towards that neighbour, so a disagreement costs
//! packets, never reachability. A neighbour that sends no container (a
//! kernel, or meshwire with `relay = "kernel"`) always gets the kernel's
//! rules: links to kernel nodes are unchanged.
//!
//! Why a TVLV and not config: a peer's key says it runs meshwire, but not
//! what it hears now; the container carries both, and a kernel node
//! relaying our OGM passes it on untouched.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::{HardifId, Mesh};
use crate::wire::batman::tvlv::{self, tvlv_type, ScopeData, SCOPE_OVERFLOW, SCOPE_VERSION};
use crate::wire::MacAddr;

/// Most originators listed as known but not heard directly (12 + 6 * 16 =
/// 108 bytes: under the 128 bytes kernels copy per TVLV).
pub const MAX_MISSING: usize = 16;
/// Largest scope container with its header, reserved in our OGMs.
pub(crate) const MAX_SCOPE_TVLV: usize = tvlv::TVLV_HDR_LEN + tvlv::SCOPE_LEN + 6 * MAX_MISSING;

/// How OGMs and broadcasts are re-sent to meshwire neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayMode {
    /// The kernel's rules on every link (no scope container sent).
    Kernel,
    /// Not re-sent where the neighbour has it anyway (module docs).
    #[default]
    Scoped,
    /// Measured, not for use: a neighbour's OGM goes back only as the echo
    /// on its own link and broadcasts are never re-sent to meshwire
    /// neighbours. No two-hop paths through meshwire nodes: a cut link is
    /// never routed around.
    EchoOnly,
}

/// How our view of a neighbour's direct set was confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Basis {
    /// Not confirmed: kernel rules towards it.
    Unknown,
    /// D = our known set + us - it - its missing list.
    Known,
    /// D = our direct set + us - it.
    Direct,
}

#[derive(Debug)]
struct PeerScope {
    owner: MacAddr,
    count: u16,
    hash: u64,
    overflow: bool,
    missing: Vec<MacAddr>,
    basis: Basis,
}

/// Our view (rebuilt with each own OGM) and our neighbours' announcements.
#[derive(Debug, Default)]
pub(crate) struct Scope {
    peers: HashMap<HardifId, PeerScope>,
    known: HashSet<MacAddr>,
    direct: HashSet<MacAddr>,
    sum_known: u64,
    sum_direct: u64,
    me: MacAddr,
}

/// The per-originator term of the set hash (splitmix64 of the MAC): the
/// same on every node, so sums of terms compare across nodes.
fn mix(m: MacAddr) -> u64 {
    let mut z =
        m.0.iter()
            .fold(0u64, |a, b| (a << 8) | u64::from(*b))
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Scope {
    fn verify(&self, p: &PeerScope) -> Basis {
        let base = mix(self.me).wrapping_sub(mix(p.owner));
        if !p.overflow {
            let minus = p.missing.iter().fold(0u64, |a, m| a.wrapping_add(mix(*m)));
            let n = self.known.len() + 1;
            if self.sum_known.wrapping_add(base).wrapping_sub(minus) == p.hash
                && n.checked_sub(1 + p.missing.len()) == Some(usize::from(p.count))
            {
                return Basis::Known;
            }
        }
        if self.sum_direct.wrapping_add(base) == p.hash && self.direct.len() == usize::from(p.count)
        {
            return Basis::Direct;
        }
        Basis::Unknown
    }

    /// Whether the neighbour behind `hardif` hears `orig` directly, as far
    /// as a confirmed view says (false when not confirmed).
    fn hears(&self, hardif: HardifId, orig: MacAddr) -> bool {
        let Some(p) = self.peers.get(&hardif) else {
            return false;
        };
        if orig == p.owner {
            return false;
        }
        match p.basis {
            Basis::Unknown => false,
            Basis::Known => {
                orig == self.me || (self.known.contains(&orig) && !p.missing.contains(&orig))
            }
            Basis::Direct => orig == self.me || self.direct.contains(&orig),
        }
    }

    /// Whether `orig` announced that it does not hear `who` directly.
    fn lacks(&self, orig_hardif: Option<HardifId>, who: MacAddr) -> bool {
        orig_hardif
            .and_then(|h| self.peers.get(&h))
            .is_some_and(|p| p.missing.contains(&who))
    }
}

impl Mesh {
    /// Rebuilds our view and returns the scope container for our OGM
    /// (empty in kernel mode).
    pub(crate) fn scope_tvlv(&mut self, now: Instant) -> Vec<u8> {
        if self.cfg.relay == RelayMode::Kernel {
            return Vec::new();
        }
        let me = self.cfg.originator;
        let mut direct = HashSet::new();
        for (&orig, &h) in &self.owners {
            let via_own = self.origs.route(&orig).is_some_and(|(_, rh)| rh == h);
            if via_own && self.direct_alive(h, now) {
                direct.insert(orig);
            }
        }
        let known: HashSet<MacAddr> = self
            .origs
            .map
            .values()
            .filter(|o| o.last_ttl > super::bat_iv::SECONDARY_TTL && o.orig != me)
            .filter(|o| o.router().is_some_and(|r| r.tq_avg > 0))
            .map(|o| o.orig)
            .collect();
        let s = &mut self.scope;
        s.me = me;
        s.sum_direct = direct.iter().fold(0u64, |a, m| a.wrapping_add(mix(*m)));
        s.sum_known = known.iter().fold(0u64, |a, m| a.wrapping_add(mix(*m)));
        let mut missing: Vec<MacAddr> = known.difference(&direct).copied().collect();
        s.direct = direct;
        s.known = known;
        let peers: Vec<HardifId> = s.peers.keys().copied().collect();
        for h in peers {
            let basis = s.peers.get(&h).map_or(Basis::Unknown, |p| s.verify(p));
            if let Some(p) = s.peers.get_mut(&h) {
                p.basis = basis;
            }
        }
        let mut flags = 0;
        if missing.len() > MAX_MISSING {
            flags |= SCOPE_OVERFLOW;
            missing.clear();
        }
        missing.sort_unstable();
        let mut out = Vec::with_capacity(MAX_SCOPE_TVLV);
        let count = u16::try_from(s.direct.len()).unwrap_or(u16::MAX);
        tvlv::emit_scope(&mut out, flags, count, s.sum_direct, &missing);
        out
    }

    /// The TVLV region of an OGM that `owner` sent on its own link
    /// `hardif`: its scope container, or none (a kernel node, or meshwire
    /// in kernel mode), then kernel rules towards it.
    pub(crate) fn scope_receive(&mut self, hardif: HardifId, owner: MacAddr, region: &[u8]) {
        let found = tvlv::TvlvIter::new(region)
            .filter_map(Result::ok)
            .find(|t| t.tvlv_type == tvlv_type::MESHWIRE_SCOPE && t.version == SCOPE_VERSION);
        let Some(t) = found else {
            self.scope.peers.remove(&hardif);
            return;
        };
        let Ok(d) = ScopeData::new_checked(t.value) else {
            self.counters.malformed += 1;
            self.scope.peers.remove(&hardif);
            return;
        };
        let mut p = PeerScope {
            owner,
            count: d.count(),
            hash: d.hash(),
            overflow: d.flags() & SCOPE_OVERFLOW != 0,
            missing: d.missing().take(MAX_MISSING).collect(),
            basis: Basis::Unknown,
        };
        p.basis = self.scope.verify(&p);
        self.scope.peers.insert(hardif, p);
    }

    /// A hardif went away: what its neighbour announced goes too.
    pub(crate) fn scope_forget(&mut self, hardif: HardifId) {
        self.scope.peers.remove(&hardif);
    }

    /// Whether a packet from `orig`, received on `if_in`, is re-sent on
    /// `out` (not `if_in`: the echo is the caller's rule) under the relay
    /// mode. Kernel neighbours and unconfirmed views: yes.
    pub(crate) fn scope_relay(&self, out: HardifId, if_in: HardifId, orig: MacAddr) -> bool {
        let s = &self.scope;
        let Some(p) = s.peers.get(&out) else {
            return true;
        };
        if orig == p.owner && self.cfg.relay != RelayMode::Kernel {
            return false; // its own packets: it never needs them back
        }
        match self.cfg.relay {
            RelayMode::Kernel => true,
            RelayMode::EchoOnly => false,
            RelayMode::Scoped => {
                if s.lacks(self.owners.get(&orig).copied(), p.owner) {
                    return true;
                }
                let prev = self.hardifs.get(&if_in).and_then(|h| h.owner);
                let gets_it = s.hears(out, orig) || prev.is_some_and(|x| s.hears(out, x));
                !gets_it
            }
        }
    }

    /// Whether the neighbour on `hardif` is a meshwire node whose scope
    /// container we hold (it needs no echo of a non-direct OGM).
    pub(crate) fn scope_peer(&self, hardif: HardifId) -> bool {
        self.cfg.relay != RelayMode::Kernel && self.scope.peers.contains_key(&hardif)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_hash_is_order_independent_and_subtractive() {
        let a = MacAddr([2, 0, 0, 0, 0, 1]);
        let b = MacAddr([2, 0, 0, 0, 0, 2]);
        let c = MacAddr([2, 0, 0, 0, 0, 3]);
        let abc = mix(a).wrapping_add(mix(b)).wrapping_add(mix(c));
        let cab = mix(c).wrapping_add(mix(a)).wrapping_add(mix(b));
        assert_eq!(abc, cab);
        assert_eq!(abc.wrapping_sub(mix(b)), mix(a).wrapping_add(mix(c)));
        assert_ne!(mix(a), mix(b));
    }
}
