//! Reloading the config (SIGHUP, `meshwire ctl reload [--dry-run]`), as
//! `wg syncconf` does for WireGuard: the file's peers and ports are brought
//! in line while everything else runs on. A peer added gets its tunnel and
//! its link into the mesh; a peer removed leaves both (its routes go at
//! once); a peer whose endpoint, address or keepalive changed is replaced
//! (only its own traffic sees the new handshake); a changed `mtu` is set
//! on its link. Ports are added, removed and get their policy keys. Every
//! other change is named and refused, never ignored. An invalid file
//! changes nothing and says which field is wrong.
//!
//! What a reload cannot apply (it needs a restart): the node's key,
//! addresses, port and workers; the mesh, control and metrics sections; a
//! port's MTU, offloads, coalescing, bridge or attached device. Those are listed
//! under `needs_restart`, logged as warnings, and the running values stay.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use tracing::{info, warn};

use super::{NewPort, Node, Outbox, State};
use crate::config::{self, PeerConfig, PortConfig, ValidPeer, Validated};
use crate::control::{PeerAction, PeerArgs};
use crate::keys;
use crate::tunnel::PeerSpec;

/// What a reload does (or, dry, would do).
#[derive(Debug, Default, Serialize)]
pub(super) struct Plan {
    pub ports_added: Vec<String>,
    pub ports_removed: Vec<String>,
    pub policies_changed: Vec<String>,
    /// Peers by public key (base64, as in the file).
    pub peers_added: Vec<String>,
    pub peers_removed: Vec<String>,
    /// Replaced: endpoint, address or keepalive changed.
    pub peers_changed: Vec<String>,
    /// Only their link's MTU changed (set in place).
    pub peers_mtu_changed: Vec<String>,
    /// Changed keys a reload does not apply: `peer[KEY].endpoint`,
    /// `node.listen_port`, ...
    pub needs_restart: Vec<String>,
    pub applied: bool,
}

impl State {
    /// SIGHUP: plan and apply; the outcome goes to the log.
    pub(super) fn reload(&mut self, node: &mut Node, out: &mut Outbox) {
        match self.reload_from_file(node, out, false) {
            Ok(plan) => {
                for key in &plan.needs_restart {
                    warn!(key = %key, "reload: changed, needs a restart (not applied)");
                }
                info!(
                    peers_added = plan.peers_added.len(),
                    peers_removed = plan.peers_removed.len(),
                    peers_changed = plan.peers_changed.len() + plan.peers_mtu_changed.len(),
                    ports_added = plan.ports_added.len(),
                    ports_removed = plan.ports_removed.len(),
                    policies_changed = plan.policies_changed.len(),
                    needs_restart = plan.needs_restart.len(),
                    "config reloaded"
                );
            }
            Err(e) => warn!("reload refused: {e}"),
        }
    }

    /// Reads the file, plans, and applies unless `dry`.
    pub(super) fn reload_from_file(
        &mut self,
        node: &mut Node,
        out: &mut Outbox,
        dry: bool,
    ) -> Result<Plan, String> {
        let cfg = config::load(&self.config_path)
            .map_err(|e| format!("{}: {e}", self.config_path.display()))?;
        let mut plan = self.plan(&cfg);
        if !dry {
            self.apply(node, out, cfg, &plan);
            plan.applied = true;
        }
        Ok(plan)
    }

    /// `ctl peer add|del|set`: the running config with that peer changed,
    /// checked as a file would be, and its peers applied.
    pub(super) fn peer_command(
        &mut self,
        node: &mut Node,
        action: &PeerAction,
    ) -> Result<Plan, String> {
        let mut raw = self.cfg.raw.clone();
        let (key, change) = match action {
            PeerAction::Add { public_key, keys } | PeerAction::Set { public_key, keys } => {
                (public_key, Some(keys))
            }
            PeerAction::Del { public_key } => (public_key, None),
        };
        let pk = keys::decode_key(key).map_err(|e| format!("PUBLIC_KEY: {e}"))?;
        let at = (raw.peers.iter()).position(|p| keys::decode_key(&p.public_key).ok() == Some(pk));
        match (action, at) {
            (PeerAction::Add { .. }, Some(_)) => return Err(format!("peer {key} exists")),
            (PeerAction::Add { keys, .. }, None) => raw.peers.push(PeerConfig {
                public_key: key.clone(),
                endpoint: keys.endpoint.clone(),
                address: keys.address.ok_or("--address: required for a new peer")?,
                persistent_keepalive: keys.persistent_keepalive,
                mtu: keys.mtu,
            }),
            (_, None) => return Err(format!("no peer {key}")),
            (PeerAction::Del { .. }, Some(i)) => {
                raw.peers.remove(i);
            }
            (PeerAction::Set { .. }, Some(i)) => {
                let (p, k) = (
                    &mut raw.peers[i],
                    change.unwrap_or(&PeerArgs::default()).clone(),
                );
                p.endpoint = k.endpoint.or(p.endpoint.take());
                p.address = k.address.unwrap_or(p.address);
                p.persistent_keepalive = k.persistent_keepalive.or(p.persistent_keepalive);
                p.mtu = k.mtu.or(p.mtu);
            }
        }
        let base = self
            .config_path
            .parent()
            .unwrap_or(std::path::Path::new("."));
        let new = config::check_raw(raw, base).map_err(|e| e.to_string())?;
        let mut plan = Plan::default();
        plan_peers(&self.cfg, &new, &mut plan);
        apply_peers(node, &new, &plan);
        self.cfg.raw.peers = new.raw.peers.clone();
        self.cfg.peers = new.peers.clone();
        plan.applied = true;
        Ok(plan)
    }

    fn plan(&self, cfg: &Validated) -> Plan {
        let wanted: BTreeSet<String> = cfg.raw.ports.iter().map(|p| p.name.clone()).collect();
        let mut plan = Plan {
            ports_removed: self.config_ports.difference(&wanted).cloned().collect(),
            needs_restart: needs_restart(&self.cfg, cfg),
            ..Plan::default()
        };
        plan_peers(&self.cfg, cfg, &mut plan);
        let running: HashMap<&str, &PortConfig> = (self.cfg.raw.ports.iter())
            .map(|p| (p.name.as_str(), p))
            .collect();
        for p in &cfg.raw.ports {
            if !self.config_ports.contains(&p.name) {
                plan.ports_added.push(p.name.clone());
                continue;
            }
            if self.file_specs.get(&p.name) != Some(&p.policy_spec()) {
                plan.policies_changed.push(p.name.clone());
            }
            if let Some(old) = running.get(p.name.as_str()) {
                port_restart_keys(old, p, &self.cfg, cfg, &mut plan.needs_restart);
            }
        }
        plan
    }

    fn apply(&mut self, node: &mut Node, out: &mut Outbox, mut cfg: Validated, plan: &Plan) {
        apply_peers(node, &cfg, plan);
        let ports = &mut out.ports;
        for gone in &plan.ports_removed {
            if let Err(e) = self.del_port(node, ports, gone) {
                warn!("reload: {e}");
            }
        }
        for p in &cfg.raw.ports {
            let spec = p.policy_spec();
            let access = p.vhost_access().unwrap_or_default();
            if plan.ports_added.contains(&p.name) || ports.id_by_name(&p.name).is_none() {
                let new = NewPort {
                    name: &p.name,
                    mtu: Some(cfg.port_mtu(p)),
                    offload: p.offload,
                    udp_coalescing: p.udp_coalescing,
                    attach: p.attach.as_deref(),
                    vhost_user: p.vhost_user.as_deref().map(|s| (s, access)),
                    bridge: p.bridge.as_deref(),
                    qmp: p.qmp.as_deref(),
                    policy: spec,
                };
                if let Err(e) = self.add_port(node, ports, &new) {
                    warn!("reload: {e}");
                }
            } else if plan.policies_changed.contains(&p.name) {
                if let Some(id) = ports.id_by_name(&p.name) {
                    if let Err(e) = self.set_policy(node, id, &p.name, spec) {
                        warn!("reload: {e}");
                    }
                }
            }
        }
        // `qmp` applies at once when it changed in the file: a watcher
        // starts, stops or moves (one `ctl port set --qmp` started stays
        // otherwise, as policies do).
        for p in &cfg.raw.ports {
            let old = (self.cfg.raw.ports.iter()).find(|o| o.name == p.name);
            if old.is_some_and(|o| o.qmp != p.qmp) && ports.id_by_name(&p.name).is_some() {
                if let Err(e) = self.watchers.set(&p.name, p.qmp.as_deref()) {
                    warn!("reload: {e}");
                }
            }
            // A vhost-user socket's group and mode too (checked with the
            // config); a connected guest stays connected.
            let access_changed = old.is_some_and(|o| {
                (o.vhost_user_group != p.vhost_user_group)
                    || (o.vhost_user_mode != p.vhost_user_mode)
            });
            if let (true, Some(id)) = (access_changed, ports.id_by_name(&p.name)) {
                let access = p.vhost_access().unwrap_or_default();
                if let Err(e) = ports.set_vhost_access(id, access) {
                    warn!("reload: port {}: vhost_user access: {e}", p.name);
                }
            }
        }
        self.file_specs = (cfg.raw.ports.iter())
            .map(|p| (p.name.clone(), p.policy_spec()))
            .collect();
        self.config_ports = cfg.raw.ports.iter().map(|p| p.name.clone()).collect();
        // What was not applied keeps its running value, so that the next
        // reload names it again.
        keep_running(&self.cfg, &mut cfg);
        self.cfg = cfg;
    }
}

/// The keys outside `[[port]]` whose change a reload does not apply.
fn needs_restart(old: &Validated, new: &Validated) -> Vec<String> {
    let mut v = Vec::new();
    let (o, n) = (&old.raw.node, &new.raw.node);
    let mut key = |changed: bool, name: &str| {
        if changed {
            v.push(name.to_string());
        }
    };
    key(old.public_key != new.public_key, "node.private_key");
    key(o.listen_port != n.listen_port, "node.listen_port");
    key(o.address != n.address, "node.address");
    key(o.underlay_mtu != n.underlay_mtu, "node.underlay_mtu");
    key(o.workers != n.workers, "node.workers");
    key(o.mss_clamp != n.mss_clamp, "node.mss_clamp");
    key(
        o.mac_flap_freeze_ms != n.mac_flap_freeze_ms,
        "node.mac_flap_freeze_ms",
    );
    // Whole sections, compared as parsed.
    let dbg =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    key(dbg(&old.raw.mesh, &new.raw.mesh), "mesh");
    key(dbg(&old.raw.control, &new.raw.control), "control");
    key(dbg(&old.raw.metrics, &new.raw.metrics), "metrics");
    v.sort();
    v
}

/// A running file port's keys that only a restart (or `port del` + `port
/// add`) changes.
fn port_restart_keys(
    old: &PortConfig,
    new: &PortConfig,
    oc: &Validated,
    nc: &Validated,
    v: &mut Vec<String>,
) {
    let name = &new.name;
    if oc.port_mtu(old) != nc.port_mtu(new) {
        v.push(format!("port[{name}].mtu"));
    }
    if old.offload != new.offload {
        v.push(format!("port[{name}].offload"));
    }
    if old.udp_coalescing != new.udp_coalescing {
        v.push(format!("port[{name}].udp_coalescing"));
    }
    if old.bridge != new.bridge {
        v.push(format!("port[{name}].bridge"));
    }
    if old.attach != new.attach {
        v.push(format!("port[{name}].attach"));
    }
    if old.vhost_user != new.vhost_user {
        v.push(format!("port[{name}].vhost_user"));
    }
}

/// Puts the running values back where the new config changed what a
/// reload does not apply: everything but the peers, the port list and
/// the policies.
fn keep_running(old: &Validated, new: &mut Validated) {
    let ports = std::mem::take(&mut new.raw.ports);
    let (raw_peers, peers) = (
        std::mem::take(&mut new.raw.peers),
        std::mem::take(&mut new.peers),
    );
    let running: HashMap<String, PortConfig> = (old.raw.ports.iter())
        .map(|p| (p.name.clone(), p.clone()))
        .collect();
    *new = old.clone();
    new.raw.peers = raw_peers;
    new.peers = peers;
    new.raw.ports = ports
        .into_iter()
        .map(|mut p| {
            if let Some(r) = running.get(&p.name) {
                // the port's device settings stay as they run
                p.mtu = r.mtu;
                p.offload = r.offload;
                p.udp_coalescing = r.udp_coalescing;
                p.attach = r.attach.clone();
                p.vhost_user = r.vhost_user.clone();
            }
            p
        })
        .collect();
}

/// Peers added, removed, replaced or with a new link MTU, by public key.
fn plan_peers(old: &Validated, new: &Validated, plan: &mut Plan) {
    let key = |p: &ValidPeer| keys::encode_key(&p.public_key);
    let running: HashMap<[u8; 32], &ValidPeer> =
        old.peers.iter().map(|p| (p.public_key, p)).collect();
    for (i, p) in new.peers.iter().enumerate() {
        match running.get(&p.public_key) {
            None => plan.peers_added.push(key(p)),
            Some(o) => {
                if (o.endpoint, o.address, o.persistent_keepalive)
                    != (p.endpoint, p.address, p.persistent_keepalive)
                {
                    plan.peers_changed.push(key(p));
                } else {
                    let j = old.peers.iter().position(|x| x.public_key == p.public_key);
                    if j.map(|j| old.peer_hardif_mtu(j)) != Some(new.peer_hardif_mtu(i)) {
                        plan.peers_mtu_changed.push(key(p));
                    }
                }
            }
        }
    }
    let wanted: std::collections::HashSet<[u8; 32]> =
        new.peers.iter().map(|p| p.public_key).collect();
    for p in old.peers.iter().filter(|p| !wanted.contains(&p.public_key)) {
        plan.peers_removed.push(key(p));
    }
}

/// Carries out the peer part of a plan: tunnels and mesh links.
fn apply_peers(node: &mut Node, cfg: &Validated, plan: &Plan) {
    let id_of = |node: &Node, k: &str| {
        keys::decode_key(k)
            .ok()
            .and_then(|k| node.tunnels.peer_id_of(&k))
    };
    for k in plan.peers_removed.iter().chain(&plan.peers_changed) {
        let Some(id) = id_of(node, k) else { continue };
        node.tunnels.remove_peer(id);
        node.bridge.remove_link(id);
        node.peers.retain(|p| p.0 != id);
        info!(peer = %k, "peer removed");
    }
    let fragmentation = cfg.raw.mesh.fragmentation;
    for (i, p) in cfg.peers.iter().enumerate() {
        let k = keys::encode_key(&p.public_key);
        let mtu = fragmentation.then_some(cfg.peer_hardif_mtu(i) as usize);
        if plan.peers_mtu_changed.contains(&k) {
            if let Some(id) = id_of(node, &k) {
                node.bridge.set_link_mtu(id, mtu);
            }
            continue;
        }
        if !plan.peers_added.contains(&k) && !plan.peers_changed.contains(&k) {
            continue;
        }
        let spec = PeerSpec {
            public_key: p.public_key,
            endpoint: p.endpoint,
            inner: p.address,
            persistent_keepalive: p.persistent_keepalive,
        };
        match node.tunnels.add_peer(&spec) {
            Ok(id) => {
                let mac = keys::hardif_mac(&node.public_key, &p.public_key);
                node.bridge.add_link(id, mac, mtu, &p.address.to_string());
                node.bridge
                    .set_link_owner(id, keys::originator_mac(&p.public_key));
                node.peers.push((id, p.address));
                info!(peer = %k, "peer added");
            }
            Err(e) => warn!(peer = %k, "reload: peer not added: {e}"),
        }
    }
}
