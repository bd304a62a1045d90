//! The Prometheus endpoint (`[metrics] listen`).
//!
//! Worker 0 copies the node's reports into a [`Snapshot`] once a second
//! while it holds the node for its timers anyway (the same JSON values
//! `ctl stats`, `ctl peers` and `ctl ports` print, so the two never
//! disagree); the HTTP thread renders the latest copy. A scrape therefore
//! never takes the node lock at all, and a slow or hostile scraper costs
//! the dataplane nothing.

#![forbid(unsafe_code)]

pub mod http;
mod render;
#[cfg(test)]
mod tests;

use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use serde_json::Value;

pub use render::{render, NAMES};

/// The node's reports at one moment, as plain values.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When it was taken (wall clock: the scrape reports its age).
    pub taken: SystemTime,
    /// This node's originator MAC.
    pub originator: String,
    /// `ctl stats`.
    pub stats: Value,
    /// `ctl peers`.
    pub peers: Value,
    /// `ctl ports`.
    pub ports: Value,
    pub sizes: Sizes,
}

/// Table sizes (entries now, not counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sizes {
    pub fdb: usize,
    pub tt_local: usize,
    pub tt_global: usize,
    pub originators: usize,
}

/// Where worker 0 leaves the latest snapshot for the HTTP thread.
#[derive(Debug, Default)]
pub struct Exporter {
    latest: Mutex<Option<Snapshot>>,
}

impl Exporter {
    pub fn publish(&self, s: Snapshot) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(s);
    }

    /// The exposition text, None before the first snapshot.
    pub fn scrape(&self) -> Option<String> {
        let s = self
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        Some(render(&s, SystemTime::now()))
    }
}
