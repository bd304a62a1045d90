//! The port's listening socket: meshwire is the vhost-user server, qemu
//! the client (`-chardev socket,path=...` without `server`), so either may
//! restart. One connection at a time; each gets a fresh device from the
//! backend crate (its protocol state, vrings and kick thread), and when
//! qemu goes (exit, crash, restart) that device goes with it and the next
//! connection starts clean. The socket file stays for the port's life, so a
//! qemu with `reconnect=N` finds it again; meshwire restarting replaces a
//! stale socket file with a new one (qemu reconnects to that).

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tracing::{info, warn};
use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;

use super::backend::Backend;
use super::Shared;

/// The socket file's mode unless the port says otherwise: the daemon's
/// user and the socket's group.
pub const DEFAULT_MODE: u32 = 0o660;

/// Who may connect to the socket. Connecting to a unix socket takes write
/// permission on its file, so these decide which qemu can become the VM
/// behind the port: libvirt runs qemu as its own user (libvirt-qemu,
/// qemu) in its own group (kvm, qemu), not as meshwire's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketAccess {
    /// The socket file's group; None: the daemon's.
    pub gid: Option<u32>,
    pub mode: u32,
}

impl Default for SocketAccess {
    fn default() -> Self {
        SocketAccess {
            gid: None,
            mode: DEFAULT_MODE,
        }
    }
}

/// Gives the socket file its group, then its mode (until both are set the
/// umask's mode keeps the group out).
pub fn apply(path: &Path, access: SocketAccess) -> io::Result<()> {
    if let Some(gid) = access.gid {
        std::os::unix::fs::lchown(path, None, Some(gid))
            .map_err(|e| io::Error::new(e.kind(), format!("cannot give it group {gid}: {e}")))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(access.mode))
}

/// Binds the socket (replacing a stale one), gives it `access` and serves
/// it on a thread.
pub fn spawn(shared: Arc<Shared>, access: SocketAccess) -> io::Result<()> {
    if let Some(dir) = shared.path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    // A stale socket (the caller refused anything else) is replaced. We
    // bind ourselves rather than through `Listener::new`, whose listener
    // removes the path when it drops: on its own thread, after the port
    // went, that could remove the socket of a port added again at the
    // same path meanwhile. `stop` removes the file, and only ours.
    let _ = std::fs::remove_file(&shared.path);
    let fd = UnixListener::bind(&shared.path)?;
    let ours = socket_id(&shared.path)?;
    if let Err(e) = apply(&shared.path, access) {
        let _ = std::fs::remove_file(&shared.path);
        return Err(e);
    }
    let _ = shared.socket.set(ours);
    let mut listener = Listener::from(fd);
    let name = format!("vhost:{}", shared.path.display());
    thread::Builder::new()
        .name("vhost-user".into())
        .spawn(move || serve(&shared, &mut listener, &name))?;
    Ok(())
}

fn serve(shared: &Arc<Shared>, listener: &mut Listener, name: &str) {
    let socket = shared.path.display().to_string();
    while !shared.stopping.load(Ordering::Relaxed) {
        let backend = Backend {
            shared: Arc::clone(shared),
        };
        let mut daemon = match VhostUserDaemon::new(name.to_owned(), backend, shared.mem.clone()) {
            Ok(d) => d,
            Err(e) => {
                warn!(%socket, "vhost-user: cannot set up a device: {e}");
                thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if let Err(e) = daemon.start(listener) {
            if !shared.stopping.load(Ordering::Relaxed) {
                warn!(%socket, "vhost-user: accept failed: {e}");
                thread::sleep(Duration::from_millis(200));
            }
            stop_threads(&daemon);
            continue;
        }
        *shared.conn.lock().unwrap_or_else(|e| e.into_inner()) = daemon.shutdown_handle();
        info!(%socket, "vhost-user: guest connected");
        match daemon.wait() {
            Ok(())
            | Err(vhost_user_backend::Error::HandleRequest(
                vhost::vhost_user::Error::Disconnected | vhost::vhost_user::Error::PartialMessage,
            )) => info!(%socket, "vhost-user: guest disconnected"),
            Err(e) => warn!(%socket, "vhost-user: connection ended: {e}"),
        }
        shared.conn.lock().unwrap_or_else(|e| e.into_inner()).take();
        stop_threads(&daemon);
        shared.disconnected();
    }
}

/// What identifies the socket file we bound: its device and inode.
fn socket_id(path: &Path) -> io::Result<(u64, u64)> {
    let m = std::fs::symlink_metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// The device's kick thread ends with its connection.
fn stop_threads(daemon: &VhostUserDaemon<Backend>) {
    for h in daemon.get_epoll_handlers() {
        h.send_exit_event();
    }
}

/// The port goes: the listener wakes from accept and ends, a connected
/// guest is cut off, the socket file is removed.
pub fn stop(shared: &Shared) {
    shared.stopping.store(true, Ordering::Relaxed);
    // Wakes the listener's accept: it sees `stopping` once this
    // connection (dropped at once) ends.
    let _ = std::os::unix::net::UnixStream::connect(&shared.path);
    // Gone before the port is: the same path may be added again at once.
    // Someone else's file there (replaced by hand) stays.
    if shared
        .socket
        .get()
        .is_some_and(|s| socket_id(&shared.path).ok() == Some(*s))
    {
        let _ = std::fs::remove_file(&shared.path);
    }
    if let Some(conn) = shared.conn.lock().unwrap_or_else(|e| e.into_inner()).take() {
        conn.shutdown();
    }
    shared.disconnected();
}
