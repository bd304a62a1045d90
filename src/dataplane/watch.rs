//! What the daemon does with a qemu watcher's news (`crate::port::watch`), and
//! `ctl announce`, which the destination's claim shares.

use std::net::IpAddr;
use std::time::Instant;

use serde_json::{json, Value};
use tracing::{info, warn};

use super::{Node, Outbox, State};
use crate::control::CtlCommand;
use crate::port::watch::{Action, Note};
use crate::port::PortId;
use crate::wire::MacAddr;

impl State {
    /// `ctl announce` (and a watcher's claim): the bridge's FDB forgets the
    /// MAC behind a bridged port first, or it hands the VM's frames back to
    /// us; then the announcements. (frames sent, bridge entries removed)
    pub(super) fn announce(
        &mut self,
        node: &mut Node,
        out: &mut Outbox,
        port: &str,
        mac: Option<MacAddr>,
        ip: &[IpAddr],
        now: Instant,
    ) -> Result<(usize, usize), String> {
        let id = out
            .ports
            .id_by_name(port)
            .ok_or_else(|| format!("no port {port}"))?;
        let spec = self.specs.get(port);
        let forgotten = match mac.or(spec.and_then(|s| s.mac)) {
            Some(m) => out
                .ports
                .forget_in_bridge(id, &[m], spec.and_then(|s| s.vlan)),
            None => 0,
        };
        let sent = node.bridge.announce(now, id, mac, ip, out)?;
        Ok((sent, forgotten))
    }

    /// The MACs a watcher's action is about: the port's policy `mac` when
    /// it has one (a VM port), else what qemu reported, else (a source)
    /// the clients the port has.
    fn watch_macs(&self, node: &Node, id: PortId, note: &Note, now: Instant) -> Vec<MacAddr> {
        if let Some(m) = self.specs.get(&note.port).and_then(|s| s.mac) {
            return vec![m];
        }
        if !note.macs.is_empty() {
            return note.macs.clone();
        }
        // A source that could not name its NICs: the port's one client
        // (an uplink with several is not guessed at).
        let clients = node.bridge.switch.port_clients(now, id);
        if note.action == Action::Depart && clients.len() == 1 {
            return vec![clients[0].0];
        }
        Vec::new()
    }

    pub(super) fn watch_note(
        &mut self,
        node: &mut Node,
        out: &mut Outbox,
        note: &Note,
        now: Instant,
    ) {
        let Some(id) = out.ports.id_by_name(&note.port) else {
            return;
        };
        let macs = self.watch_macs(node, id, note, now);
        let port = note.port.as_str();
        match note.action {
            Action::Claim => {
                // The guest runs here: claimed as `ctl announce` would
                // (with the policy's addresses on a VM port, a RARP else).
                let own = self.specs.get(port).and_then(|s| s.mac);
                let targets: Vec<Option<MacAddr>> = if own.is_some() {
                    vec![None]
                } else {
                    macs.iter().copied().map(Some).collect()
                };
                if targets.is_empty() {
                    warn!(port, "migration: the guest runs here, but neither qemu nor the port's policy names its MAC: not claimed");
                }
                for m in targets {
                    match self.announce(node, out, port, m, &[], now) {
                        Ok((sent, _)) => {
                            info!(port, mac = ?m.or(own), sent, "migration: the guest runs here, claimed")
                        }
                        Err(e) => warn!(port, "migration: cannot claim the guest: {e}"),
                    }
                }
                node.bridge.dual_arrived(id, true);
            }
            Action::Expect => {
                info!(port, macs = ?macs, "migration: a guest is on its way here");
                node.bridge.dual_expect(now, id, &macs);
            }
            Action::Gone => node.bridge.dual_arrived(id, false),
            Action::Depart if macs.is_empty() => {
                warn!(port, "migration: the guest is leaving, but neither qemu nor the port names its MAC: no dual delivery");
            }
            Action::Depart => {
                info!(port, macs = ?macs, "migration: the guest is leaving; its frames go to both places until it is seen at the new one");
                node.bridge.dual_depart(now, id, &macs);
            }
            Action::Stopped => node.bridge.dual_stopped(now, id),
            Action::Stay => {
                info!(port, "migration: failed or cancelled, the guest stays");
                node.bridge.dual_stay(id);
            }
        }
    }

    /// `ctl ports` and `ctl stats` with the watchers' part.
    pub(super) fn watch_report(
        &self,
        node: &Node,
        out: &Outbox,
        cmd: &CtlCommand,
        now: Instant,
    ) -> Result<Value, String> {
        let mut v = super::report::answer(node, &out.ports, cmd, now)?;
        match (cmd, &mut v) {
            (CtlCommand::Stats, Value::Object(m)) => {
                m.insert("watch".into(), self.watchers.totals());
                let dual = serde_json::to_value(node.bridge.dual_counters());
                m.insert("migration".into(), dual.unwrap_or(Value::Null));
            }
            (CtlCommand::Ports, _) => self.ports_watched(node, out, &mut v),
            _ => {}
        }
        Ok(v)
    }

    /// `ctl ports`: each watched port's `qmp` object (connected, role,
    /// last event, counters) and its `migration` state.
    fn ports_watched(&self, node: &Node, out: &Outbox, v: &mut Value) {
        let Value::Array(list) = v else {
            return;
        };
        for p in list.iter_mut() {
            let Some(name) = p.get("name").and_then(Value::as_str).map(String::from) else {
                continue;
            };
            let Value::Object(m) = p else {
                continue;
            };
            if let Some(s) = self.watchers.status(&name) {
                m.insert("qmp".into(), serde_json::to_value(s).unwrap_or(Value::Null));
            }
            let state = out
                .ports
                .id_by_name(&name)
                .and_then(|id| node.bridge.dual_state(id));
            if let Some(state) = state {
                m.insert("migration".into(), json!(state));
            }
        }
    }
}
