//! One watcher thread per port with `qmp`: connects to the qemu's QMP
//! socket (again and again while it is away), sends the handshake, reads
//! events and hands the [`Action`]s of the state machine to the daemon
//! over a channel, with an eventfd write to wake its epoll. It never
//! touches the node: the daemon carries the actions out under its lock.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::machine::{Action, Machine};
use super::qmp::{self, Event, Msg};
use super::{Note, Shared};
use crate::sys::eventfd::EventFd;

/// How often a blocked read looks at the stop flag.
const POLL: Duration = Duration::from_millis(200);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Garbage from one socket is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

pub(super) struct Client {
    pub port: String,
    pub shared: Arc<Shared>,
    pub tx: Sender<Note>,
    pub wake: EventFd,
}

impl Client {
    pub fn run(self) {
        let mut backoff = BACKOFF_MIN;
        let mut machine = Machine::default();
        let mut said_missing = false;
        while !self.shared.stop.load(Ordering::Relaxed) {
            let path = self.shared.path.clone();
            match UnixStream::connect(&path) {
                Ok(s) => {
                    backoff = BACKOFF_MIN;
                    said_missing = false;
                    tracing::info!(port = %self.port, qmp = %path.display(), "qmp: connected");
                    self.shared.update(|s| {
                        s.connected = true;
                        s.connects += 1;
                    });
                    machine.connected();
                    let why = self.session(s, &mut machine);
                    let action = machine.disconnected();
                    self.shared.update(|s| {
                        s.connected = false;
                        s.role = machine.role();
                    });
                    self.hand_off(action, &machine);
                    if !self.shared.stop.load(Ordering::Relaxed) {
                        tracing::info!(port = %self.port, "qmp: disconnected ({why})");
                    }
                }
                Err(e) => {
                    if !said_missing {
                        tracing::info!(
                            port = %self.port,
                            qmp = %path.display(),
                            "qmp: cannot connect ({e}); trying again every {} s",
                            BACKOFF_MAX.as_secs()
                        );
                        said_missing = true;
                    }
                    self.sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.shared.stop.load(Ordering::Relaxed) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(POLL));
        }
    }

    /// One connection, until it ends; why it ended.
    fn session(&self, mut s: UnixStream, machine: &mut Machine) -> String {
        if let Err(e) = s.set_read_timeout(Some(POLL)) {
            return e.to_string();
        }
        if let Err(e) = s
            .set_write_timeout(Some(Duration::from_secs(2)))
            .and_then(|()| s.write_all(qmp::handshake().as_bytes()))
        {
            return format!("handshake: {e}");
        }
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = [0u8; 4096];
        // Dropping the rest of a line that was too long.
        let mut skipping = false;
        let mut last_log: Option<Instant> = None;
        let mut unlogged = 0u64;
        loop {
            if self.shared.stop.load(Ordering::Relaxed) {
                return "stopped".into();
            }
            let n = match s.read(&mut chunk) {
                Ok(0) => return "closed by qemu".into(),
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => return e.to_string(),
            };
            buf.extend_from_slice(&chunk[..n]);
            let mut start = 0;
            while let Some(i) = buf[start..].iter().position(|&b| b == b'\n') {
                let line = &buf[start..start + i];
                start += i + 1;
                if std::mem::take(&mut skipping) {
                    continue;
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match qmp::parse(line) {
                    Ok(msg) => self.on_msg(&msg, machine),
                    Err(e) => self.garbage(&e, &mut last_log, &mut unlogged),
                }
            }
            buf.drain(..start);
            if buf.len() > qmp::MAX_LINE {
                let e = qmp::Error::TooLong(buf.len());
                self.garbage(&e, &mut last_log, &mut unlogged);
                buf.clear();
                skipping = true;
            }
        }
    }

    fn garbage(&self, e: &qmp::Error, last: &mut Option<Instant>, unlogged: &mut u64) {
        self.shared.update(|s| s.garbage += 1);
        *unlogged += 1;
        let now = Instant::now();
        if last.is_none_or(|t| now.duration_since(t) >= LOG_EVERY) {
            tracing::warn!(
                port = %self.port,
                lines = *unlogged,
                "qmp: ignored what qemu's socket sent ({e})"
            );
            *last = Some(now);
            *unlogged = 0;
        }
    }

    fn on_msg(&self, msg: &Msg, machine: &mut Machine) {
        let action = machine.on_msg(msg);
        if let Msg::Event(e) = msg {
            let name = match e {
                Event::Resume => "RESUME".to_string(),
                Event::Stop => "STOP".to_string(),
                Event::Shutdown => "SHUTDOWN".to_string(),
                Event::Migration(st) => format!("MIGRATION {st:?}").to_lowercase(),
                Event::Other(n) => n.clone(),
            };
            tracing::debug!(port = %self.port, event = %name, "qmp: event");
            let at = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            self.shared.update(|s| {
                s.events += 1;
                s.last_event = Some(name);
                s.last_event_unix_ms = at;
            });
        }
        self.shared.update(|s| s.role = machine.role());
        self.hand_off(action, machine);
    }

    fn hand_off(&self, action: Option<Action>, machine: &Machine) {
        let Some(action) = action else {
            return;
        };
        tracing::info!(port = %self.port, ?action, macs = ?machine.macs(), "qmp: migration step");
        self.shared.update(|s| s.actions += 1);
        let note = Note {
            port: self.port.clone(),
            action,
            macs: machine.macs().to_vec(),
        };
        if self.tx.send(note).is_ok() {
            self.wake.notify();
        }
    }
}

/// Whether `path` looks like something to connect to (for config checks:
/// a socket that is not there yet is fine, qemu may start later).
pub fn check_path(path: &Path) -> Result<(), String> {
    if !path.is_absolute() {
        return Err(format!("{}: not an absolute path", path.display()));
    }
    // sun_path is 108 bytes with its NUL.
    if path.as_os_str().len() > 107 {
        return Err(format!(
            "{}: longer than a unix socket path may be",
            path.display()
        ));
    }
    Ok(())
}
