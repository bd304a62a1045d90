//! One record per peer link: the mesh's hard interface towards that peer.
//!
//! A kernel node has one gretap per peer and batman-adv sees each as a hard
//! interface with its own MAC; meshwire does the same without netdevs. The
//! record holds what the bridge needs to frame a batman packet for the
//! peer's tunnel (our MAC on that link), the link's MTU for batman
//! fragmentation, and whether WireGuard sees the peer alive.
//!
//! Peers come and go at runtime, so the hard interface id is not the
//! peer's position in the config: each link gets a slot in a slab (its
//! `HardifId`), freed when the peer goes. The mesh forgets a hard
//! interface when it is removed, so a slot may be reused.

use std::collections::HashMap;
use std::time::Instant;

use tracing::{info, warn};

use super::{Bridge, Egress};
use crate::mesh::HardifId;
use crate::tunnel::PeerId;
use crate::wire::ethernet::{self, Frame};
use crate::wire::MacAddr;

/// One peer link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub peer: PeerId,
    /// Our hard interface MAC towards this peer (the Ethernet source of
    /// every batman packet we send it; kernel neighbours measure link
    /// quality per source MAC).
    pub mac: MacAddr,
    /// Largest batman packet the link carries (None: never fragment).
    pub mtu: Option<usize>,
    /// Whether WireGuard sees the peer alive; a link that is down keeps
    /// sending OGMs so it comes back as soon as the peer answers.
    pub up: bool,
    /// A name for logs (the peer's inner address).
    pub name: String,
    /// The peer's own hard interface MAC on this link: every batman packet
    /// from the peer must carry it as Ethernet source. Learned from the
    /// first batman packet after the link came up (a kernel peer's gretap
    /// MAC is its own choice), forgotten when the link goes down.
    pub remote: Option<MacAddr>,
    /// The peer's originator address, when its key tells it (meshwire
    /// peers): its route stays on this link while the link carries its OGMs.
    pub owner: Option<MacAddr>,
}

/// What changed on a link, for logs and `ctl event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    Up,
    Down,
}

#[derive(Debug, Default)]
pub(super) struct Links {
    slots: Vec<Option<Link>>,
    by_peer: HashMap<PeerId, HardifId>,
}

impl Links {
    fn hardif(&self, peer: PeerId) -> Option<HardifId> {
        self.by_peer.get(&peer).copied()
    }

    fn get(&self, hardif: HardifId) -> Option<&Link> {
        self.slots.get(hardif as usize)?.as_ref()
    }

    fn get_mut(&mut self, hardif: HardifId) -> Option<&mut Link> {
        self.slots.get_mut(hardif as usize)?.as_mut()
    }

    /// The peer and our MAC for a packet the mesh sends on `hardif`.
    pub(super) fn sender(&self, hardif: HardifId) -> Option<(PeerId, MacAddr)> {
        self.get(hardif).map(|l| (l.peer, l.mac))
    }

    fn insert(&mut self, link: Link) -> HardifId {
        let peer = link.peer;
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(i) => {
                self.slots[i] = Some(link);
                i
            }
            None => {
                self.slots.push(Some(link));
                self.slots.len() - 1
            }
        };
        let id = slot as HardifId;
        self.by_peer.insert(peer, id);
        id
    }

    fn remove(&mut self, peer: PeerId) -> Option<(HardifId, Link)> {
        let id = self.by_peer.remove(&peer)?;
        let link = self.slots.get_mut(id as usize)?.take()?;
        Some((id, link))
    }

    fn iter(&self) -> impl Iterator<Item = (HardifId, &Link)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.as_ref().map(|l| (i as HardifId, l)))
    }
}

impl Bridge {
    /// The Ethernet source of a batman packet must be the peer's own hard
    /// interface MAC on its link: a WireGuard peer is authenticated, the
    /// batman addresses inside are not, and one peer must not speak with
    /// several MACs (or another node's). The first one pins it.
    fn remote_source_ok(&mut self, hardif: HardifId, src: MacAddr) -> bool {
        if !src.is_unicast() || src.is_zero() || self.mesh.is_own_address(src) {
            return false;
        }
        let Some(link) = self.links.get_mut(hardif) else {
            return false;
        };
        match link.remote {
            Some(m) => m == src,
            None => {
                info!(peer = %link.name, mac = %src, "peer's hard interface MAC pinned");
                link.remote = Some(src);
                true
            }
        }
    }
}

/// Joins the Ethernet header of a batman packet for `peer` and hands it out.
pub(super) fn send(
    io: &mut impl Egress,
    peer: PeerId,
    dst: MacAddr,
    src: MacAddr,
    packet: [&[u8]; 2],
) {
    let ethertype = ethernet::ethertype::BATMAN.to_be_bytes();
    io.to_peer(
        peer,
        &[
            dst.as_bytes(),
            src.as_bytes(),
            &ethertype,
            packet[0],
            packet[1],
        ],
    );
}

impl Bridge {
    /// A peer's link joins the mesh (down until WireGuard sees the peer).
    /// Replaces the link if the peer had one.
    pub fn add_link(&mut self, peer: PeerId, mac: MacAddr, mtu: Option<usize>, name: &str) {
        self.remove_link(peer);
        let hardif = self.links.insert(Link {
            peer,
            mac,
            mtu,
            up: false,
            name: name.to_owned(),
            remote: None,
            owner: None,
        });
        self.fresh_hardif(hardif, mac, mtu);
    }

    /// Names the originator at the other end of a peer's link (see
    /// [`Link::owner`]).
    pub fn set_link_owner(&mut self, peer: PeerId, orig: MacAddr) {
        let Some(hardif) = self.links.hardif(peer) else {
            return;
        };
        if let Some(l) = self.links.get_mut(hardif) {
            l.owner = Some(orig);
        }
        self.mesh.hardif_set_owner(hardif, orig);
    }

    /// A peer's link leaves the mesh: its neighbours and routes through it
    /// go now, not after TQ has decayed.
    pub fn remove_link(&mut self, peer: PeerId) -> Option<Link> {
        let (hardif, link) = self.links.remove(peer)?;
        self.mesh.hardif_del(hardif);
        Some(link)
    }

    /// Changes a link's MTU for batman fragmentation.
    pub fn set_link_mtu(&mut self, peer: PeerId, mtu: Option<usize>) {
        let Some(hardif) = self.links.hardif(peer) else {
            return;
        };
        if let Some(l) = self.links.get_mut(hardif) {
            l.mtu = mtu;
        }
        // Neighbours and routes stay: only the size of what is sent changes.
        match mtu {
            Some(m) => self.mesh.hardif_set_mtu(hardif, m),
            None => self.mesh.hardif_clear_mtu(hardif),
        }
    }

    /// WireGuard's view of a link. A peer that stopped authenticating
    /// packets, or whose handshakes keep failing, is dead: its neighbours
    /// leave the mesh at once so routes move to the next best path now,
    /// not after TQ has decayed over many OGM intervals. OGMs keep going
    /// out on the link, so it returns as soon as the peer answers.
    pub fn set_link_alive(&mut self, peer: PeerId, alive: bool) -> Option<LinkEvent> {
        let hardif = self.links.hardif(peer)?;
        let link = self.links.get_mut(hardif)?;
        let was = std::mem::replace(&mut link.up, alive);
        match (was, alive) {
            (true, false) => {
                warn!(peer = %link.name, "peer unreachable: link leaves the mesh");
                let (mac, mtu) = (link.mac, link.mtu);
                // A restarted kernel peer may come back with another MAC.
                link.remote = None;
                self.counters.links_lost += 1;
                let peer = link.name.clone();
                self.fresh_hardif(hardif, mac, mtu);
                self.event(super::events::EventKind::PeerDown { peer });
                Some(LinkEvent::Down)
            }
            (false, true) => {
                info!(peer = %link.name, "peer reachable");
                let peer = link.name.clone();
                self.event(super::events::EventKind::PeerUp { peer });
                Some(LinkEvent::Up)
            }
            _ => None,
        }
    }

    /// The link record of `peer`.
    pub fn link(&self, peer: PeerId) -> Option<&Link> {
        self.links.get(self.links.hardif(peer)?)
    }

    /// The link a hard interface id names (for tables: originators' next
    /// hops are given by hard interface).
    pub fn link_by_hardif(&self, hardif: HardifId) -> Option<&Link> {
        self.links.get(hardif)
    }

    pub fn links(&self) -> impl Iterator<Item = &Link> {
        self.links.iter().map(|(_, l)| l)
    }

    /// (Re)adds a hard interface with no neighbours: a fresh link.
    fn fresh_hardif(&mut self, hardif: HardifId, mac: MacAddr, mtu: Option<usize>) {
        self.mesh.hardif_add(hardif, mac);
        if let Some(m) = mtu {
            self.mesh.hardif_set_mtu(hardif, m);
        }
        if let Some(o) = self.links.get(hardif).and_then(|l| l.owner) {
            self.mesh.hardif_set_owner(hardif, o);
        }
    }

    /// A frame out of a tunnel: a batman packet for our hard interface on
    /// that link goes to the mesh; anything else is counted and dropped.
    pub(super) fn mesh_frame(&mut self, now: Instant, peer: PeerId, frame: &[u8]) {
        let Some(hardif) = self.links.hardif(peer) else {
            self.counters.tunnel_unknown_link += 1;
            return;
        };
        let Ok(eth) = Frame::new_checked(frame) else {
            self.counters.tunnel_runt += 1;
            return;
        };
        if eth.ethertype() != ethernet::ethertype::BATMAN {
            self.counters.tunnel_not_batman += 1;
            return;
        }
        let (src, dst) = (eth.src_addr(), eth.dst_addr());
        let own = self.links.get(hardif).map(|l| l.mac);
        if dst.is_unicast() && Some(dst) != own && !self.mesh.is_own_address(dst) {
            self.counters.tunnel_not_for_us += 1;
            return;
        }
        if !self.remote_source_ok(hardif, src) {
            self.counters.tunnel_wrong_source += 1;
            return;
        }
        self.mesh
            .receive(now, hardif, src, dst, eth.payload(), &mut self.out);
    }
}
