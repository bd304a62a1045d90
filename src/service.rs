//! systemd's service protocol (sd_notify): readiness, watchdog pings,
//! stopping and reloading, over `$NOTIFY_SOCKET` (the sd-notify crate).
//! Outside systemd (no `NOTIFY_SOCKET`) every call does nothing.

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tracing::debug;

fn send(states: &[NotifyState]) {
    // A supervisor that went away is no reason to stop forwarding frames.
    if let Err(e) = sd_notify::notify(states) {
        debug!("sd_notify: {e}");
    }
}

/// Ports, sockets and workers are up: `Type=notify` units start their
/// dependents now.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Around a config reload (SIGHUP): RELOADING=1 with the monotonic time
/// systemd asks for (`Type=notify-reload`), then READY=1 when done.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(t) => send(&[NotifyState::Reloading, t]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn reloaded() {
    send(&[NotifyState::Ready]);
}

/// Watchdog pings at half of `WatchdogSec=` (systemd's advice), sent from
/// worker 0's loop: a loop that hangs (a stuck lock, a spinning worker 0)
/// stops pinging and systemd restarts the service.
#[derive(Debug)]
pub struct Watchdog {
    every: Option<Duration>,
    next: Instant,
}

impl Watchdog {
    /// Reads `WATCHDOG_USEC` (and `WATCHDOG_PID`) once, at start.
    pub fn from_env(now: Instant) -> Watchdog {
        let every = sd_notify::watchdog_enabled().map(|d| d / 2);
        if let Some(e) = every {
            debug!(every_ms = e.as_millis() as u64, "systemd watchdog on");
        }
        Watchdog { every, next: now }
    }

    /// When the next ping is due (None: no watchdog).
    pub fn deadline(&self) -> Option<Instant> {
        self.every.map(|_| self.next)
    }

    pub fn tick(&mut self, now: Instant) {
        let Some(every) = self.every else { return };
        if now >= self.next {
            send(&[NotifyState::Watchdog]);
            self.next = now + every;
        }
    }
}
