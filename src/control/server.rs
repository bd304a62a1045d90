//! The daemon side of the control socket.
//!
//! A thread accepts connections and reads one request line from each; the
//! request goes to the dataplane over a channel, with an eventfd write to
//! wake its epoll; the dataplane answers on a per-request channel.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::RawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use super::{CtlCommand, Reply, MAX_REQUEST};
use crate::sys::eventfd::EventFd;

/// A request waiting for the dataplane's answer.
pub struct Pending {
    pub cmd: CtlCommand,
    answer: Sender<Reply>,
}

impl Pending {
    pub fn reply(self, r: Result<serde_json::Value, String>) {
        let reply = match r {
            Ok(data) => Reply {
                ok: true,
                data: Some(data),
                error: None,
            },
            Err(e) => Reply {
                ok: false,
                data: None,
                error: Some(e),
            },
        };
        // The client may have gone; nothing to do then.
        let _ = self.answer.send(reply);
    }
}

/// The dataplane's end: an fd for epoll and the queue of requests.
pub struct ControlServer {
    wake: EventFd,
    requests: Receiver<Pending>,
    path: PathBuf,
}

impl ControlServer {
    /// Binds the socket (replacing a stale one) and starts the accept thread.
    pub fn start(path: &Path) -> std::io::Result<ControlServer> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        remove_stale(path)?;
        let listener = UnixListener::bind(path)?;
        // Root and the owner only: the tables show keys' peers and topology.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        let wake = EventFd::new()?;
        let wake_writer = wake.try_clone()?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || accept_loop(listener, tx, wake_writer))?;
        Ok(ControlServer {
            wake,
            requests: rx,
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
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A socket file left by a daemon that died is replaced; a live daemon's is
/// not (two daemons on one socket would be an operator error worth a refusal).
fn remove_stale(path: &Path) -> std::io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    if UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!("{} is in use by a running daemon", path.display()),
        ));
    }
    std::fs::remove_file(path)
}

fn accept_loop(listener: UnixListener, tx: Sender<Pending>, wake: EventFd) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        if serve(conn, &tx, &wake).is_err() {
            continue;
        }
    }
}

fn serve(conn: UnixStream, tx: &Sender<Pending>, wake: &EventFd) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new((&conn).take(MAX_REQUEST as u64)).read_line(&mut line)?;
    let reply = match serde_json::from_str::<CtlCommand>(line.trim()) {
        Err(e) => Reply {
            ok: false,
            data: None,
            error: Some(format!("bad request: {e}")),
        },
        Ok(cmd) => {
            let (atx, arx) = mpsc::channel();
            if tx.send(Pending { cmd, answer: atx }).is_err() {
                return Ok(()); // dataplane gone: shutting down
            }
            wake.notify();
            match arx.recv_timeout(Duration::from_secs(5)) {
                Ok(r) => r,
                Err(_) => Reply {
                    ok: false,
                    data: None,
                    error: Some("the dataplane did not answer in time".into()),
                },
            }
        }
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    (&conn).write_all(&out)
}
