//! What happened, for `meshwire ctl event` (like `batctl event`): VM moves,
//! peers going down and up, and changed routes to originators, each with a
//! sequence number, kept in a bounded ring. The client asks for what came
//! after the last number it saw, so any number of clients can follow
//! without the daemon holding a connection open for them; one that falls
//! more than the ring behind is told how many it missed.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::Bridge;
use crate::wire::MacAddr;

/// Events kept (a client polls a few times a second).
const KEPT: usize = 4096;
/// How often routes are compared with the last look.
const ROUTE_CHECK: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// A MAC changed place.
    Move {
        mac: MacAddr,
        vlan: u16,
        from: String,
        to: String,
    },
    PeerDown {
        peer: String,
    },
    PeerUp {
        peer: String,
    },
    /// The next hop towards an originator changed (None: no route).
    Route {
        originator: MacAddr,
        from: Option<MacAddr>,
        to: Option<MacAddr>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub seq: u64,
    /// Wall clock, milliseconds since the epoch.
    pub time_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Default)]
pub(super) struct EventLog {
    ring: VecDeque<Event>,
    next_seq: u64,
    routes: HashMap<MacAddr, MacAddr>,
    next_route_check: Option<Instant>,
}

impl EventLog {
    /// The events numbered after `since` (None: none, only where the log
    /// stands now).
    pub fn since(&self, since: Option<u64>) -> EventsSince {
        let log = self;
        let last = log.next_seq;
        let Some(since) = since else {
            return EventsSince {
                last,
                missed: 0,
                events: Vec::new(),
            };
        };
        let first_kept = log.ring.front().map_or(last + 1, |e| e.seq);
        EventsSince {
            last,
            missed: first_kept.saturating_sub(since + 1),
            events: log.ring.iter().filter(|e| e.seq > since).cloned().collect(),
        }
    }

    pub fn push(&mut self, kind: EventKind) {
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if self.ring.len() >= KEPT {
            self.ring.pop_front();
        }
        self.next_seq += 1;
        self.ring.push_back(Event {
            seq: self.next_seq,
            time_ms,
            kind,
        });
    }
}

/// Events after `since` (and how many of them the ring no longer has).
#[derive(Debug, Serialize)]
pub struct EventsSince {
    /// The number of the newest event: the next `since`.
    pub last: u64,
    pub missed: u64,
    pub events: Vec<Event>,
}

impl Bridge {
    /// The events numbered after `since` (None: none, only where the log
    /// stands now, for a client that starts following).
    pub fn events_since(&self, since: Option<u64>) -> EventsSince {
        self.events.since(since)
    }

    pub(super) fn event(&mut self, kind: EventKind) {
        self.events.push(kind);
    }

    /// Routes compared with the last look, at most every [`ROUTE_CHECK`].
    pub(super) fn check_routes(&mut self, now: Instant) {
        if self.events.next_route_check.is_some_and(|t| now < t) {
            return;
        }
        self.events.next_route_check = Some(now + ROUTE_CHECK);
        let routes: HashMap<MacAddr, MacAddr> = (self.mesh.originators().into_iter())
            .filter_map(|o| Some((o.orig, o.next_hop?)))
            .collect();
        let mut changed: Vec<EventKind> = Vec::new();
        for (orig, to) in &routes {
            let from = self.events.routes.get(orig).copied();
            if from != Some(*to) {
                changed.push(EventKind::Route {
                    originator: *orig,
                    from,
                    to: Some(*to),
                });
            }
        }
        for (orig, from) in &self.events.routes {
            if !routes.contains_key(orig) {
                changed.push(EventKind::Route {
                    originator: *orig,
                    from: Some(*from),
                    to: None,
                });
            }
        }
        changed.sort_by_key(|e| match e {
            EventKind::Route { originator, .. } => *originator,
            _ => MacAddr::ZERO,
        });
        self.events.routes = routes;
        for e in changed {
            self.event(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_that_fell_behind_is_told_how_many_it_missed() {
        let mut log = EventLog::default();
        let now = log.since(None);
        assert_eq!((now.last, now.events.len()), (0, 0));
        for i in 0..(KEPT + 4) {
            log.push(EventKind::PeerUp {
                peer: format!("p{i}"),
            });
        }
        let r = log.since(Some(0));
        assert_eq!((r.last, r.missed), (KEPT as u64 + 4, 4));
        assert_eq!(r.events.len(), KEPT);
        assert_eq!(r.events[0].seq, 5);
        let r = log.since(Some(KEPT as u64 + 2));
        assert_eq!((r.missed, r.events.len()), (0, 2));
        assert!(log.since(Some(KEPT as u64 + 4)).events.is_empty());
    }
}
