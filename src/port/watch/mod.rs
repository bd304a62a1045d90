//! qemu lifecycle watchers: `[[port]] qmp = "/run/meshwire/vm1.qmp"`.
//!
//! A port whose VM's qemu has a QMP socket for meshwire (qemu
//! `-qmp unix:PATH,server=on,wait=off`, a second one beside libvirt's own)
//! is watched by a thread of its own (`client.rs`): qemu's run state and
//! `RESUME`/`STOP`/`MIGRATION` events go through a sans-I/O state machine
//! (`machine.rs`, parser in `qmp.rs`), whose actions the daemon carries
//! out with the node held for a moment: the destination claims the VM's
//! MAC the moment the guest runs there (as `ctl announce`), and both ends
//! deliver the VM's frames twice while it moves (`bridge/dual.rs`). The
//! dataplane never waits for a watcher.

pub mod client;
pub mod machine;
pub mod qmp;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::sys::eventfd::EventFd;
use crate::wire::MacAddr;
pub use machine::{Action, Role};

/// An action for the daemon: what a port's qemu did.
#[derive(Debug, Clone)]
pub struct Note {
    pub port: String,
    pub action: Action,
    /// The NICs' MACs as qemu reported them (may be empty).
    pub macs: Vec<MacAddr>,
}

/// What `ctl ports` shows of a watcher (its `qmp` object).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    pub path: PathBuf,
    pub connected: bool,
    pub role: Role,
    pub connects: u64,
    /// Events read.
    pub events: u64,
    pub last_event: Option<String>,
    pub last_event_unix_ms: u64,
    /// Migration steps handed to the daemon.
    pub actions: u64,
    /// Lines that were no QMP message (logged, at most every 10 s).
    pub garbage: u64,
}

/// Between a watcher thread and the daemon.
pub(crate) struct Shared {
    path: PathBuf,
    stop: AtomicBool,
    status: Mutex<Status>,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut Status)) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
    }

    fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The watcher threads of the daemon, one per port with `qmp`.
pub struct Watchers {
    tx: Sender<Note>,
    rx: Receiver<Note>,
    /// Written by the threads, read by the daemon's epoll.
    wake: EventFd,
    by_port: HashMap<String, Arc<Shared>>,
}

impl Watchers {
    pub fn new() -> std::io::Result<Watchers> {
        let (tx, rx) = channel();
        Ok(Watchers {
            tx,
            rx,
            wake: EventFd::new()?,
            by_port: HashMap::new(),
        })
    }

    /// The fd the daemon's epoll waits on.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.wake.fd()
    }

    /// Watches `port`'s qemu at `path` (None: not any more). A watcher
    /// with the same path is left alone.
    pub fn set(&mut self, port: &str, path: Option<&Path>) -> Result<(), String> {
        if let (Some(old), Some(p)) = (self.by_port.get(port), path) {
            if old.path == p {
                return Ok(());
            }
        }
        if let Some(old) = self.by_port.remove(port) {
            // The thread sees it within its poll interval and ends.
            old.stop.store(true, Ordering::Relaxed);
        }
        let Some(path) = path else {
            return Ok(());
        };
        client::check_path(path).map_err(|e| format!("port {port}: qmp {e}"))?;
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            stop: AtomicBool::new(false),
            status: Mutex::new(Status {
                path: path.to_path_buf(),
                ..Status::default()
            }),
        });
        let c = client::Client {
            port: port.to_string(),
            shared: Arc::clone(&shared),
            tx: self.tx.clone(),
            wake: self.wake.try_clone().map_err(|e| e.to_string())?,
        };
        std::thread::Builder::new()
            .name(format!("qmp-{port}"))
            .spawn(move || c.run())
            .map_err(|e| format!("port {port}: qmp watcher: {e}"))?;
        self.by_port.insert(port.to_string(), shared);
        Ok(())
    }

    /// What the threads handed over since the last call.
    pub fn drain(&self) -> Vec<Note> {
        self.wake.drain();
        self.rx.try_iter().collect()
    }

    pub fn status(&self, port: &str) -> Option<Status> {
        self.by_port.get(port).map(|s| s.status())
    }

    /// Sums over every watcher (for `ctl stats`).
    pub fn totals(&self) -> serde_json::Value {
        let mut t = (0u64, 0u64, 0u64, 0u64, 0u64);
        for s in self.by_port.values().map(|s| s.status()) {
            t.0 += u64::from(s.connected);
            t.1 += s.connects;
            t.2 += s.events;
            t.3 += s.actions;
            t.4 += s.garbage;
        }
        serde_json::json!({
            "watchers": self.by_port.len(),
            "connected": t.0,
            "connects": t.1,
            "events": t.2,
            "actions": t.3,
            "garbage": t.4,
        })
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        for s in self.by_port.values() {
            s.stop.store(true, Ordering::Relaxed);
        }
    }
}
