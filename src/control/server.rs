//! The daemon side of the control socket.
//!
//! A thread accepts connections and checks each client's credentials;
//! every admitted client gets its own thread (`session.rs`) that reads one
//! request line under a deadline, hands the parsed request to the
//! dataplane over a channel (with an eventfd write to wake its epoll), and
//! writes the answer. So a slow or hung client holds only its own thread,
//! never another client or the dataplane, and at most [`MAX_CLIENTS`] are
//! served at once. Reports come back from the dataplane as a copy of its
//! tables plus a function that turns the copy into JSON: that work runs
//! on the client's thread, outside the node lock.

use std::os::fd::RawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use tracing::warn;

use super::session::{self, Admission};
use super::{CtlCommand, Reply};
use crate::config::ControlAccess;
use crate::sys::eventfd::EventFd;

/// Clients served at once; more are answered "busy" at once and closed.
pub const MAX_CLIENTS: usize = 32;

/// Builds a report from a copy of the tables, on the client's thread: it
/// streams the JSON of the answer's `data` into the connection, row by
/// row (a `serde_json::Value` tree of a full FDB took 190 MB, its text
/// 30 MB more).
pub type Render = Box<dyn FnOnce(&mut dyn std::io::Write) -> std::io::Result<()> + Send>;

/// Reports rendered at once; more wait their turn, so memory stays
/// bounded however many clients ask for `ctl fdb` together.
pub const MAX_RENDERS: usize = 4;

/// What the dataplane sends back for one request.
pub(super) enum Answer {
    Now(Result<Value, String>),
    Later(Render),
}

/// A request waiting for the dataplane's answer.
pub struct Pending {
    pub cmd: CtlCommand,
    answer: Sender<Answer>,
}

impl Pending {
    pub(super) fn new(cmd: CtlCommand, answer: Sender<Answer>) -> Pending {
        Pending { cmd, answer }
    }

    pub fn reply(self, r: Result<Value, String>) {
        // The client may have gone; nothing to do then.
        let _ = self.answer.send(Answer::Now(r));
    }

    /// Answers with a copy of the tables and how to render it: the client's
    /// thread renders, so the node lock is held only for the copy.
    pub fn reply_later(self, render: Render) {
        let _ = self.answer.send(Answer::Later(render));
    }
}

/// What the control socket saw (`ctl stats`: `control`).
#[derive(Debug, Default)]
pub struct ControlCounters {
    pub accepted: AtomicU64,
    pub served: AtomicU64,
    pub refused_credentials: AtomicU64,
    pub refused_busy: AtomicU64,
    pub bad_requests: AtomicU64,
    pub timed_out: AtomicU64,
    pub accept_errors: AtomicU64,
}

/// The counters as numbers, for `ctl stats`.
#[derive(Debug, Clone, Serialize)]
pub struct ControlStats {
    pub accepted: u64,
    pub served: u64,
    pub refused_credentials: u64,
    pub refused_busy: u64,
    pub bad_requests: u64,
    pub timed_out: u64,
    pub accept_errors: u64,
    pub clients_now: usize,
}

/// What the accept thread and every session share.
pub(super) struct Shared {
    pub requests: Sender<Pending>,
    pub wake: EventFd,
    pub counters: ControlCounters,
    pub active: AtomicUsize,
    pub admission: Admission,
    /// How long a client has for its request line (REQUEST_DEADLINE;
    /// tests that must not race it use a longer one).
    pub request_deadline: std::time::Duration,
    /// Renders running now (at most MAX_RENDERS).
    pub renders: (std::sync::Mutex<usize>, std::sync::Condvar),
}

/// The dataplane's end: an fd for epoll and the queue of requests.
pub struct ControlServer {
    wake: EventFd,
    requests: Receiver<Pending>,
    shared: Arc<Shared>,
    path: PathBuf,
}

impl ControlServer {
    /// Binds the socket (replacing a stale one of ours, refusing anything
    /// else at the path), sets its group and mode, and starts the accept
    /// thread.
    pub fn start(access: &ControlAccess) -> std::io::Result<ControlServer> {
        Self::start_with(access, super::session::REQUEST_DEADLINE)
    }

    /// [`ControlServer::start`] with another request deadline.
    pub(crate) fn start_with(
        access: &ControlAccess,
        request_deadline: Duration,
    ) -> std::io::Result<ControlServer> {
        let path = access.socket.as_path();
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        remove_stale(path)?;
        let listener = UnixListener::bind(path)?;
        // Group first, then the mode: until both are set, the mode from
        // the umask and the credential check keep others out.
        if let Some(gid) = access.gid {
            std::os::unix::fs::lchown(path, None, Some(gid)).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot give it group {gid}: {e}"))
            })?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(access.mode))?;
        let wake = EventFd::new()?;
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            requests: tx,
            wake: wake.try_clone()?,
            counters: ControlCounters::default(),
            active: AtomicUsize::new(0),
            admission: Admission::new(access.gid),
            request_deadline,
            renders: Default::default(),
        });
        let s = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || accept_loop(listener, s))?;
        Ok(ControlServer {
            wake,
            requests: rx,
            shared,
            path: path.to_path_buf(),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.wake.fd()
    }

    /// Clears the wake-up and returns every request that is waiting.
    pub fn drain(&self) -> Vec<Pending> {
        self.wake.drain();
        self.requests.try_iter().collect()
    }

    pub fn stats(&self) -> ControlStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ControlStats {
            accepted: get(&c.accepted),
            served: get(&c.served),
            refused_credentials: get(&c.refused_credentials),
            refused_busy: get(&c.refused_busy),
            bad_requests: get(&c.bad_requests),
            timed_out: get(&c.timed_out),
            accept_errors: get(&c.accept_errors),
            clients_now: self.shared.active.load(Ordering::Relaxed),
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        // Only our own socket: if someone replaced it meanwhile, leave it.
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.file_type().is_socket()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What may be at the socket path when we start: nothing, or a socket a
/// dead daemon left (nobody accepts on it). A live daemon's socket is
/// refused (two daemons on one socket would be an operator error), and so
/// is anything that is not a socket: a regular file, a directory or a
/// symlink at that path is somebody's, and never ours to delete.
fn remove_stale(path: &Path) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
        Ok(m) => m,
    };
    let ft = meta.file_type();
    if !ft.is_socket() {
        let what = if ft.is_file() {
            "a regular file"
        } else if ft.is_dir() {
            "a directory"
        } else if ft.is_symlink() {
            "a symbolic link"
        } else {
            "not a socket"
        };
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} exists and is {what}, not a control socket: refusing to replace it \
                 (remove it, or set control.socket to another path)",
                path.display()
            ),
        ));
    }
    match UnixStream::connect(path) {
        Ok(conn) => {
            let who = crate::sys::cred::peer_cred(&conn)
                .map(|c| format!(" (pid {})", c.pid))
                .unwrap_or_default();
            Err(Error::new(
                ErrorKind::AddrInUse,
                format!(
                    "{} is in use by a running daemon{who}: refusing to start a second one on it",
                    path.display()
                ),
            ))
        }
        // Nobody listens: a dead daemon's socket.
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Err(e) => Err(Error::new(
            e.kind(),
            format!("{} is a socket we cannot probe: {e}", path.display()),
        )),
    }
}

/// Backoff after an accept error: EMFILE/ENFILE/ENOMEM do not go away by
/// retrying at once, and a spinning thread would take a core.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(500);

fn accept_loop(listener: UnixListener, shared: Arc<Shared>) {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut last_log: Option<Instant> = None;
    loop {
        let conn = match listener.accept() {
            Ok((c, _)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                c
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                shared
                    .counters
                    .accept_errors
                    .fetch_add(1, Ordering::Relaxed);
                if last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    warn!("control socket: accept: {e} (backing off)");
                    last_log = Some(Instant::now());
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
        session::admit(conn, &shared);
    }
}

/// The reply a client gets for an error.
pub(super) fn error_reply(e: impl Into<String>) -> Reply {
    Reply {
        ok: false,
        data: None,
        error: Some(e.into()),
    }
}
