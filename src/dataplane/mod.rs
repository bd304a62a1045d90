//! The worker loop that moves packets between ports, switch, mesh and tunnel.
//!
//! One thread, one epoll: the UDP socket(s), every TAP, the control socket's
//! wake-up fd and a signalfd. Timers are the epoll timeout. The batched,
//! multi-core dataplane of the speed issue replaces this loop's internals,
//! not the layers it drives.

mod epoll;
mod node;
mod report;

use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config::Validated;
use crate::control::server::ControlServer;
use crate::port::PortId;

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
/// Frames read from one TAP per wake-up, so one busy VM cannot starve the rest.
const PORT_BATCH: usize = 64;
/// Largest frame a TAP can hand us (64 KiB with offloads off is impossible,
/// but the buffer costs nothing and a short read would corrupt a frame).
const FRAME_BUF: usize = 65536;

pub fn run(cfg: Validated) -> Result<(), String> {
    // Before any thread exists, so that every thread inherits the mask.
    let signals = Signals::new().map_err(|e| format!("signalfd: {e}"))?;
    let mut node = Node::new(&cfg)?;
    let control = ControlServer::start(&cfg.raw.control.socket)
        .map_err(|e| format!("control.socket {}: {e}", cfg.raw.control.socket.display()))?;
    let mut ep = Epoll::new().map_err(|e| format!("epoll: {e}"))?;
    ep.add(signals.fd(), TOKEN_SIGNAL)
        .map_err(|e| e.to_string())?;
    ep.add(control.fd(), TOKEN_CONTROL)
        .map_err(|e| e.to_string())?;
    for (i, fd) in node.tunnels.fds().into_iter().enumerate() {
        ep.add(fd, TOKEN_TUNNEL + i as u64)
            .map_err(|e| e.to_string())?;
    }
    let port_fds: Vec<_> = node
        .ports
        .ids()
        .filter_map(|id| node.ports.get(id).map(|p| (id, p.tap.fd())))
        .collect();
    for (id, fd) in port_fds {
        ep.add(fd, TOKEN_PORT + id as u64)
            .map_err(|e| e.to_string())?;
    }
    info!(
        originator = %node.originator,
        peers = cfg.peers.len(),
        ports = cfg.raw.ports.len(),
        listen_port = cfg.raw.node.listen_port,
        "meshwire running"
    );

    let mut ready = Vec::with_capacity(64);
    let mut buf = vec![0u8; FRAME_BUF];
    let start = Instant::now();
    let mut next_tunnel_tick = start;
    let mut next_fdb_tick = start + FDB_TICK;
    loop {
        let now = Instant::now();
        let deadline = node
            .mesh
            .next_deadline()
            .min(next_tunnel_tick)
            .min(next_fdb_tick);
        ep.wait(deadline.saturating_duration_since(now), &mut ready)
            .map_err(|e| format!("epoll_wait: {e}"))?;
        let now = Instant::now();
        for &token in &ready {
            match token {
                TOKEN_SIGNAL => {
                    if let Some(sig) = signals.read() {
                        info!(signal = sig, "shutting down");
                        return Ok(());
                    }
                }
                TOKEN_CONTROL => {
                    for req in control.drain() {
                        let r = report::answer(&mut node, &req.cmd, now);
                        req.reply(r);
                    }
                }
                t if t >= TOKEN_PORT => {
                    read_port(&mut node, now, (t - TOKEN_PORT) as PortId, &mut buf)
                }
                _ => node.on_tunnel_readable(now),
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
        node.on_tick(now, tunnel_due, fdb_due);
    }
}

fn read_port(node: &mut Node, now: Instant, port: PortId, buf: &mut [u8]) {
    for _ in 0..PORT_BATCH {
        match node.ports.recv(port, buf) {
            Ok(Some(n)) => node.on_port_frame(now, port, &buf[..n]),
            // Dropped and counted by the port (runt, oversize).
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => {
                warn!(port, "port read failed: {e}");
                return;
            }
        }
    }
}
