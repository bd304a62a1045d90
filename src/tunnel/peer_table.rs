//! The peer table: stable identities for peers that come and go while the
//! workers run.
//!
//! A [`PeerId`] is a slot and a generation: `slot | generation << 16`,
//! inside the 24 bits that name a peer in our receiver indices
//! (`noise.rs`), so the reuseport steering (`steer.rs`) and every table
//! keyed by peer carry it as is. The peers of the config file take slots
//! 0.. in generation 0, so peer i is id i. A slot freed and taken again
//! gets the next generation: datagrams with the old receiver index, frames
//! queued for the old peer and references in other tables all name an id
//! that no longer resolves, and are refused, never delivered to the new
//! peer. A freed slot is taken again before a fresh one (the table stays
//! dense, the config's ids stay small), so a slot's generation comes
//! round again only after 256 peers have held it; by then a session of
//! the peer 256 generations ago is long past WireGuard's 180 s reject
//! time, and a datagram of it that still arrived would fail the new
//! peer's authentication (other keys), so it is dropped either way.
//!
//! Each slot has its own lock (a boringtun `Tunn` takes `&mut self` per
//! message); there is no lock over the table on the data path. Adding and
//! removing take the slot's lock and the short list of occupied slots.

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, TryLockError};

use super::peer::Peer;
use super::PeerId;

/// Slots in the table: the most peers one node has at once.
pub const MAX_PEER_SLOTS: usize = 4096;

/// The id of `slot` in `generation`.
pub const fn make_id(slot: u16, generation: u8) -> PeerId {
    (generation as u32) << 16 | slot as u32
}

pub const fn slot_of(id: PeerId) -> usize {
    (id & 0xffff) as usize
}

pub const fn generation_of(id: PeerId) -> u8 {
    (id >> 16) as u8
}

#[derive(Default)]
pub(super) struct Slot {
    generation: u8,
    /// Ever used: the next peer in it takes the next generation.
    used: bool,
    peer: Option<Box<Peer>>,
}

/// A locked peer (its slot's lock).
pub(super) struct PeerGuard<'a>(MutexGuard<'a, Slot>);

impl Deref for PeerGuard<'_> {
    type Target = Peer;
    fn deref(&self) -> &Peer {
        match self.0.peer.as_deref() {
            Some(p) => p,
            // A guard is only made for an occupied slot, under its lock.
            None => unreachable!("peer guard over an empty slot"),
        }
    }
}

impl DerefMut for PeerGuard<'_> {
    fn deref_mut(&mut self) -> &mut Peer {
        match self.0.peer.as_deref_mut() {
            Some(p) => p,
            None => unreachable!("peer guard over an empty slot"),
        }
    }
}

pub(super) struct PeerTable {
    slots: Vec<Mutex<Slot>>,
    /// The ids in use, in slot order (timers and reports walk these).
    occupied: RwLock<Vec<PeerId>>,
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    // A poisoned lock means a thread panicked holding it, and a panicking
    // dataplane thread ends the process.
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PeerTable {
    pub(super) fn new(slots: usize) -> PeerTable {
        PeerTable {
            slots: (0..slots.min(MAX_PEER_SLOTS))
                .map(|_| Mutex::default())
                .collect(),
            occupied: RwLock::new(Vec::new()),
        }
    }

    pub(super) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Whether `id` could name a slot of this table (its generation is
    /// checked when it is locked).
    pub(super) fn in_range(&self, id: PeerId) -> bool {
        slot_of(id) < self.slots.len()
    }

    /// The peer `id` names, locked; None when the slot is empty or holds
    /// another generation.
    pub(super) fn lock(&self, id: PeerId) -> Option<PeerGuard<'_>> {
        let s = lock(self.slots.get(slot_of(id))?);
        (s.peer.is_some() && s.generation == generation_of(id)).then_some(PeerGuard(s))
    }

    /// `lock` without waiting: Err(()) when another thread holds the
    /// slot (the caller flushes what it holds before it waits, see
    /// `TunnelCore::send_frames`), Ok(None) when `id` names no peer.
    pub(super) fn try_lock(&self, id: PeerId) -> Result<Option<PeerGuard<'_>>, ()> {
        let Some(slot) = self.slots.get(slot_of(id)) else {
            return Ok(None);
        };
        let s = match slot.try_lock() {
            Ok(s) => s,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(()),
        };
        Ok((s.peer.is_some() && s.generation == generation_of(id)).then_some(PeerGuard(s)))
    }

    /// Puts a peer in the first free slot; `make` gets its id (for the
    /// receiver index). None when the table is full.
    pub(super) fn insert(&self, make: impl FnOnce(PeerId) -> Peer) -> Option<PeerId> {
        let mut occupied = self
            .occupied
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // The first gap in the sorted list of occupied slots: only the
        // free slot's lock is taken, never one a worker holds.
        let free = occupied
            .iter()
            .enumerate()
            .find(|&(i, &o)| slot_of(o) != i)
            .map_or(occupied.len(), |(i, _)| i);
        let slot = self.slots.get(free)?;
        let mut s = lock(slot);
        if s.used {
            s.generation = s.generation.wrapping_add(1);
        }
        s.used = true;
        let id = make_id(free as u16, s.generation);
        s.peer = Some(Box::new(make(id)));
        occupied.insert(free, id);
        Some(id)
    }

    /// Empties `id`'s slot and hands its peer back (to be dropped outside
    /// the locks); None when `id` names no peer.
    pub(super) fn remove(&self, id: PeerId) -> Option<Box<Peer>> {
        let mut occupied = self
            .occupied
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut s = lock(self.slots.get(slot_of(id))?);
        if s.generation != generation_of(id) {
            return None;
        }
        let peer = s.peer.take()?;
        occupied.retain(|&o| o != id);
        Some(peer)
    }

    /// The ids in use, in slot order.
    pub(super) fn ids(&self) -> Vec<PeerId> {
        self.occupied
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn len(&self) -> usize {
        self.occupied
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_pack_slot_and_generation_in_24_bits() {
        assert_eq!(make_id(7, 0), 7);
        let id = make_id(0xfffe, 0xab);
        assert_eq!((slot_of(id), generation_of(id)), (0xfffe, 0xab));
        assert!(id < 1 << 24);
    }
}
