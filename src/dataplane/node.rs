//! One node: the bridge (sans-I/O hub) and the tunnels, shared by the
//! workers behind one lock. What the bridge decides goes into the
//! [`Outbox`](super::held::Outbox) of the worker that holds the node.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::worker::Board;

use crate::bridge::{Bridge, Egress};
use crate::config::{RelayConfig, Validated};
use crate::keys;
use crate::mesh::{Mesh, MeshConfig, RelayMode};
use crate::port::{PortId, PortOptions, Ports};
use crate::switch::{Switch, SwitchConfig};
use crate::tunnel::{PeerId, Tunnels};
use crate::wire::{ipv4, ipv6, mtu, tcp, MacAddr};

/// The MSS that makes a TCP segment cross the smallest link whole, for
/// IPv4 and IPv6: the unfragmented port MTU minus the IP and TCP headers.
fn mss_clamp(cfg: &Validated) -> (u16, u16) {
    let smallest = (0..cfg.peers.len())
        .map(|i| cfg.peer_hardif_mtu(i))
        .min()
        .unwrap_or_else(|| cfg.hardif_mtu());
    let payload = mtu::unfragmented_port_mtu(usize::from(smallest));
    let mss = |ip: usize| u16::try_from(payload.saturating_sub(ip + tcp::HEADER_LEN)).unwrap_or(0);
    (mss(ipv4::HEADER_LEN), mss(ipv6::HEADER_LEN))
}

/// Handshake initiations without an answer after which a peer is dead
/// (boringtun retries every 5 s, so about 15 s).
const DEAD_HANDSHAKES: u32 = 3;

pub struct Node {
    pub public_key: [u8; 32],
    pub bridge: Bridge,
    pub tunnels: Tunnels,
    /// Each configured peer's id and inner address.
    pub peers: Vec<(PeerId, IpAddr)>,
    peer_timeout: Duration,
    /// Dataplane workers (`node.workers`).
    pub workers: usize,
    /// What each worker last reported (their own queues' counters).
    pub board: Arc<Board>,
}

impl Node {
    /// The node and the ports of the config, opened (for worker 0's I/O).
    pub fn new(cfg: &Validated) -> Result<(Node, Ports), String> {
        let public_key = cfg.public_key;
        let originator = keys::originator_mac(&public_key);
        let mesh = Mesh::new(MeshConfig {
            ogm_interval: Duration::from_millis(cfg.raw.mesh.originator_interval_ms),
            relay: match cfg.raw.mesh.relay {
                RelayConfig::Scoped => RelayMode::Scoped,
                RelayConfig::Kernel => RelayMode::Kernel,
            },
            dat: cfg.raw.mesh.distributed_arp_table,
            multicast: cfg.raw.mesh.multicast,
            start_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_millis() as u64),
            ..MeshConfig::new(originator)
        });
        let mut bridge = Bridge::new(mesh, Switch::new(SwitchConfig::default()));
        let freeze = cfg.raw.node.mac_flap_freeze_ms;
        bridge.set_mac_flap_freeze(Some(Duration::from_millis(freeze)));
        let workers = cfg.workers();
        let tunnels = Tunnels::with_reuse_port(cfg.tunnel_config(), workers > 1)
            .map_err(|e| format!("node.listen_port {}: {e}", cfg.raw.node.listen_port))?;
        let mut peers = Vec::with_capacity(cfg.peers.len());
        // The tunnels' ids for the config's peers, in config order.
        let ids = tunnels.peer_ids();
        for (i, (p, &id)) in cfg.peers.iter().zip(&ids).enumerate() {
            let mac = keys::hardif_mac(&public_key, &p.public_key);
            let mtu = cfg
                .raw
                .mesh
                .fragmentation
                .then_some(cfg.peer_hardif_mtu(i) as usize);
            bridge.add_link(id, mac, mtu, &p.address.to_string());
            // A meshwire peer's originator follows from its key; a kernel
            // peer's does not, and then this never matches an OGM.
            bridge.set_link_owner(id, keys::originator_mac(&p.public_key));
            peers.push((id, p.address));
        }
        bridge
            .hooks
            .set_mss_clamp(cfg.raw.node.mss_clamp.then(|| mss_clamp(cfg)));
        let mut ports = Ports::new();
        for p in &cfg.raw.ports {
            let opts = PortOptions {
                offload: p.offload,
                multi_queue: workers > 1,
            };
            let id = match (&p.attach, &p.vhost_user) {
                (_, Some(sock)) => {
                    let access = p
                        .vhost_access()
                        .map_err(|(k, e)| format!("port {}: {k}: {e}", p.name))?;
                    ports.open_vhost(&p.name, sock, access, cfg.port_mtu(p), p.offload)
                }
                (Some(dev), None) => ports.attach(&p.name, dev),
                (None, None) => {
                    crate::port::held::refuse_held(&p.name)
                        .map_err(|e| format!("port {}: {e}", p.name))?;
                    ports.open_with(&p.name, cfg.port_mtu(p), opts)
                }
            }
            .map_err(|e| format!("port {}: {e}", p.name))?;
            if let Some(br) = &p.bridge {
                ports
                    .join_bridge(id, br)
                    .map_err(|e| format!("port {}: {e}", p.name))?;
            }
            ports.set_udp_coalescing(id, p.udp_coalescing);
            bridge.hooks.set_policy(id, p.policy());
            bridge.add_port(id, &p.name);
        }
        let node = Node {
            public_key,
            bridge,
            tunnels,
            peers,
            peer_timeout: cfg.peer_timeout(),
            workers,
            board: Arc::new(Board::new(workers)),
        };
        Ok((node, ports))
    }

    pub fn originator(&self) -> MacAddr {
        self.bridge.originator()
    }

    /// Timers: OGMs and purges; with `tunnel_timers`, WireGuard handshakes,
    /// keepalives and link liveness; with `fdb_ageing`, MAC ageing.
    pub fn on_tick(
        &mut self,
        now: Instant,
        tunnel_timers: bool,
        fdb_ageing: bool,
        io: &mut impl Egress,
    ) {
        self.bridge.tick(now, fdb_ageing, io);
        if tunnel_timers {
            self.tunnels.tick();
            self.check_links();
        }
        // Timer traffic of the tunnels' own path leaves now.
        self.tunnels.flush();
    }

    /// WireGuard's view of each link goes to the bridge.
    fn check_links(&mut self) {
        for &(id, _) in &self.peers {
            let alive = self.tunnels.peer_alive(id, self.peer_timeout)
                && self.tunnels.handshake_attempts(id) < DEAD_HANDSHAKES;
            self.bridge.set_link_alive(id, alive);
        }
    }

    /// Whether a peer's link is in the mesh.
    pub fn link_up(&self, peer: PeerId) -> bool {
        self.bridge.link(peer).is_some_and(|l| l.up)
    }

    /// Opens (or creates) a TAP in worker 0's `ports`, or attaches to the
    /// existing device `attach`, and switches it.
    pub fn add_port(
        &mut self,
        ports: &mut Ports,
        name: &str,
        mtu: u16,
        offload: bool,
        attach: Option<&str>,
        vhost_user: Option<(&std::path::Path, crate::port::vhost::SocketAccess)>,
    ) -> Result<PortId, String> {
        if ports.id_by_name(name).is_some() {
            return Err(format!("port {name} exists"));
        }
        crate::config::check_ifname(name).map_err(|e| format!("port {name}: {e}"))?;
        let opts = PortOptions {
            offload,
            multi_queue: self.workers > 1,
        };
        let id = match (attach, vhost_user) {
            (_, Some((sock, access))) => ports.open_vhost(name, sock, access, mtu, offload),
            (Some(dev), None) => {
                crate::config::check_ifname(dev).map_err(|e| format!("--attach {dev}: {e}"))?;
                ports.attach(name, dev)
            }
            (None, None) => {
                // A running VM's TAP is attached to only when asked.
                crate::port::held::refuse_held(name).map_err(|e| format!("port {name}: {e}"))?;
                ports.open_with(name, mtu, opts)
            }
        }
        .map_err(|e| format!("port {name}: {e}"))?;
        self.bridge.add_port(id, name);
        Ok(id)
    }

    /// Stops switching a port: its MACs leave the FDB and the translation
    /// table, and a TAP we created goes away.
    pub fn remove_port(&mut self, ports: &mut Ports, name: &str) -> Result<PortId, String> {
        let id = ports
            .id_by_name(name)
            .ok_or_else(|| format!("no port {name}"))?;
        self.bridge.remove_port(id);
        ports.remove(id);
        Ok(id)
    }

    /// Test hook, `MESHWIRE_TEST_FILL="fdb=N,tt=M"` in the daemon's
    /// environment: N remote FDB entries (made-up MACs at made-up
    /// originators, 8000 each, within every cap) and M global
    /// translation-table entries, as a big mesh would leave, so tests and
    /// benches can measure what `ctl fdb` and the lock cost at the caps
    /// without 15 nodes. Logged loudly; never set it in production.
    pub fn test_fill(&mut self, spec: &str, now: Instant) -> Result<(usize, usize), String> {
        let (mut fdb, mut tt) = (0usize, 0usize);
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("MESHWIRE_TEST_FILL: '{part}' is not KEY=N"))?;
            let n: usize = v
                .parse()
                .map_err(|_| format!("MESHWIRE_TEST_FILL: '{v}' is not a number"))?;
            match k {
                "fdb" => fdb = n,
                "tt" => tt = n,
                _ => return Err(format!("MESHWIRE_TEST_FILL: unknown key '{k}'")),
            }
        }
        for i in 0..fdb {
            let orig = MacAddr::local_unicast([0x7c, 0, 0, 0, (i / 8000) as u8, 1]);
            let b = (i as u32).to_be_bytes();
            let mac = MacAddr::local_unicast([0x76, 0, b[0], b[1], b[2], b[3]]);
            self.bridge.switch.learn_from_tt(now, mac, 0, orig);
        }
        let tt_added = self.bridge.mesh.test_fill_tt(tt);
        Ok((self.bridge.switch.fdb_entries_len(), tt_added))
    }
}
