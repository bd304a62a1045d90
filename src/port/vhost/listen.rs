//! The port's listening socket: meshwire is the vhost-user server, qemu
//! the client (`-chardev socket,path=...` without `server`), so either may
//! restart. One connection at a time; each gets a fresh device from the
//! backend crate (its protocol state, vrings and kick thread), and when
//! qemu goes (exit, crash, restart) that device goes with it and the next
//! connection starts clean. The socket file stays for the port's life, so a
//! qemu with `reconnect=N` finds it again; meshwire restarting replaces a
//! stale socket file with a new one (qemu reconnects to that).

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tracing::{info, warn};
use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;

use super::backend::Backend;
use super::Shared;

/// Binds the socket (replacing a stale one) and serves it on a thread.
pub fn spawn(shared: Arc<Shared>) -> io::Result<()> {
    if let Some(dir) = shared.path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let mut listener = Listener::new(&shared.path, true).map_err(io::Error::other)?;
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
    let _ = std::fs::remove_file(&shared.path);
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
    if let Some(conn) = shared.conn.lock().unwrap_or_else(|e| e.into_inner()).take() {
        conn.shutdown();
    }
    shared.disconnected();
}
