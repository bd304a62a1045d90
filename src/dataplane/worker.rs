//! Dataplane workers: one thread per core (`node.workers`), each with its
//! own I/O, sharing one `Node`.
//!
//! A worker owns
//! - its underlay socket: worker 0 a second handle on the first socket,
//!   every other worker a new member of the port's SO_REUSEPORT group. The
//!   kernel picks the socket by a hash of the 4-tuple, so all datagrams of
//!   one peer reach one worker, in order;
//! - its queue of every TAP (IFF_MULTI_QUEUE). The kernel picks the queue
//!   by flow hash, so all frames of one flow reach one worker, in order;
//! - its send batch, its TAP write and coalescing batches, its buffers.
//!
//! The system calls (recvmmsg, TAP reads, sendmmsg, TAP writes) run
//! outside any lock, and so does WireGuard: a worker decrypts a batch
//! under the lock of one peer at a time, hands the frames to the mesh and
//! the switch under the node lock (once per batch: up to 32 recvmmsg
//! entries or one TAP read batch, never per packet), and encrypts what
//! the node queued after releasing it. It holds the node through
//! [`Held`](super::held::Held), which hands the bridge the worker's own
//! [`Outbox`], so whatever the node sends joins the worker's own batches.
//!
//! Order per flow holds: a flow enters through one queue or one socket,
//! so one worker handles it, and that worker's batches keep its order.
//! Encryption counters of one peer may leave two workers' batches
//! interleaved, by at most a send batch (64 messages) per worker; the
//! receiver's replay window (8192 messages in the kernel, 1024 in
//! boringtun) takes that, as it takes reordering on the wire.
//!
//! Different peers' crypto runs on different cores at once. What a single
//! busy peer cannot get here: its WireGuard state is one boringtun `Tunn`
//! taking `&mut self`, so its messages are sealed and opened one at a
//! time under its lock. Spreading one peer's crypto over cores needs a
//! session handle that can seal with shared access; boringtun 0.7 keeps
//! its sessions private.
//!
//! Worker 0 (the daemon's thread, `super::run`) also runs the timers, the
//! control requests and the signals; it tells the others about ports that
//! come and go through their inboxes.

use std::io;
use std::os::fd::RawFd;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::warn;

use super::frames::Frames;
use super::held::{Held, Outbox};
use super::{Node, PORT_BATCHES, TOKEN_PORT, TOKEN_TUNNEL};
use crate::port::{PortCounters, PortId, PortRx, Ports, Queue};
use crate::sys::epoll::Epoll;
use crate::sys::eventfd::EventFd;
use crate::tunnel::{TunnelCore, TunnelCounters, TunnelIo, MAX_BATCHES_PER_CALL, RX_BATCH};

const TOKEN_INBOX: u64 = 3;
/// How often a worker publishes its counters for `ctl` (the figures of
/// workers other than 0 are at most this old).
const PUBLISH_EVERY: Duration = Duration::from_millis(20);
/// How long an idle worker sleeps when it has nothing to publish.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// How long worker 0 waits for the others to close a removed port's queue.
const DETACH_WAIT: Duration = Duration::from_secs(2);

/// What a worker did, for `ctl stats` (and its queues' counters, which
/// `ctl ports` adds up).
#[derive(Debug, Default, Clone, Serialize)]
pub struct WorkerReport {
    pub worker: usize,
    /// Frames read from its queues of the ports.
    pub port_frames: u64,
    /// Datagrams read from its socket.
    pub tunnel_datagrams: u64,
    /// Times it took the node lock (about once per batch).
    pub node_locks: u64,
    /// Microseconds it waited for the node lock, and held it.
    pub node_wait_us: u64,
    pub node_held_us: u64,
    /// Frames the tunnels refused (no endpoint yet, too long...).
    pub tunnel_send_errors: u64,
    #[serde(skip)]
    pub ports: Vec<(PortId, PortCounters)>,
    /// What its own path counted (added to the node's in `ctl stats`).
    #[serde(skip)]
    pub tunnel: TunnelCounters,
}

/// The workers' last reports.
#[derive(Debug)]
pub struct Board {
    slots: Vec<Mutex<WorkerReport>>,
}

impl Board {
    pub fn new(workers: usize) -> Board {
        Board {
            slots: (0..workers.max(1))
                .map(|w| {
                    Mutex::new(WorkerReport {
                        worker: w,
                        ..WorkerReport::default()
                    })
                })
                .collect(),
        }
    }

    fn publish(&self, r: &WorkerReport) {
        if let Some(s) = self.slots.get(r.worker) {
            *s.lock().unwrap_or_else(PoisonError::into_inner) = r.clone();
        }
    }

    pub fn reports(&self) -> Vec<WorkerReport> {
        self.slots
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .collect()
    }
}

/// What worker 0 tells the others.
pub enum Command {
    /// A port was added: here is this worker's queue of it.
    AttachPort {
        id: PortId,
        queue: Queue,
        udp_coalescing: bool,
    },
    /// A port was removed: close the queue, then answer.
    DetachPort {
        id: PortId,
        done: mpsc::Sender<()>,
    },
    Stop,
}

/// A worker's mailbox: commands plus an eventfd its epoll watches.
pub struct Inbox {
    cmds: Mutex<Vec<Command>>,
    wake: EventFd,
}

impl Inbox {
    pub fn new() -> io::Result<Inbox> {
        Ok(Inbox {
            cmds: Mutex::new(Vec::new()),
            wake: EventFd::new()?,
        })
    }

    pub fn send(&self, cmd: Command) {
        self.cmds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(cmd);
        self.wake.notify();
    }

    fn drain(&self) -> Vec<Command> {
        self.wake.drain();
        std::mem::take(&mut *self.cmds.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn fd(&self) -> RawFd {
        self.wake.fd()
    }
}

/// One worker's I/O.
pub struct WorkerIo {
    /// Its transmit side, which the bridge writes into while it holds the node.
    pub out: Outbox,
    /// What this worker decrypted, for the node.
    inbound: Frames,
    rx: PortRx,
    report: WorkerReport,
    published: Instant,
    /// Counted something since the last publish.
    dirty: bool,
}

impl WorkerIo {
    pub fn new(worker: usize, tunnel: TunnelIo, ports: Ports, core: Arc<TunnelCore>) -> WorkerIo {
        WorkerIo {
            out: Outbox::new(ports, tunnel, core),
            inbound: Frames::default(),
            rx: PortRx::new(),
            report: WorkerReport {
                worker,
                ..WorkerReport::default()
            },
            published: Instant::now(),
            dirty: false,
        }
    }

    /// Holds the node with this worker's outbox (see [`Held`]).
    pub fn hold<'a>(&'a mut self, node: &'a Mutex<Node>) -> Held<'a> {
        self.report.node_locks += 1;
        Held::new(node, &mut self.out)
    }

    /// Reads the socket batch by batch (a bounded number): each batch is
    /// decrypted under the peers' locks only, then handed to the bridge
    /// under one hold of the node lock.
    pub fn tunnel_readable(&mut self, node: &Mutex<Node>, now: Instant) {
        for _ in 0..MAX_BATCHES_PER_CALL {
            let n = match self.out.tunnel.recv() {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Counted (tunnel rx_socket_errors); the next wake-up retries.
                Err(_) => return,
            };
            let inbound = &mut self.inbound;
            inbound.clear();
            let core = Arc::clone(self.out.core());
            let d = core.process_received(&mut self.out.tunnel, &mut |peer, frame| {
                inbound.push(peer, &[frame])
            });
            self.report.tunnel_datagrams += d as u64;
            if !self.inbound.is_empty() {
                self.report.node_locks += 1;
                let mut h = Held::new(node, &mut self.out);
                let (n, out) = h.parts();
                for (peer, frame) in self.inbound.iter() {
                    n.bridge.from_peer(now, peer, frame, out);
                }
            }
            if n < RX_BATCH {
                return;
            }
        }
    }

    /// Reads what this worker's queue of `port` has, a bounded number of
    /// batches, each switched under one hold of the node lock. An error
    /// other than "nothing more" means the queue is gone and is returned.
    pub fn port_readable(
        &mut self,
        node: &Mutex<Node>,
        now: Instant,
        port: PortId,
    ) -> io::Result<()> {
        for _ in 0..PORT_BATCHES {
            match self.out.ports.recv_batch(port, &mut self.rx) {
                Ok(_) => {
                    self.report.node_locks += 1;
                    let mut h = Held::new(node, &mut self.out);
                    let (n, out) = h.parts();
                    while let Some(frame) = self.rx.next_frame() {
                        n.bridge.from_port(now, port, frame, out);
                        self.report.port_frames += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Notes that this round did something worth publishing.
    pub fn mark_busy(&mut self) {
        self.dirty = true;
    }

    /// How long to sleep: short while counts wait to be published.
    fn wait_time(&self) -> Duration {
        if self.dirty {
            PUBLISH_EVERY
        } else {
            IDLE_WAIT
        }
    }

    /// Everything this round queued leaves: one sendmmsg, the TAP writes.
    pub fn flush(&mut self) {
        self.out.flush();
    }

    /// Publishes the counters when they are due (or now, with `force`).
    pub fn publish(&mut self, board: &Board, now: Instant, force: bool) {
        if !force && (!self.dirty || now.duration_since(self.published) < PUBLISH_EVERY) {
            return;
        }
        self.published = now;
        self.dirty = false;
        self.report.tunnel_send_errors = self.out.send_errors;
        self.report.node_wait_us = self.out.node_wait_ns / 1000;
        self.report.node_held_us = self.out.node_held_ns / 1000;
        self.report.ports.clear();
        self.report.ports.extend(self.out.ports.port_counters());
        self.report.tunnel = self.out.tunnel.counters().clone();
        board.publish(&self.report);
    }
}

/// Worker 0's handle on the others.
pub struct Crew {
    inboxes: Vec<Arc<Inbox>>,
    handles: Vec<JoinHandle<()>>,
}

impl Crew {
    /// Starts workers 1.. with the I/O prepared for them.
    pub fn spawn(
        node: &Arc<Mutex<Node>>,
        board: &Arc<Board>,
        ios: Vec<WorkerIo>,
    ) -> io::Result<Crew> {
        let mut crew = Crew {
            inboxes: Vec::new(),
            handles: Vec::new(),
        };
        for io in ios {
            let inbox = Arc::new(Inbox::new()?);
            let w = Worker {
                node: Arc::clone(node),
                board: Arc::clone(board),
                inbox: Arc::clone(&inbox),
                ep: Epoll::new()?,
                io,
            };
            let name = format!("meshwire-w{}", w.io.report.worker);
            let h = std::thread::Builder::new().name(name).spawn(move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.run()));
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!("worker failed: {e}");
                        std::process::exit(1);
                    }
                    // The node may be half-updated: no worker goes on.
                    Err(_) => std::process::exit(70),
                }
            })?;
            crew.inboxes.push(inbox);
            crew.handles.push(h);
        }
        Ok(crew)
    }

    /// Gives every worker its queue of the port worker 0 just opened.
    pub fn port_added(&self, ports: &Ports, id: PortId) {
        let udp_coalescing = ports.get(id).is_some_and(|p| p.udp_coalescing);
        for inbox in &self.inboxes {
            match ports.queue_for_worker(id) {
                Ok(queue) => inbox.send(Command::AttachPort {
                    id,
                    queue,
                    udp_coalescing,
                }),
                Err(e) => warn!(port = ports.name(id), "a worker's queue: {e}"),
            }
        }
    }

    /// Has every worker close its queue of a removed port, and waits (a
    /// bounded time) until they did: a TAP we created is gone once its last
    /// queue is closed, and `ctl port del` answers after that.
    pub fn port_removed(&self, id: PortId) {
        let (tx, rx) = mpsc::channel();
        for inbox in &self.inboxes {
            inbox.send(Command::DetachPort {
                id,
                done: tx.clone(),
            });
        }
        let deadline = Instant::now() + DETACH_WAIT;
        for _ in &self.inboxes {
            let left = deadline.saturating_duration_since(Instant::now());
            if rx.recv_timeout(left).is_err() {
                warn!(port = id, "a worker did not close its queue in time");
                return;
            }
        }
    }

    /// Stops the workers and waits for them.
    pub fn stop(&mut self) {
        for inbox in &self.inboxes {
            inbox.send(Command::Stop);
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Workers 1..: the data path only.
struct Worker {
    node: Arc<Mutex<Node>>,
    board: Arc<Board>,
    inbox: Arc<Inbox>,
    ep: Epoll,
    io: WorkerIo,
}

impl Worker {
    fn run(mut self) -> io::Result<()> {
        self.ep.add(self.inbox.fd(), TOKEN_INBOX)?;
        self.ep.add(self.io.out.tunnel.fd(), TOKEN_TUNNEL)?;
        let polled: Vec<(PortId, RawFd)> = self.polled_ports();
        for (id, fd) in polled {
            self.ep.add(fd, TOKEN_PORT + u64::from(id))?;
        }
        let mut ready = Vec::with_capacity(64);
        loop {
            self.ep.wait(self.io.wait_time(), &mut ready)?;
            let now = Instant::now();
            if !ready.is_empty() {
                self.io.mark_busy();
            }
            for &token in &ready {
                match token {
                    TOKEN_INBOX if !self.commands() => {
                        self.io.flush();
                        self.io.publish(&self.board, now, true);
                        return Ok(());
                    }
                    TOKEN_INBOX => {}
                    TOKEN_TUNNEL => self.io.tunnel_readable(&self.node, now),
                    t if t >= TOKEN_PORT => {
                        let port = (t - TOKEN_PORT) as PortId;
                        if let Err(e) = self.io.port_readable(&self.node, now, port) {
                            // Worker 0 sees the same on its queue and
                            // removes the port; this queue just closes.
                            warn!(port, "queue failed ({e}): closing it");
                            self.close_queue(port);
                        }
                    }
                    _ => {}
                }
            }
            self.io.flush();
            self.io.publish(&self.board, now, false);
        }
    }

    fn polled_ports(&self) -> Vec<(PortId, RawFd)> {
        let ports = &self.io.out.ports;
        ports
            .ids()
            .filter_map(|id| ports.poll_fd(id).map(|fd| (id, fd)))
            .collect()
    }

    fn close_queue(&mut self, id: PortId) {
        if let Some(fd) = self.io.out.ports.poll_fd(id) {
            self.ep.del(fd);
        }
        self.io.out.ports.remove(id);
    }

    /// Carries out worker 0's commands; false on Stop.
    fn commands(&mut self) -> bool {
        for cmd in self.inbox.drain() {
            match cmd {
                Command::AttachPort {
                    id,
                    queue,
                    udp_coalescing,
                } => {
                    let fd = queue.poll_fd();
                    self.io.out.ports.insert_queue(id, queue, udp_coalescing);
                    if let Some(fd) = fd {
                        if let Err(e) = self.ep.add(fd, TOKEN_PORT + u64::from(id)) {
                            warn!(port = id, "epoll: {e}");
                        }
                    }
                }
                Command::DetachPort { id, done } => {
                    self.close_queue(id);
                    let _ = done.send(());
                }
                Command::Stop => return false,
            }
        }
        true
    }
}
