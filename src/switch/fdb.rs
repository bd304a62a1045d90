//! The forwarding database: (MAC, vid) -> where that client lives.
//!
//! Keys are batman-adv's: vid 0 is untagged, `0x8000 | id` an 802.1Q VLAN,
//! so an entry maps 1:1 to a translation-table entry.
//!
//! MACs are attacker-controlled (any VM picks its source address), so the
//! table is a std `HashMap` with `RandomState`: SipHash keyed with a random
//! per-process seed, no predictable collisions. It is bounded three times: a
//! total number of entries, a number of MACs per local port and a number of
//! MACs per remote originator, so neither a VM nor a node spraying random
//! source addresses can grow memory or push out the rest of the segment.
//!
//! A full table makes room by evicting a remote entry in O(1) (amortised):
//! remote keys queue in the order they were learned, the front one goes
//! unless it was heard again since it was queued (then it gets a second
//! chance at the back, CLOCK style, a few times at most per eviction). Entries that moved or went leave
//! stale records in the queue, which are skipped when met and compacted
//! away when they outnumber the live ones. Nothing on the frame path
//! scans the table.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::PortId;
use crate::wire::MacAddr;

pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
/// A bridge behind one TAP may carry many VMs, but not a whole segment.
pub const DEFAULT_MAX_PER_PORT: usize = 4096;
/// Like the Linux bridge's default ageing time.
pub const DEFAULT_LOCAL_AGEING: Duration = Duration::from_secs(300);
pub const DEFAULT_REMOTE_AGEING: Duration = Duration::from_secs(300);
/// Remote MACs one originator may hold here: a node with a big bridge
/// behind it fits, a node (or its VM) spraying random sources does not
/// fill the table.
pub const DEFAULT_MAX_PER_ORIGINATOR: usize = 8192;
/// Second chances one eviction gives at most (bounds its cost).
const MAX_SECOND_CHANCES: usize = 2;

/// Where a client lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Location {
    /// Behind one of our ports.
    Port(PortId),
    /// Behind another node of the mesh, named by its originator address.
    Originator(MacAddr),
}

impl Location {
    pub fn is_local(&self) -> bool {
        matches!(self, Location::Port(_))
    }
}

/// How the entry was learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The source address of a frame from a local port.
    Port,
    /// The source address of a mesh frame whose originator is known
    /// (batman broadcasts carry it).
    Mesh,
    /// An answer from the mesh's translation table (tt_global).
    TranslationTable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbEntry {
    pub location: Location,
    pub last_seen: Instant,
    pub learned: Source,
    /// When this client left one of our ports for the mesh (kept while it
    /// roams on from originator to originator). The old node of a migration
    /// forwards frames still addressed to it for a while after this.
    pub departed: Option<Instant>,
    /// For a local client: when this node last claimed it in the mesh (new,
    /// moved here, or re-announced), to damp re-announcement bursts.
    pub claimed: Option<Instant>,
    /// Which record of the eviction queue is this entry's.
    generation: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct FdbConfig {
    pub max_entries: usize,
    pub max_per_port: usize,
    pub max_per_originator: usize,
    pub local_ageing: Duration,
    pub remote_ageing: Duration,
}

impl Default for FdbConfig {
    fn default() -> Self {
        FdbConfig {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_per_port: DEFAULT_MAX_PER_PORT,
            max_per_originator: DEFAULT_MAX_PER_ORIGINATOR,
            local_ageing: DEFAULT_LOCAL_AGEING,
            remote_ageing: DEFAULT_REMOTE_AGEING,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FdbCounters {
    /// A new MAC was not learned: the table is full of local entries.
    pub refused_full: u64,
    /// A new MAC was not learned: its port already has `max_per_port`.
    pub refused_port_limit: u64,
    /// A remote MAC was not learned: its originator already has
    /// `max_per_originator` here.
    pub refused_originator_limit: u64,
    /// Remote entries evicted to make room.
    pub evicted_remote: u64,
    pub aged_local: u64,
    pub aged_remote: u64,
}

/// What a learn call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learn {
    /// The MAC was unknown (or aged out) and is now at the new location.
    New,
    /// The MAC moved here from `from`.
    Moved { from: Location },
    /// Same place as before; only the timestamp changed.
    Refreshed,
    /// Not learned (limits, or a fresh local entry beats a remote claim).
    Refused,
}

pub type FdbKey = (MacAddr, u16);

#[derive(Debug)]
pub struct Fdb {
    cfg: FdbConfig,
    map: HashMap<FdbKey, FdbEntry>,
    /// MACs per local port, for `max_per_port`.
    per_port: HashMap<PortId, usize>,
    /// MACs per remote originator, for `max_per_originator`.
    per_orig: HashMap<MacAddr, usize>,
    /// Remote keys in learning order, with the generation they were
    /// queued at (see the module comment).
    order: VecDeque<(FdbKey, u64, Instant)>,
    next_generation: u64,
    counters: FdbCounters,
}

impl Fdb {
    pub fn new(cfg: FdbConfig) -> Fdb {
        Fdb {
            cfg,
            map: HashMap::new(),
            per_port: HashMap::new(),
            per_orig: HashMap::new(),
            order: VecDeque::new(),
            next_generation: 0,
            counters: FdbCounters::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn counters(&self) -> &FdbCounters {
        &self.counters
    }

    fn ageing(&self, loc: &Location) -> Duration {
        if loc.is_local() {
            self.cfg.local_ageing
        } else {
            self.cfg.remote_ageing
        }
    }

    fn is_live(&self, e: &FdbEntry, now: Instant) -> bool {
        now.saturating_duration_since(e.last_seen) <= self.ageing(&e.location)
    }

    /// The live entry for a key; an aged entry not yet reaped reads as absent.
    pub fn lookup(&self, now: Instant, key: FdbKey) -> Option<&FdbEntry> {
        self.map.get(&key).filter(|e| self.is_live(e, now))
    }

    /// Learns `key` at `location`. `keep_local_for`: a remote claim does not
    /// replace a local entry seen within that long (None: always replace).
    pub fn learn(
        &mut self,
        now: Instant,
        key: FdbKey,
        location: Location,
        learned: Source,
        keep_local_for: Option<Duration>,
    ) -> Learn {
        let ageing = self.ageing(&location);
        let existing = match self.map.get_mut(&key) {
            // The per-frame case, one hash lookup: a live entry, same place.
            Some(e)
                if e.location == location
                    && now.saturating_duration_since(e.last_seen) <= ageing =>
            {
                e.last_seen = now;
                e.learned = learned;
                return Learn::Refreshed;
            }
            e => e.copied(),
        };
        let Some(old) = existing.filter(|e| self.is_live(e, now)) else {
            if let Some(old) = existing {
                // Aged but not yet reaped: it is gone as far as learning goes.
                self.remove(key, old.location);
            }
            return self.insert_new(now, key, location, learned);
        };
        if let (Location::Port(_), Some(keep), false) =
            (old.location, keep_local_for, location.is_local())
        {
            if now.saturating_duration_since(old.last_seen) <= keep {
                return Learn::Refused;
            }
        }
        if self.over_limit(location) {
            if !old.location.is_local() {
                // The mesh says it left where we had it: that much is true.
                self.remove(key, old.location);
            }
            return Learn::Refused;
        }
        let departed = match (old.location, location) {
            (Location::Port(_), Location::Originator(_)) => Some(now),
            (Location::Originator(_), Location::Originator(_)) => old.departed,
            (_, Location::Port(_)) => None,
        };
        self.remove(key, old.location);
        self.put(
            key,
            FdbEntry {
                location,
                last_seen: now,
                learned,
                departed,
                claimed: location.is_local().then_some(now),
                generation: 0,
            },
        );
        Learn::Moved { from: old.location }
    }

    fn insert_new(
        &mut self,
        now: Instant,
        key: FdbKey,
        location: Location,
        learned: Source,
    ) -> Learn {
        if self.over_limit(location) {
            return Learn::Refused;
        }
        if self.map.len() >= self.cfg.max_entries && !self.make_room(now) {
            self.counters.refused_full += 1;
            return Learn::Refused;
        }
        self.put(
            key,
            FdbEntry {
                location,
                last_seen: now,
                learned,
                departed: None,
                claimed: location.is_local().then_some(now),
                generation: 0,
            },
        );
        Learn::New
    }

    /// Whether `location` already holds its share (counted as refused).
    fn over_limit(&mut self, location: Location) -> bool {
        match location {
            Location::Port(p) if self.port_count(p) >= self.cfg.max_per_port => {
                self.counters.refused_port_limit += 1;
                true
            }
            Location::Originator(o)
                if self.per_orig.get(&o).copied().unwrap_or(0) >= self.cfg.max_per_originator =>
            {
                self.counters.refused_originator_limit += 1;
                true
            }
            _ => false,
        }
    }

    /// Frees one slot by evicting a remote entry: the first in learning
    /// order that is aged or was not heard since it was queued (after at
    /// most `MAX_SECOND_CHANCES` others went to the back). Local entries
    /// are never evicted: they are the clients we announce (aged ones wait
    /// for `expire`, which withdraws them from the TT).
    fn make_room(&mut self, now: Instant) -> bool {
        let mut chances = MAX_SECOND_CHANCES;
        while let Some((key, generation, queued)) = self.order.pop_front() {
            let Some(e) = self.map.get(&key).copied() else {
                continue;
            };
            if e.generation != generation || e.location.is_local() {
                continue;
            }
            let live = self.is_live(&e, now);
            if live && chances > 0 && e.last_seen > queued {
                chances -= 1;
                self.enqueue(key, now);
                continue;
            }
            if live {
                self.counters.evicted_remote += 1;
            } else {
                self.counters.aged_remote += 1;
            }
            self.remove(key, e.location);
            return true;
        }
        false
    }

    /// Queues a remote key at the back of the eviction order.
    fn enqueue(&mut self, key: FdbKey, now: Instant) {
        let g = self.next_generation;
        self.next_generation += 1;
        if let Some(e) = self.map.get_mut(&key) {
            e.generation = g;
        }
        self.order.push_back((key, g, now));
        // Stale records (moved, forgotten, re-queued) outnumber live ones:
        // drop them all at once, amortised O(1) per record.
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(k, g, _)| map.get(k).is_some_and(|e| e.generation == *g));
        }
    }

    fn port_count(&self, p: PortId) -> usize {
        self.per_port.get(&p).copied().unwrap_or(0)
    }

    fn put(&mut self, key: FdbKey, e: FdbEntry) {
        self.map.insert(key, e);
        match e.location {
            Location::Port(p) => *self.per_port.entry(p).or_insert(0) += 1,
            Location::Originator(o) => {
                *self.per_orig.entry(o).or_insert(0) += 1;
                self.enqueue(key, e.last_seen);
            }
        }
    }

    fn remove(&mut self, key: FdbKey, loc: Location) {
        self.map.remove(&key);
        match loc {
            Location::Port(p) => decrement(&mut self.per_port, p),
            Location::Originator(o) => decrement(&mut self.per_orig, o),
        }
    }

    /// Remote MACs held for `orig`.
    pub fn originator_count(&self, orig: MacAddr) -> usize {
        self.per_orig.get(&orig).copied().unwrap_or(0)
    }

    /// A local client re-announced itself: true (and the claim time
    /// updated) when its last claim is at least `min_interval` old.
    pub fn reclaim(&mut self, now: Instant, key: FdbKey, min_interval: Duration) -> bool {
        let Some(e) = self.map.get_mut(&key) else {
            return false;
        };
        if !e.location.is_local()
            || e.claimed
                .is_some_and(|c| now.saturating_duration_since(c) < min_interval)
        {
            return false;
        }
        e.claimed = Some(now);
        true
    }

    /// Forgets one key (e.g. the TT withdrew it); returns what it was.
    pub fn forget(&mut self, key: FdbKey) -> Option<FdbEntry> {
        let e = self.map.get(&key).copied()?;
        self.remove(key, e.location);
        Some(e)
    }

    /// Forgets every MAC behind `port`, returning their keys.
    pub fn remove_port(&mut self, port: PortId) -> Vec<FdbKey> {
        let keys: Vec<FdbKey> = self
            .map
            .iter()
            .filter(|(_, e)| e.location == Location::Port(port))
            .map(|(k, _)| *k)
            .collect();
        for k in &keys {
            self.remove(*k, Location::Port(port));
        }
        keys
    }

    /// Reaps aged entries; returns the local ones (to withdraw from TT).
    pub fn expire(&mut self, now: Instant) -> Vec<FdbKey> {
        let aged: Vec<(FdbKey, Location)> = self
            .map
            .iter()
            .filter(|(_, e)| !self.is_live(e, now))
            .map(|(k, e)| (*k, e.location))
            .collect();
        let mut local = Vec::new();
        for (k, loc) in aged {
            self.remove(k, loc);
            if loc.is_local() {
                self.counters.aged_local += 1;
                local.push(k);
            } else {
                self.counters.aged_remote += 1;
            }
        }
        local
    }

    pub fn iter(&self) -> impl Iterator<Item = (&FdbKey, &FdbEntry)> {
        self.map.iter()
    }
}

fn decrement<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, k: K) {
    if let Some(n) = counts.get_mut(&k) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(&k);
        }
    }
}
