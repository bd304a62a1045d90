//! Hard interfaces (batman-adv's hard-interface.c): one per WireGuard peer,
//! as one gretap per peer on a kernel node. Each has its own MAC and
//! secondary OGM stream, an optional MTU above which unicasts are
//! fragmented, and the originator known to sit at its other end.

use std::time::Instant;

use super::{HardifId, Mesh};
use crate::wire::MacAddr;

/// One hard interface (one WireGuard peer).
#[derive(Debug)]
pub(crate) struct Hardif {
    pub mac: MacAddr,
    /// Seqno of this hardif's own secondary OGM stream (`bat_iv.ogm_seqno`).
    pub seqno: u32,
    /// Neighbour MACs heard on it (`hardif_neigh`), with last-seen.
    pub neighs: Vec<(MacAddr, Instant)>,
    /// Largest batman packet the link carries; bigger unicasts are
    /// fragmented. `None`: never fragment.
    pub mtu: Option<usize>,
    /// The originator at the other end ([`Mesh::hardif_set_owner`]).
    pub owner: Option<MacAddr>,
}

impl Mesh {
    /// Adds (or re-adds) a hard interface. Give each hardif its own MAC (as
    /// kernel gretaps have), or the originator MAC: a MAC other than the
    /// originator shared by two hardifs would make two secondary-OGM streams
    /// with the same orig.
    pub fn hardif_add(&mut self, id: HardifId, mac: MacAddr) {
        // A hardif's own OGM stream restarts like ours (`seqno_start`).
        let seqno = match self.cfg.start_unix_ms {
            Some(_) => self.ogm_seqno,
            None => self.random() as u32,
        };
        self.hardif_del(id);
        *self.own_macs.entry(mac).or_insert(0) += 1;
        self.hardifs.insert(
            id,
            Hardif {
                mac,
                seqno,
                neighs: Vec::new(),
                mtu: None,
                owner: None,
            },
        );
        // A new link gets OGMs right away rather than up to an interval later.
        self.next_ogm = None;
    }

    /// Largest batman packet (Ethernet payload) `id` can carry, e.g. 1382
    /// where a kernel peer has gretap-over-wg0 defaults. Our unicasts larger
    /// than this leave as UNICAST_FRAG fragments, as a kernel would send them.
    pub fn hardif_set_mtu(&mut self, id: HardifId, mtu: usize) {
        if let Some(h) = self.hardifs.get_mut(&id) {
            h.mtu = Some(mtu);
        }
    }

    /// The originator at the other end of `id` (a configured peer whose
    /// originator address follows from its key). A forged or relayed OGM
    /// for it that arrives over another link cannot take its route while
    /// this link carries its OGMs.
    pub fn hardif_set_owner(&mut self, id: HardifId, orig: MacAddr) {
        if let Some(h) = self.hardifs.get_mut(&id) {
            h.owner = Some(orig);
            self.owners.retain(|_, h| *h != id);
            self.owners.insert(orig, id);
        }
    }

    /// `id` carries packets of any size again (fragmentation off on it).
    pub fn hardif_clear_mtu(&mut self, id: HardifId) {
        if let Some(h) = self.hardifs.get_mut(&id) {
            h.mtu = None;
        }
    }

    /// Drops neighbours learned on it.
    pub fn hardif_del(&mut self, id: HardifId) {
        let _ = self.ogm_fwd.take(id);
        self.scope_forget(id);
        self.owners.retain(|_, h| *h != id);
        let Some(h) = self.hardifs.remove(&id) else {
            return;
        };
        if let Some(n) = self.own_macs.get_mut(&h.mac) {
            *n -= 1;
            if *n == 0 {
                self.own_macs.remove(&h.mac);
            }
        }
        self.origs.hardif_removed(id);
    }
}
