//! Inner IP reassembly on receive: the pieces `fragment.rs` (or a kernel
//! gretap over wg0) cut a large gretap packet into come back together here,
//! one table per peer, so they can only ever be combined with pieces the
//! same authenticated peer sent for the same link.
//!
//! Bounds (an authenticated but hostile or broken peer cannot grow memory
//! or make us hold stale state):
//! - at most REASM_MAX_DATAGRAMS datagrams in progress per peer (a new one
//!   evicts the oldest);
//! - at most REASM_MAX_BYTES of buffers held per peer (the oldest others
//!   are evicted to make room), each datagram at most REASM_MAX_LEN bytes
//!   of IP payload (a piece reaching past it is dropped with its datagram);
//! - REASM_TIMEOUT after its first piece an unfinished datagram is dropped
//!   (checked on every piece and every tick);
//! - plus one finished payload kept for the caller (`completed`).
//!
//! Policy for odd pieces (RFC 5722 for IPv6; stricter than Linux IPv4):
//! a piece whose data lies entirely where data already arrived is a
//! duplicate and ignored; a partial overlap drops the whole datagram; a
//! non-final piece whose length is not a multiple of 8, or pieces that
//! disagree about the end, drop it too. Every case has a counter.

use std::time::{Duration, Instant};

use super::counters::TunnelCounters;
use super::gretap::Fragment;
use super::socket::RX_DATAGRAM_MAX;

/// Datagrams in reassembly per peer.
pub const REASM_MAX_DATAGRAMS: usize = 32;
/// Bytes of reassembly buffers per peer.
pub const REASM_MAX_BYTES: usize = 128 * 1024;
/// Largest reassembled IP payload: nothing a meshwire peer sends is larger
/// (MAX_FRAME_LEN), and a kernel gretap's frames are far smaller.
pub const REASM_MAX_LEN: usize = RX_DATAGRAM_MAX;
/// Pieces of one datagram leave a sender back to back; anything still
/// missing after this long is lost.
pub const REASM_TIMEOUT: Duration = Duration::from_secs(2);

const BLOCK: usize = 8;
const WORDS: usize = (REASM_MAX_LEN / BLOCK).div_ceil(64);

/// One datagram being put together.
struct Entry {
    ident: u32,
    started: Instant,
    /// The IP payload so far (as long as the furthest piece reaches).
    data: Vec<u8>,
    /// Which 8-byte blocks of `data` arrived.
    have: [u64; WORDS],
    /// Data bytes received (no overlaps are accepted, so this reaching
    /// `total` means complete).
    received: usize,
    /// Known once the last piece (MF clear) arrived.
    total: Option<usize>,
}

/// What one piece did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Held; the datagram is not complete yet (or the piece was a
    /// duplicate).
    Pending,
    /// The datagram is complete: `completed()` is its IP payload.
    Complete,
    /// The piece (and maybe its datagram) was dropped and counted.
    Dropped,
}

/// One peer's datagrams in reassembly.
#[derive(Default)]
pub struct Reassembly {
    entries: Vec<Entry>,
    /// Sum of the entries' buffer capacities.
    held: usize,
    /// The last completed payload.
    done: Vec<u8>,
}

/// Bits `first..last` of the block map: (any set, all set).
fn blocks_seen(have: &[u64; WORDS], first: usize, last: usize) -> (bool, bool) {
    let (mut any, mut all) = (false, true);
    for b in first..last {
        let set = have.get(b / 64).is_some_and(|w| w & (1 << (b % 64)) != 0);
        any |= set;
        all &= set;
    }
    (any, all)
}

fn mark_blocks(have: &mut [u64; WORDS], first: usize, last: usize) {
    for b in first..last {
        if let Some(w) = have.get_mut(b / 64) {
            *w |= 1 << (b % 64);
        }
    }
}

impl Reassembly {
    /// Datagrams in progress.
    pub fn in_progress(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of buffers held by datagrams in progress.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// The IP payload (GRE header onwards) of the datagram the last
    /// `Verdict::Complete` finished.
    pub fn completed(&self) -> &[u8] {
        &self.done
    }

    /// Takes one piece; `now` is when it arrived.
    pub fn input(&mut self, f: Fragment<'_>, now: Instant, c: &mut TunnelCounters) -> Verdict {
        c.rx_inner_fragments += 1;
        self.expire(now, c);
        let end = f.offset.saturating_add(f.data.len());
        if end > REASM_MAX_LEN {
            c.reasm_oversize += 1;
            self.drop_ident(f.ident);
            return Verdict::Dropped;
        }
        if f.more && (f.data.is_empty() || f.data.len() % BLOCK != 0) {
            c.reasm_malformed += 1;
            self.drop_ident(f.ident);
            return Verdict::Dropped;
        }
        let i = match self.entries.iter().position(|e| e.ident == f.ident) {
            Some(i) => i,
            None => self.create(f.ident, now, c),
        };
        self.place(i, &f, end, c)
    }

    /// Drops every datagram older than REASM_TIMEOUT.
    pub fn expire(&mut self, now: Instant, c: &mut TunnelCounters) {
        let before = self.entries.len();
        let mut freed = 0;
        self.entries.retain(|e| {
            let keep = now.saturating_duration_since(e.started) < REASM_TIMEOUT;
            if !keep {
                freed += e.data.capacity();
            }
            keep
        });
        self.held = self.held.saturating_sub(freed);
        c.reasm_timeouts += (before - self.entries.len()) as u64;
    }

    /// A new, empty datagram (evicting the oldest if the table is full).
    fn create(&mut self, ident: u32, now: Instant, c: &mut TunnelCounters) -> usize {
        while self.entries.len() >= REASM_MAX_DATAGRAMS {
            self.evict_oldest(None, c);
        }
        self.entries.push(Entry {
            ident,
            started: now,
            data: Vec::new(),
            have: [0; WORDS],
            received: 0,
            total: None,
        });
        self.entries.len() - 1
    }

    /// Puts the piece into datagram `i`: checks, room, copy; a complete
    /// datagram leaves the table for `done`.
    fn place(&mut self, i: usize, f: &Fragment<'_>, end: usize, c: &mut TunnelCounters) -> Verdict {
        let Some(e) = self.entries.get(i) else {
            return Verdict::Dropped;
        };
        let consistent = match (e.total, f.more) {
            // A second last piece must agree; nothing may lie past the end.
            (Some(t), false) => t == end,
            (None, false) => e.data.len() <= end,
            (Some(t), true) => end <= t,
            (None, true) => true,
        };
        if !consistent {
            c.reasm_malformed += 1;
            self.remove(i);
            return Verdict::Dropped;
        }
        let (first, last) = (f.offset / BLOCK, end.div_ceil(BLOCK));
        let (any, all) = blocks_seen(&e.have, first, last);
        if all && first < last {
            // Already here (a retransmission or a duplicated datagram): the
            // data we hold wins.
            c.reasm_duplicates += 1;
            return Verdict::Pending;
        }
        if any {
            c.reasm_overlaps += 1;
            self.remove(i);
            return Verdict::Dropped;
        }
        let ident = e.ident;
        let grow = end.saturating_sub(e.data.len());
        if !self.make_room(ident, grow, c) {
            return Verdict::Dropped;
        }
        let Some(i) = self.entries.iter().position(|e| e.ident == ident) else {
            return Verdict::Dropped;
        };
        let Some(e) = self.entries.get_mut(i) else {
            return Verdict::Dropped;
        };
        if e.data.len() < end {
            let cap = e.data.capacity();
            e.data.reserve_exact(end - e.data.len());
            e.data.resize(end, 0);
            self.held += e.data.capacity() - cap;
        }
        let Some(dst) = e.data.get_mut(f.offset..end) else {
            return Verdict::Dropped;
        };
        dst.copy_from_slice(f.data);
        mark_blocks(&mut e.have, first, last);
        e.received += f.data.len();
        if !f.more {
            e.total = Some(end);
        }
        if e.total != Some(e.received) {
            return Verdict::Pending;
        }
        // `i` is this datagram's index after make_room's evictions.
        if i < self.entries.len() {
            let e = self.entries.swap_remove(i);
            self.held = self.held.saturating_sub(e.data.capacity());
            self.done = e.data;
        }
        c.rx_reassembled += 1;
        Verdict::Complete
    }

    /// Evicts the oldest other datagrams until `grow` more bytes fit.
    fn make_room(&mut self, keep: u32, grow: usize, c: &mut TunnelCounters) -> bool {
        while self.held + grow > REASM_MAX_BYTES {
            if !self.evict_oldest(Some(keep), c) {
                return false;
            }
        }
        true
    }

    /// Evicts the oldest datagram (other than `keep`); false if none.
    fn evict_oldest(&mut self, keep: Option<u32>, c: &mut TunnelCounters) -> bool {
        let oldest = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| Some(e.ident) != keep)
            .min_by_key(|(_, e)| e.started)
            .map(|(i, _)| i);
        match oldest {
            Some(i) => {
                self.remove(i);
                c.reasm_evicted += 1;
                true
            }
            None => false,
        }
    }

    fn drop_ident(&mut self, ident: u32) {
        if let Some(i) = self.entries.iter().position(|e| e.ident == ident) {
            self.remove(i);
        }
    }

    fn remove(&mut self, i: usize) {
        if i < self.entries.len() {
            let e = self.entries.swap_remove(i);
            self.held = self.held.saturating_sub(e.data.capacity());
        }
    }
}
