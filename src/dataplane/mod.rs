//! The worker loop that moves packets between ports, switch, mesh and tunnel.
//!
//! One thread, one epoll: the UDP socket(s), every TAP, the control socket's
//! wake-up fd and a signalfd. Timers are the epoll timeout. The batched,
//! multi-core dataplane of the speed issue replaces this loop's internals,
//! not the layers it drives.

mod epoll;
mod node;
mod report;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tracing::{info, warn};

use crate::config::{self, Validated};
use crate::control::server::ControlServer;
use crate::control::{CtlCommand, PortAction};
use crate::port::{PortId, PortRx};

pub use node::{Node, NodeCounters};

use epoll::{Epoll, Signals};

const TOKEN_SIGNAL: u64 = 1;
const TOKEN_CONTROL: u64 = 2;
/// Tunnel sockets are tokens TOKEN_TUNNEL..TOKEN_PORT.
const TOKEN_TUNNEL: u64 = 16;
/// Port `id` is token TOKEN_PORT + id.
const TOKEN_PORT: u64 = 1 << 32;

/// How often boringtun's timers run (handshake retries, keepalives).
const TUNNEL_TICK: Duration = Duration::from_millis(100);
/// How often the FDB is aged.
const FDB_TICK: Duration = Duration::from_secs(1);
/// Batches read from one TAP per wake-up (each up to a few 64 KB
/// super-frames or many small frames), so one busy VM cannot starve the rest.
const PORT_BATCHES: usize = 4;

/// The daemon: the node, its event sources and where its config lives.
struct Daemon {
    node: Node,
    ep: Epoll,
    cfg: Validated,
    config_path: PathBuf,
    /// Ports that came from the config file (a reload manages only these;
    /// ports added with `ctl port add` stay until `ctl port del`).
    config_ports: BTreeSet<String>,
}

pub fn run(cfg: Validated, config_path: &Path) -> Result<(), String> {
    // Before any thread exists, so that every thread inherits the mask.
    let signals = Signals::new().map_err(|e| format!("signalfd: {e}"))?;
    let node = Node::new(&cfg)?;
    let control = ControlServer::start(&cfg.raw.control.socket)
        .map_err(|e| format!("control.socket {}: {e}", cfg.raw.control.socket.display()))?;
    let ep = Epoll::new().map_err(|e| format!("epoll: {e}"))?;
    ep.add(signals.fd(), TOKEN_SIGNAL)
        .map_err(|e| e.to_string())?;
    ep.add(control.fd(), TOKEN_CONTROL)
        .map_err(|e| e.to_string())?;
    for (i, fd) in node.tunnels.fds().into_iter().enumerate() {
        ep.add(fd, TOKEN_TUNNEL + i as u64)
            .map_err(|e| e.to_string())?;
    }
    let mut d = Daemon {
        config_ports: cfg.raw.ports.iter().map(|p| p.name.clone()).collect(),
        node,
        ep,
        cfg,
        config_path: config_path.to_path_buf(),
    };
    let ids: Vec<PortId> = d.node.ports.ids().collect();
    for id in ids {
        d.watch_port(id)?;
    }
    info!(
        originator = %d.node.originator,
        peers = d.cfg.peers.len(),
        ports = d.cfg.raw.ports.len(),
        listen_port = d.cfg.raw.node.listen_port,
        "meshwire running"
    );

    let mut ready = Vec::with_capacity(64);
    let mut rx = PortRx::new();
    let start = Instant::now();
    let mut next_tunnel_tick = start;
    let mut next_fdb_tick = start + FDB_TICK;
    loop {
        let now = Instant::now();
        let deadline = d
            .node
            .mesh
            .next_deadline()
            .min(next_tunnel_tick)
            .min(next_fdb_tick);
        d.ep.wait(deadline.saturating_duration_since(now), &mut ready)
            .map_err(|e| format!("epoll_wait: {e}"))?;
        let now = Instant::now();
        for &token in &ready {
            match token {
                TOKEN_SIGNAL => match signals.read() {
                    Some(libc::SIGHUP) => d.reload(),
                    Some(sig) => {
                        info!(signal = sig, "shutting down");
                        return Ok(());
                    }
                    None => {}
                },
                TOKEN_CONTROL => {
                    for req in control.drain() {
                        let r = d.control(&req.cmd, now);
                        req.reply(r);
                    }
                }
                t if t >= TOKEN_PORT => {
                    let port = (t - TOKEN_PORT) as PortId;
                    if let Err(e) = read_port(&mut d.node, now, port, &mut rx) {
                        d.port_failed(port, &e);
                    }
                }
                _ => d.node.on_tunnel_readable(now),
            }
        }
        let tunnel_due = now >= next_tunnel_tick;
        if tunnel_due {
            next_tunnel_tick = now + TUNNEL_TICK;
        }
        let fdb_due = now >= next_fdb_tick;
        if fdb_due {
            next_fdb_tick = now + FDB_TICK;
        }
        d.node.on_tick(now, tunnel_due, fdb_due);
    }
}

impl Daemon {
    fn watch_port(&self, id: PortId) -> Result<(), String> {
        let fd = self
            .node
            .ports
            .get(id)
            .map(|p| p.tap.fd())
            .ok_or("port vanished")?;
        self.ep
            .add(fd, TOKEN_PORT + id as u64)
            .map_err(|e| format!("epoll: {e}"))
    }

    fn add_port(&mut self, name: &str, mtu: Option<u16>, offload: bool) -> Result<PortId, String> {
        let mtu = mtu.unwrap_or_else(|| self.cfg.default_port_mtu());
        let id = self.node.add_port(name, mtu, offload)?;
        if let Err(e) = self.watch_port(id) {
            let _ = self.node.remove_port(name);
            return Err(e);
        }
        info!(port = name, mtu, "port added");
        Ok(id)
    }

    fn del_port(&mut self, name: &str) -> Result<PortId, String> {
        if let Some(id) = self.node.ports.id_by_name(name) {
            if let Some(p) = self.node.ports.get(id) {
                self.ep.del(p.tap.fd());
            }
        }
        let id = self.node.remove_port(name)?;
        info!(port = name, "port removed");
        Ok(id)
    }

    /// A port whose TAP failed for good leaves the switch and the mesh.
    fn port_failed(&mut self, port: PortId, e: &std::io::Error) {
        let Some(name) = self.node.ports.name(port).map(String::from) else {
            return;
        };
        warn!(port = %name, "port failed ({e}): removing it");
        if let Err(e) = self.del_port(&name) {
            warn!("{e}");
        }
    }

    fn control(&mut self, cmd: &CtlCommand, now: Instant) -> Result<Value, String> {
        match cmd {
            CtlCommand::Port { action } => match action {
                PortAction::Add { name, mtu } => self
                    .add_port(name, *mtu, true)
                    .map(|id| json!(format!("port {name} added (id {id})"))),
                PortAction::Del { name } => self
                    .del_port(name)
                    .map(|_| json!(format!("port {name} removed"))),
            },
            CtlCommand::Announce { port, mac, ip } => {
                self.node.announce(now, port, *mac, ip).map(Value::from)
            }
            other => report::answer(&mut self.node, other, now),
        }
    }

    /// SIGHUP: re-reads the config and brings the config's ports in line.
    /// Other sections need a restart (peers, keys, addresses); a bad file
    /// is reported and changes nothing.
    fn reload(&mut self) {
        let cfg = match config::load(&self.config_path) {
            Ok(c) => c,
            Err(e) => {
                warn!("reload refused: {}: {e}", self.config_path.display());
                return;
            }
        };
        let wanted: BTreeSet<String> = cfg.raw.ports.iter().map(|p| p.name.clone()).collect();
        for gone in self
            .config_ports
            .difference(&wanted)
            .cloned()
            .collect::<Vec<_>>()
        {
            if let Err(e) = self.del_port(&gone) {
                warn!("reload: {e}");
            }
        }
        for p in &cfg.raw.ports {
            if self.node.ports.id_by_name(&p.name).is_none() {
                if let Err(e) = self.add_port(&p.name, Some(cfg.port_mtu(p)), p.offload) {
                    warn!("reload: {e}");
                }
            }
        }
        self.config_ports = wanted;
        self.cfg = cfg;
        info!("config reloaded");
    }
}

/// Reads what a port has, a bounded number of batches at a time; 64 KB
/// super-frames come out cut to MTU-sized frames. An error other than
/// "nothing more" means the TAP is gone from under us (its namespace was
/// deleted: the fd is detached, EBADFD) and is returned, so the port can be
/// dropped instead of spinning on an fd that is always readable.
fn read_port(node: &mut Node, now: Instant, port: PortId, rx: &mut PortRx) -> std::io::Result<()> {
    for _ in 0..PORT_BATCHES {
        match node.ports.recv_batch(port, rx) {
            Ok(_) => {
                while let Some(frame) = rx.next_frame() {
                    node.on_port_frame(now, port, frame);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // Removed earlier in this round of events.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
