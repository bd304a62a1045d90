//! The worker loop that moves packets between ports, switch, mesh and tunnel.
//!
//! Worker 0 runs here: one epoll over its socket, its queue of every TAP,
//! the control socket's wake-up fd and a signalfd; timers are the epoll
//! timeout. Workers 1.. (`worker.rs`) run the data path only, on their own
//! socket and queues, sharing the node behind one lock taken per batch.
//! Every decision is the bridge's (`crate::bridge`, sans I/O); this module
//! only moves packets and holds the node (`held.rs`).

#![forbid(unsafe_code)]

mod frames;
mod held;
mod mesh_report;
mod metrics;
mod node;
mod reload;
mod report;
#[cfg(test)]
mod tests;
mod watch;
mod worker;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tracing::{info, warn};

use crate::config::{PolicySpec, Validated};
use crate::control::server::ControlServer;
use crate::control::{CtlCommand, PortAction};
use crate::port::{PortId, Ports};

pub use held::{lock, Held, Outbox};
pub use node::Node;
pub use worker::{Board, WorkerReport};

use worker::{Crew, WorkerIo};

use crate::sys::epoll::{Epoll, Signals};

const TOKEN_SIGNAL: u64 = 1;
const TOKEN_CONTROL: u64 = 2;
const TOKEN_WATCH: u64 = 3;
/// Tunnel sockets are tokens TOKEN_TUNNEL..TOKEN_PORT.
pub(crate) const TOKEN_TUNNEL: u64 = 16;
/// Port `id` is token TOKEN_PORT + id.
pub(crate) const TOKEN_PORT: u64 = 1 << 32;

/// How often boringtun's timers run (handshake retries, keepalives).
const TUNNEL_TICK: Duration = Duration::from_millis(100);
/// How often the FDB is aged.
const FDB_TICK: Duration = Duration::from_secs(1);
/// Batches read from one TAP per wake-up (each up to a few 64 KB
/// super-frames or many small frames), so one busy VM cannot starve the rest.
pub(crate) const PORT_BATCHES: usize = 4;

/// The daemon, which is also worker 0: the shared node, worker 0's own
/// I/O, and the rest of its state.
struct Daemon {
    node: Arc<Mutex<Node>>,
    io: WorkerIo,
    st: State,
}

/// Worker 0's state beside the node and its I/O: event sources, the other
/// workers and where the config lives.
struct State {
    board: Arc<Board>,
    crew: Crew,
    ep: Epoll,
    cfg: Validated,
    config_path: PathBuf,
    /// Ports that came from the config file (a reload manages only these;
    /// ports added with `ctl port add` stay until `ctl port del`).
    config_ports: BTreeSet<String>,
    /// Ports added or removed while worker 0 held the node, for the other
    /// workers once it let go.
    port_events: Vec<PortEvent>,
    /// Each port's policy keys as last set (file or `ctl port`), for
    /// `ctl port set` to change some of them.
    specs: HashMap<String, PolicySpec>,
    /// The config file's policy keys of its ports: a reload applies a
    /// port's keys when they changed in the file, and leaves what `ctl
    /// port set` changed alone otherwise.
    file_specs: HashMap<String, PolicySpec>,
    /// The qemu watchers of ports with `qmp` (`crate::port::watch`).
    watchers: crate::port::watch::Watchers,
}

/// A port to open: from the config or from `ctl port add`.
struct NewPort<'a> {
    name: &'a str,
    /// None: the default for the underlay.
    mtu: Option<u16>,
    offload: bool,
    udp_coalescing: bool,
    /// An existing device to attach to instead of a TAP `name`.
    attach: Option<&'a str>,
    /// The unix socket of a vhost-user port (`port/vhost/`) and who may
    /// connect to it.
    vhost_user: Option<(&'a Path, crate::port::vhost::SocketAccess)>,
    /// The Linux bridge the port's TAP joins (`port/bridged.rs`).
    bridge: Option<&'a str>,
    /// The VM's QMP socket to watch (`crate::port::watch`).
    qmp: Option<&'a Path>,
    policy: PolicySpec,
}

enum PortEvent {
    Added(PortId),
    Removed(PortId),
}

pub fn run(cfg: Validated, config_path: &Path) -> Result<(), String> {
    // Before any thread exists, so that every thread inherits the mask.
    let signals = Signals::new().map_err(|e| format!("signalfd: {e}"))?;
    // The control socket first: a second daemon started by mistake on the
    // same config stops here, before it joins our UDP port's reuseport
    // group or touches our TAPs.
    let access = cfg.raw.control.access().map_err(|e| e.to_string())?;
    let control = ControlServer::start(&access)
        .map_err(|e| format!("control.socket {}: {e}", access.socket.display()))?;
    // The metrics port next, for the same reason (a port in use stops us
    // before any TAP exists).
    let exporter = start_metrics(&cfg)?;
    let (mut node, ports) = Node::new(&cfg)?;
    if let Ok(spec) = std::env::var("MESHWIRE_TEST_FILL") {
        let (fdb, tt) = node.test_fill(&spec, Instant::now())?;
        warn!(
            fdb,
            tt, "MESHWIRE_TEST_FILL: tables filled with made-up entries (a test hook)"
        );
    }
    let workers = node.workers;
    let board = Arc::clone(&node.board);
    // Worker 0 reads the first socket (through a second handle) and the
    // queues the node opened; the others get new members of the socket's
    // group and a further queue of every TAP.
    let io0 = WorkerIo::new(
        0,
        node.tunnels
            .new_io(false)
            .map_err(|e| format!("socket: {e}"))?,
        ports,
        Arc::clone(node.tunnels.core()),
    );
    let mut ios = Vec::with_capacity(workers.saturating_sub(1));
    for w in 1..workers {
        let t = node
            .tunnels
            .new_io(true)
            .map_err(|e| format!("worker {w}: node.listen_port: {e}"))?;
        let p = io0
            .out
            .ports
            .replica()
            .map_err(|e| format!("worker {w}: a queue of the ports: {e}"))?;
        ios.push(WorkerIo::new(w, t, p, Arc::clone(node.tunnels.core())));
    }
    if workers > 1 {
        // Peers dealt out evenly over the workers instead of by hash.
        if let Err(e) = node.tunnels.steer_peers(workers) {
            warn!("reuseport steering: {e} (the kernel's hash spreads peers instead)");
        }
    }
    let node = Arc::new(Mutex::new(node));
    let crew = Crew::spawn(&node, &board, ios).map_err(|e| format!("workers: {e}"))?;
    let ep = Epoll::new().map_err(|e| format!("epoll: {e}"))?;
    ep.add(signals.fd(), TOKEN_SIGNAL)
        .map_err(|e| e.to_string())?;
    ep.add(control.fd(), TOKEN_CONTROL)
        .map_err(|e| e.to_string())?;
    let mut watchers = crate::port::watch::Watchers::new().map_err(|e| format!("eventfd: {e}"))?;
    ep.add(watchers.fd(), TOKEN_WATCH)
        .map_err(|e| e.to_string())?;
    for p in &cfg.raw.ports {
        watchers.set(&p.name, p.qmp.as_deref())?;
    }
    ep.add(io0.out.tunnel.fd(), TOKEN_TUNNEL)
        .map_err(|e| e.to_string())?;
    let mut d = Daemon {
        node,
        io: io0,
        st: State {
            config_ports: cfg.raw.ports.iter().map(|p| p.name.clone()).collect(),
            board,
            crew,
            ep,
            cfg,
            config_path: config_path.to_path_buf(),
            port_events: Vec::new(),
            specs: HashMap::new(),
            file_specs: HashMap::new(),
            watchers,
        },
    };
    for p in &d.st.cfg.raw.ports {
        d.st.specs.insert(p.name.clone(), p.policy_spec());
        d.st.file_specs.insert(p.name.clone(), p.policy_spec());
    }
    let ids: Vec<PortId> = d.io.out.ports.ids().collect();
    for id in ids {
        d.st.watch_port(&d.io.out.ports, id)?;
    }
    info!(
        originator = %lock(&d.node).originator(),
        peers = d.st.cfg.peers.len(),
        ports = d.st.cfg.raw.ports.len(),
        workers,
        listen_port = d.st.cfg.raw.node.listen_port,
        "meshwire running"
    );
    if let Some(e) = &exporter {
        let copy = {
            let mut h = d.io.hold(&d.node);
            let (n, out) = h.parts();
            metrics::copy(n, &out.ports)
        };
        e.publish(copy.finish());
    }
    // Ports, sockets, workers and the metrics endpoint are up.
    crate::service::ready(&format!(
        "{} peers, {} ports, {workers} workers",
        d.st.cfg.peers.len(),
        d.st.cfg.raw.ports.len()
    ));
    let mut watchdog = crate::service::Watchdog::from_env(Instant::now());

    let mut ready = Vec::with_capacity(64);
    let start = Instant::now();
    let mut next_tunnel_tick = start;
    let mut next_fdb_tick = start + FDB_TICK;
    let mut mesh_deadline = start;
    let node = Arc::clone(&d.node);
    loop {
        let now = Instant::now();
        let mut deadline = mesh_deadline.min(next_tunnel_tick).min(next_fdb_tick);
        if let Some(w) = watchdog.deadline() {
            deadline = deadline.min(w);
        }
        d.st.ep
            .wait(deadline.saturating_duration_since(now), &mut ready)
            .map_err(|e| format!("epoll_wait: {e}"))?;
        let now = Instant::now();
        if !ready.is_empty() {
            d.io.mark_busy();
        }
        for &token in &ready {
            match token {
                TOKEN_SIGNAL => match signals.read() {
                    Some(libc::SIGHUP) => {
                        crate::service::reloading();
                        d.with_node(|st, n, out| st.reload(n, out));
                        crate::service::reloaded();
                    }
                    Some(sig) => {
                        info!(signal = sig, "shutting down");
                        crate::service::stopping();
                        d.st.crew.stop();
                        d.io.flush();
                        return Ok(());
                    }
                    None => {}
                },
                TOKEN_CONTROL => {
                    let reqs = control.drain();
                    let held_from = Instant::now();
                    // Big reports leave as a copy, rendered by the client's
                    // thread after the node is let go.
                    let replies: Vec<_> = d.with_node(|st, n, out| {
                        reqs.iter()
                            .map(|req| match report::snapshot(n, &req.cmd, now) {
                                Some(render) => Err(render),
                                None => Ok(st.control(n, out, &req.cmd, now)),
                            })
                            .collect()
                    });
                    let held = held_from.elapsed();
                    // What a report costs the workers (`RUST_LOG=meshwire::dataplane=debug`).
                    tracing::debug!(
                        held_us = held.as_micros() as u64,
                        requests = reqs.len(),
                        "control: node held"
                    );
                    // After the other workers caught up with port changes.
                    for (req, r) in reqs.into_iter().zip(replies) {
                        match r {
                            Ok(mut r) => {
                                if let (CtlCommand::Stats, Ok(Value::Object(m))) =
                                    (&req.cmd, &mut r)
                                {
                                    m.insert("control".into(), json!(control.stats()));
                                }
                                req.reply(r)
                            }
                            Err(render) => req.reply_later(render),
                        }
                    }
                }
                TOKEN_WATCH => {
                    let notes = d.st.watchers.drain();
                    if !notes.is_empty() {
                        d.with_node(|st, n, out| {
                            for note in &notes {
                                st.watch_note(n, out, note, Instant::now());
                            }
                        });
                    }
                }
                TOKEN_TUNNEL => d.io.tunnel_readable(&node, now),
                t if t >= TOKEN_PORT => {
                    let port = (t - TOKEN_PORT) as PortId;
                    if let Err(e) = d.io.port_readable(&node, now, port) {
                        d.with_node(|st, n, out| st.port_failed(n, out, port, &e));
                    }
                }
                _ => {}
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
        if fdb_due {
            // Attached devices that went away (a VM restart) are looked
            // for again; the port and its MACs stay meanwhile.
            d.io.out.ports.reattach();
        }
        let mut metrics_copy = None;
        if tunnel_due || fdb_due || now >= mesh_deadline {
            let mut h = d.io.hold(&node);
            let (n, out) = h.parts();
            n.on_tick(now, tunnel_due, fdb_due, out);
            mesh_deadline = n.bridge.next_deadline();
            if fdb_due && exporter.is_some() {
                metrics_copy = Some(metrics::copy(n, &out.ports));
            }
        } else {
            // Frames sent from the data path can move the mesh's next
            // deadline (an out-of-cycle OGM after a claim).
            mesh_deadline = lock(&node).bridge.next_deadline();
        }
        if let (Some(c), Some(e)) = (metrics_copy, &exporter) {
            e.publish(c.finish());
        }
        d.io.flush();
        d.io.publish(&d.st.board, now, false);
        watchdog.tick(now);
    }
}

/// Binds `[metrics] listen` and starts its thread; None when absent.
fn start_metrics(cfg: &Validated) -> Result<Option<Arc<crate::metrics::Exporter>>, String> {
    let Some(addr) = cfg.raw.metrics.listen_addr().map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let exporter = Arc::new(crate::metrics::Exporter::default());
    let bound = crate::metrics::http::start(addr, Arc::clone(&exporter))
        .map_err(|e| format!("metrics.listen {addr}: {e}"))?;
    info!(%bound, "metrics at http://{bound}/metrics");
    Ok(Some(exporter))
}

impl Daemon {
    /// Runs `f` with the node held with worker 0's outbox (see `Held`),
    /// then tells the other workers about ports that came or went.
    fn with_node<R>(&mut self, f: impl FnOnce(&mut State, &mut Node, &mut Outbox) -> R) -> R {
        let r = {
            let mut h = Held::new(&self.node, &mut self.io.out);
            let (n, out) = h.parts();
            f(&mut self.st, n, out)
        };
        for e in std::mem::take(&mut self.st.port_events) {
            match e {
                PortEvent::Added(id) => self.st.crew.port_added(&self.io.out.ports, id),
                PortEvent::Removed(id) => self.st.crew.port_removed(id),
            }
        }
        r
    }
}

impl State {
    fn watch_port(&self, ports: &Ports, id: PortId) -> Result<(), String> {
        let fd = ports.poll_fd(id).ok_or("port vanished")?;
        self.ep
            .add(fd, TOKEN_PORT + id as u64)
            .map_err(|e| format!("epoll: {e}"))
    }

    fn add_port(
        &mut self,
        node: &mut Node,
        ports: &mut Ports,
        p: &NewPort<'_>,
    ) -> Result<PortId, String> {
        let (name, mtu) = (p.name, p.mtu.unwrap_or_else(|| self.cfg.default_port_mtu()));
        let policy = p
            .policy
            .resolve(&format!("port {name}"))
            .map_err(|e| e.to_string())?;
        let id = node.add_port(ports, name, mtu, p.offload, p.attach, p.vhost_user)?;
        if let Some(br) = p.bridge {
            if let Err(e) = ports.join_bridge(id, br) {
                let _ = node.remove_port(ports, name);
                return Err(format!("port {name}: {e}"));
            }
        }
        node.bridge.hooks.set_policy(id, policy);
        self.specs.insert(name.to_string(), p.policy.clone());
        ports.set_udp_coalescing(id, p.udp_coalescing);
        if let Err(e) = self.watchers.set(name, p.qmp) {
            warn!("{e}");
        }
        if let Err(e) = self.watch_port(ports, id) {
            let _ = node.remove_port(ports, name);
            return Err(e);
        }
        self.port_events.push(PortEvent::Added(id));
        info!(port = name, mtu, "port added");
        Ok(id)
    }

    fn del_port(
        &mut self,
        node: &mut Node,
        ports: &mut Ports,
        name: &str,
    ) -> Result<PortId, String> {
        if let Some(fd) = ports.id_by_name(name).and_then(|id| ports.poll_fd(id)) {
            self.ep.del(fd);
        }
        let id = node.remove_port(ports, name)?;
        self.specs.remove(name);
        let _ = self.watchers.set(name, None);
        self.port_events.push(PortEvent::Removed(id));
        info!(port = name, "port removed");
        Ok(id)
    }

    /// Checks and applies a port's policy keys (nothing changes on error).
    fn set_policy(
        &mut self,
        node: &mut Node,
        id: PortId,
        name: &str,
        spec: PolicySpec,
    ) -> Result<(), String> {
        let policy = spec
            .resolve(&format!("port {name}"))
            .map_err(|e| e.to_string())?;
        node.bridge.hooks.set_policy(id, policy);
        self.specs.insert(name.to_string(), spec);
        info!(port = name, "port policy set");
        Ok(())
    }

    /// A port whose TAP failed for good leaves the switch and the mesh.
    fn port_failed(&mut self, node: &mut Node, out: &mut Outbox, port: PortId, e: &std::io::Error) {
        let Some(name) = out.ports.name(port).map(String::from) else {
            return;
        };
        warn!(port = %name, "port failed ({e}): removing it");
        if let Err(e) = self.del_port(node, &mut out.ports, &name) {
            warn!("{e}");
        }
    }

    fn control(
        &mut self,
        node: &mut Node,
        out: &mut Outbox,
        cmd: &CtlCommand,
        now: Instant,
    ) -> Result<Value, String> {
        match cmd {
            CtlCommand::Port { action } => match action {
                PortAction::Add {
                    name,
                    mtu,
                    attach,
                    bridge,
                    vhost_user,
                    vhost_user_group,
                    vhost_user_mode,
                    qmp,
                    policy,
                } => {
                    let access = crate::control::vhost_access(
                        vhost_user_group.as_deref(),
                        vhost_user_mode.as_deref(),
                    )?;
                    let p = NewPort {
                        name,
                        mtu: *mtu,
                        offload: true,
                        udp_coalescing: false,
                        attach: attach.as_deref(),
                        vhost_user: vhost_user.as_deref().map(|s| (s, access)),
                        bridge: bridge.as_deref(),
                        qmp: qmp.as_deref().filter(|q| !q.as_os_str().is_empty()),
                        policy: policy.spec(),
                    };
                    self.add_port(node, &mut out.ports, &p)
                }
                .map(|id| json!(format!("port {name} added (id {id})"))),
                PortAction::Del { name } => self
                    .del_port(node, &mut out.ports, name)
                    .map(|_| json!(format!("port {name} removed"))),
                PortAction::Set { name, qmp, policy } => {
                    let id = out
                        .ports
                        .id_by_name(name)
                        .ok_or_else(|| format!("no port {name}"))?;
                    if let Some(q) = qmp {
                        let q = Some(q.as_path()).filter(|q| !q.as_os_str().is_empty());
                        self.watchers.set(name, q)?;
                        if policy == &crate::control::PolicyArgs::default() {
                            return Ok(json!(format!("port {name}: qmp set")));
                        }
                    }
                    let spec = self.specs.get(name).cloned().unwrap_or_default();
                    self.set_policy(node, id, name, spec.merged(&policy.spec()))
                        .map(|()| json!(format!("port {name}: policy set")))
                }
            },
            CtlCommand::Announce { port, mac, ip } => {
                let (sent, forgotten) = self.announce(node, out, port, *mac, ip, now)?;
                Ok(json!(if forgotten > 0 {
                    format!("{sent} announcement(s) sent from {port} (removed from its bridge's FDB first)")
                } else {
                    format!("{sent} announcement(s) sent from {port}")
                }))
            }
            CtlCommand::IcmpSend {
                dest,
                ttl,
                uid,
                seqno,
            } => {
                let orig = node
                    .bridge
                    .icmp_probe(now, *dest, *ttl, *uid, *seqno, out)?;
                Ok(json!({ "originator": orig }))
            }
            CtlCommand::IcmpPoll { uid, seqno } => {
                Ok(json!(node.bridge.mesh.icmp_answer(*uid, *seqno)))
            }
            CtlCommand::Peer { action } => {
                let plan = self.peer_command(node, action)?;
                Ok(serde_json::to_value(&plan).unwrap_or(Value::Null))
            }
            CtlCommand::EventsSince { since } => {
                Ok(serde_json::to_value(node.bridge.events_since(*since)).unwrap_or(Value::Null))
            }
            CtlCommand::Ping { .. } | CtlCommand::Traceroute { .. } | CtlCommand::Event { .. } => {
                Err("ping, traceroute and event run in `meshwire ctl` (icmp-send/icmp-poll, events-since)".into())
            }
            CtlCommand::Reload { dry_run } => {
                if !dry_run {
                    crate::service::reloading();
                }
                let plan = self.reload_from_file(node, out, *dry_run);
                if !dry_run {
                    crate::service::reloaded();
                }
                let plan = plan?;
                for key in &plan.needs_restart {
                    if !dry_run {
                        warn!(key = %key, "reload: changed, needs a restart (not applied)");
                    }
                }
                Ok(serde_json::to_value(&plan).unwrap_or(Value::Null))
            }
            CtlCommand::LogLevel { filter } => {
                let now_in_force = match filter {
                    Some(f) => {
                        let f = crate::log::set_filter(f)?;
                        info!(filter = %f, "log filter changed");
                        f
                    }
                    None => crate::log::filter().ok_or("logging is not set up")?,
                };
                Ok(json!({ "filter": now_in_force }))
            }
            // With the watchers' state (`watch.rs`).
            CtlCommand::Ports | CtlCommand::Stats => self.watch_report(node, out, cmd, now),
            other => report::answer(node, &out.ports, other, now),
        }
    }
}
