//! How a worker holds the node: one guard type for every path, worker 0's
//! timers and control requests included.
//!
//! [`Held`] takes the node lock and pairs the node with the worker's
//! [`Outbox`]: the bridge writes client frames straight into the worker's
//! queues of the ports, and puts frames for the tunnels into the worker's
//! pending batch. Dropping the guard releases the lock first and then
//! encrypts that batch on the worker's own path, one peer lock per run of
//! frames: WireGuard crypto never runs under the node lock on the data path.

use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::frames::Frames;
use super::Node;
use crate::bridge::Egress;
use crate::port::{PortId, Ports};
use crate::tunnel::{PeerId, TunnelCore, TunnelIo};

/// Frames held for encryption before the holder encrypts them in place
/// (under the lock): a worker encrypts after the lock, but not without limit.
const MAX_PENDING_BYTES: usize = 4 << 20;

/// A worker's transmit side: its queues of the ports, its socket, and the
/// frames waiting for encryption.
pub struct Outbox {
    pub ports: Ports,
    pub tunnel: TunnelIo,
    /// The peers (each behind its own lock), for crypto outside the node lock.
    core: Arc<TunnelCore>,
    pending: Frames,
    /// Frames the tunnels refused (no endpoint yet, too long...).
    pub send_errors: u64,
    /// Nanoseconds spent waiting for the node lock, and holding it: what
    /// the one shared lock costs this worker (two clock reads per batch).
    pub node_wait_ns: u64,
    pub node_held_ns: u64,
}

impl Outbox {
    pub fn new(ports: Ports, tunnel: TunnelIo, core: Arc<TunnelCore>) -> Outbox {
        Outbox {
            ports,
            tunnel,
            core,
            pending: Frames::default(),
            send_errors: 0,
            node_wait_ns: 0,
            node_held_ns: 0,
        }
    }

    /// Encrypts what is pending into the socket's send batch.
    pub fn encrypt(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let refused = self.core.send_frames(&mut self.tunnel, self.pending.iter());
        self.send_errors += refused as u64;
        self.pending.clear();
    }

    /// Everything queued leaves: one sendmmsg, the TAP writes.
    pub fn flush(&mut self) {
        self.encrypt();
        self.tunnel.flush();
        self.ports.flush();
    }

    pub fn core(&self) -> &Arc<TunnelCore> {
        &self.core
    }
}

impl Egress for Outbox {
    /// TCP segments of one flow are merged into one super-frame towards the
    /// TAP and written at the end of the loop round (`flush`); the port
    /// counts its own refusals (busy, oversize, link down).
    fn to_port(&mut self, port: PortId, frame: &[u8]) {
        self.ports.send_gro(port, frame);
    }

    fn to_peer(&mut self, peer: PeerId, parts: &[&[u8]]) {
        self.pending.push(peer, parts);
        if self.pending.bytes() > MAX_PENDING_BYTES {
            self.encrypt();
        }
    }
}

/// The node, locked, with the holder's outbox.
pub struct Held<'a> {
    node: Option<MutexGuard<'a, Node>>,
    out: &'a mut Outbox,
    since: Instant,
}

impl<'a> Held<'a> {
    /// Takes the node lock. A poisoned lock means a worker panicked, and a
    /// panicking worker ends the process (see `worker.rs`), so the data is
    /// whole.
    pub fn new(node: &'a Mutex<Node>, out: &'a mut Outbox) -> Held<'a> {
        let asked = Instant::now();
        let guard = node.lock().unwrap_or_else(PoisonError::into_inner);
        let since = Instant::now();
        out.node_wait_ns += since.duration_since(asked).as_nanos() as u64;
        Held {
            node: Some(guard),
            out,
            since,
        }
    }

    /// The node and the outbox, to hand the second to the first.
    pub fn parts(&mut self) -> (&mut Node, &mut Outbox) {
        match self.node.as_deref_mut() {
            Some(n) => (n, self.out),
            // Only Drop takes the guard.
            None => unreachable!("node guard taken before drop"),
        }
    }
}

impl Deref for Held<'_> {
    type Target = Node;
    fn deref(&self) -> &Node {
        match self.node.as_deref() {
            Some(n) => n,
            None => unreachable!("node guard taken before drop"),
        }
    }
}

impl Drop for Held<'_> {
    /// Releases the node, then encrypts what it queued.
    fn drop(&mut self) {
        let held = self.since.elapsed();
        drop(self.node.take());
        self.out.node_held_ns += held.as_nanos() as u64;
        self.out.encrypt();
    }
}

/// Takes the node lock without an outbox (reports, tests).
pub fn lock(node: &Mutex<Node>) -> MutexGuard<'_, Node> {
    node.lock().unwrap_or_else(PoisonError::into_inner)
}
