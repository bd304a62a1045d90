//! A [`Snapshot`] as Prometheus text (exposition format 0.0.4), encoded by
//! prometheus-client. Metric names are a contract (dashboards, alerts):
//! extend, never rename. `docs/operations.md` lists them.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Map, Value};

use super::Snapshot;

type Labels = Vec<(String, String)>;
type Counters = Family<Labels, Counter>;
type Gauges = Family<Labels, Gauge>;
type FGauges = Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>;
type FCounters = Family<Labels, Counter<f64, std::sync::atomic::AtomicU64>>;

/// Every metric name this module can export, with its type: the Grafana
/// dashboard and the operations guide are checked against this list.
pub const NAMES: &[(&str, &str)] = &[
    ("meshwire_info", "gauge"),
    ("meshwire_snapshot_age_seconds", "gauge"),
    ("meshwire_peers", "gauge"),
    ("meshwire_peers_up", "gauge"),
    ("meshwire_peer_link_up", "gauge"),
    ("meshwire_peer_session_up", "gauge"),
    ("meshwire_peer_rx_bytes_total", "counter"),
    ("meshwire_peer_tx_bytes_total", "counter"),
    ("meshwire_peer_rx_frames_total", "counter"),
    ("meshwire_peer_tx_frames_total", "counter"),
    ("meshwire_peer_handshakes_total", "counter"),
    ("meshwire_peer_handshake_attempts", "gauge"),
    ("meshwire_peer_last_handshake_timestamp_seconds", "gauge"),
    ("meshwire_peer_handshake_age_seconds", "gauge"),
    ("meshwire_ports", "gauge"),
    ("meshwire_port_mtu", "gauge"),
    ("meshwire_port_rx_frames_total", "counter"),
    ("meshwire_port_tx_frames_total", "counter"),
    ("meshwire_port_rx_bytes_total", "counter"),
    ("meshwire_port_tx_bytes_total", "counter"),
    ("meshwire_port_drops_total", "counter"),
    ("meshwire_fdb_entries", "gauge"),
    ("meshwire_tt_local_entries", "gauge"),
    ("meshwire_tt_global_entries", "gauge"),
    ("meshwire_originators", "gauge"),
    ("meshwire_ogm_sent_total", "counter"),
    ("meshwire_ogm_received_total", "counter"),
    ("meshwire_vm_moves_total", "counter"),
    ("meshwire_fragments_total", "counter"),
    ("meshwire_worker_node_locks_total", "counter"),
    ("meshwire_worker_port_frames_total", "counter"),
    ("meshwire_worker_tunnel_datagrams_total", "counter"),
    ("meshwire_worker_node_wait_seconds_total", "counter"),
    ("meshwire_worker_node_held_seconds_total", "counter"),
    ("meshwire_stat", "gauge"),
];

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn u(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_u64).unwrap_or(0)
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `name` without `_total`, as prometheus-client takes counter names.
fn base(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

struct Reg {
    r: Registry,
}

impl Reg {
    fn counter(&mut self, name: &str, help: &str) -> Counters {
        let f = Counters::default();
        self.r.register(base(name), help, f.clone());
        f
    }
    fn fcounter(&mut self, name: &str, help: &str) -> FCounters {
        let f = FCounters::default();
        self.r.register(base(name), help, f.clone());
        f
    }
    fn gauge(&mut self, name: &str, help: &str) -> Gauges {
        let f = Gauges::default();
        self.r.register(name, help, f.clone());
        f
    }
    fn fgauge(&mut self, name: &str, help: &str) -> FGauges {
        let f = FGauges::default();
        self.r.register(name, help, f.clone());
        f
    }
}

/// The exposition text of `s`, ages counted to `now`.
pub fn render(s: &Snapshot, now: SystemTime) -> String {
    let mut reg = Reg {
        r: Registry::default(),
    };
    let info = reg.gauge(
        "meshwire_info",
        "Always 1: the daemon's version and originator MAC as labels",
    );
    info.get_or_create(&labels(&[
        ("version", env!("CARGO_PKG_VERSION")),
        ("originator", &s.originator),
    ]))
    .set(1);
    let age = reg.fgauge(
        "meshwire_snapshot_age_seconds",
        "Age of the copy this scrape shows (worker 0 takes one per second)",
    );
    age.get_or_create(&vec![])
        .set(now.duration_since(s.taken).map_or(0.0, |d| d.as_secs_f64()));
    peers(&mut reg, &s.peers, now);
    ports(&mut reg, &s.ports);
    let sizes = [
        ("meshwire_fdb_entries", "MAC table entries", s.sizes.fdb),
        (
            "meshwire_tt_local_entries",
            "Local translation table entries (clients this node announces)",
            s.sizes.tt_local,
        ),
        (
            "meshwire_tt_global_entries",
            "Global translation table entries (clients of other originators)",
            s.sizes.tt_global,
        ),
        (
            "meshwire_originators",
            "Originators (batman-adv nodes) known",
            s.sizes.originators,
        ),
    ];
    for (name, help, n) in sizes {
        reg.gauge(name, help)
            .get_or_create(&vec![])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    stats(&mut reg, &s.stats);
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_text::encode(&mut text, &reg.r);
    text
}

fn peers(reg: &mut Reg, peers: &Value, now: SystemTime) {
    let list = peers.as_array().map(Vec::as_slice).unwrap_or(&[]);
    let up = list
        .iter()
        .filter(|p| p.get("link_up").and_then(Value::as_bool) == Some(true))
        .count();
    reg.gauge("meshwire_peers", "Configured WireGuard peers")
        .get_or_create(&vec![])
        .set(list.len() as i64);
    reg.gauge(
        "meshwire_peers_up",
        "Peers whose link is in the mesh (authenticated traffic within mesh.peer_timeout_ms)",
    )
    .get_or_create(&vec![])
    .set(up as i64);
    let link_up = reg.gauge(
        "meshwire_peer_link_up",
        "1 while the peer's link is in the mesh",
    );
    let session_up = reg.gauge(
        "meshwire_peer_session_up",
        "1 while a WireGuard session exists (under 180 s old)",
    );
    let counters = [
        (
            "rx_bytes",
            reg.counter(
                "meshwire_peer_rx_bytes_total",
                "WireGuard bytes received authenticated (wg show transfer)",
            ),
        ),
        (
            "tx_bytes",
            reg.counter(
                "meshwire_peer_tx_bytes_total",
                "WireGuard bytes sent (wg show transfer)",
            ),
        ),
        (
            "rx_frames",
            reg.counter(
                "meshwire_peer_rx_frames_total",
                "Ethernet frames received from the peer",
            ),
        ),
        (
            "tx_frames",
            reg.counter(
                "meshwire_peer_tx_frames_total",
                "Ethernet frames encrypted and sent to the peer",
            ),
        ),
        (
            "handshakes",
            reg.counter(
                "meshwire_peer_handshakes_total",
                "WireGuard handshakes completed",
            ),
        ),
    ];
    let attempts = reg.gauge(
        "meshwire_peer_handshake_attempts",
        "Handshake initiations since the peer last answered (grows while it is unreachable)",
    );
    let last = reg.gauge(
        "meshwire_peer_last_handshake_timestamp_seconds",
        "Unix time of the last completed handshake (absent: none yet)",
    );
    let age = reg.gauge(
        "meshwire_peer_handshake_age_seconds",
        "Seconds since the last completed handshake (absent: none yet)",
    );
    let unix_now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    for p in list {
        let key = p.get("public_key").and_then(Value::as_str).unwrap_or("");
        let addr = p.get("address").and_then(Value::as_str).unwrap_or("");
        let l = labels(&[("peer", key), ("address", addr)]);
        let b = |k: &str| p.get(k).and_then(Value::as_bool) == Some(true);
        link_up.get_or_create(&l).set(i64::from(b("link_up")));
        session_up.get_or_create(&l).set(i64::from(b("session_up")));
        for (k, f) in &counters {
            f.get_or_create(&l).inc_by(u(p.get(*k)));
        }
        attempts
            .get_or_create(&l)
            .set(i(u(p.get("handshake_attempts"))));
        if let Some(t) = p.get("last_handshake").and_then(Value::as_u64) {
            last.get_or_create(&l).set(i(t));
            age.get_or_create(&l).set(i(unix_now.saturating_sub(t)));
        }
    }
}

/// A port counter that counts a loss, and the reason label it gets.
fn drop_reason(key: &str) -> Option<&str> {
    if key.ends_with("_errors") {
        return Some(key);
    }
    if key.starts_with("rx_drop_") || key.starts_with("tx_drop_") {
        return Some(key);
    }
    key.strip_prefix("drop_")
}

fn ports(reg: &mut Reg, ports: &Value) {
    let list = ports.as_array().map(Vec::as_slice).unwrap_or(&[]);
    reg.gauge("meshwire_ports", "Ports (TAPs and attached devices)")
        .get_or_create(&vec![])
        .set(list.len() as i64);
    let mtu = reg.gauge("meshwire_port_mtu", "The port's MTU");
    let counters = [
        (
            "rx_frames",
            reg.counter(
                "meshwire_port_rx_frames_total",
                "Frames read from the port (VM to mesh), all workers",
            ),
        ),
        (
            "tx_frames",
            reg.counter(
                "meshwire_port_tx_frames_total",
                "Frames written to the port (mesh to VM), all workers",
            ),
        ),
        (
            "rx_bytes",
            reg.counter("meshwire_port_rx_bytes_total", "Bytes read from the port"),
        ),
        (
            "tx_bytes",
            reg.counter("meshwire_port_tx_bytes_total", "Bytes written to the port"),
        ),
    ];
    let drops = reg.counter(
        "meshwire_port_drops_total",
        "Frames dropped at the port, by reason (device errors and the port policy)",
    );
    for p in list {
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        let l = labels(&[("port", name)]);
        mtu.get_or_create(&l).set(i(u(p.get("mtu"))));
        for (k, f) in &counters {
            f.get_or_create(&l).inc_by(u(p.get(*k)));
        }
        for section in ["counters", "policy"] {
            let Some(m) = p.get(section).and_then(Value::as_object) else {
                continue;
            };
            for (k, v) in m {
                if let Some(reason) = drop_reason(k) {
                    drops
                        .get_or_create(&labels(&[("port", name), ("reason", reason)]))
                        .inc_by(u(Some(v)));
                }
            }
        }
    }
}

fn stats(reg: &mut Reg, stats: &Value) {
    let mesh = stats.get("mesh");
    let one = |reg: &mut Reg, name: &str, help: &str, v: u64| {
        reg.counter(name, help).get_or_create(&vec![]).inc_by(v);
    };
    one(
        reg,
        "meshwire_ogm_sent_total",
        "OGMs this node originated and sent (per link)",
        u(mesh.and_then(|m| m.get("tx_ogm"))),
    );
    one(
        reg,
        "meshwire_ogm_received_total",
        "OGMs received",
        u(mesh.and_then(|m| m.get("rx_ogm"))),
    );
    one(
        reg,
        "meshwire_vm_moves_total",
        "Clients (VM MACs) that moved to another port or originator",
        u(stats.get("node").and_then(|n| n.get("moves"))),
    );
    let frags = reg.counter(
        "meshwire_fragments_total",
        "batman-adv fragments: sent, reassembled (packets), dropped",
    );
    for (kind, key) in [
        ("sent", "frag_sent"),
        ("reassembled", "frag_reassembled"),
        ("dropped", "frag_dropped"),
    ] {
        frags
            .get_or_create(&labels(&[("kind", kind)]))
            .inc_by(u(mesh.and_then(|m| m.get(key))));
    }
    let workers = [
        (
            "node_locks",
            reg.counter(
                "meshwire_worker_node_locks_total",
                "Times the worker took the node lock (about once per batch)",
            ),
        ),
        (
            "port_frames",
            reg.counter(
                "meshwire_worker_port_frames_total",
                "Frames the worker read from its port queues",
            ),
        ),
        (
            "tunnel_datagrams",
            reg.counter(
                "meshwire_worker_tunnel_datagrams_total",
                "Datagrams the worker read from its UDP socket",
            ),
        ),
    ];
    let times = [
        (
            "node_wait_us",
            reg.fcounter(
                "meshwire_worker_node_wait_seconds_total",
                "Time the worker waited for the node lock",
            ),
        ),
        (
            "node_held_us",
            reg.fcounter(
                "meshwire_worker_node_held_seconds_total",
                "Time the worker held the node lock",
            ),
        ),
    ];
    for w in stats
        .get("workers")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let id = u(w.get("worker")).to_string();
        for (k, f) in &workers {
            f.get_or_create(&labels(&[("worker", &id)]))
                .inc_by(u(w.get(*k)));
        }
        for (k, f) in &times {
            f.get_or_create(&labels(&[("worker", &id)]))
                .inc_by(u(w.get(*k)) as f64 / 1e6);
        }
    }
    // Everything else `ctl stats` counts, by section and name, so no
    // counter is missing here; most are counters since start (use rate()).
    let all = reg.gauge(
        "meshwire_stat",
        "Every number of `meshwire ctl stats`, by section and name",
    );
    if let Some(m) = stats.as_object() {
        for (section, v) in m {
            if section == "workers" {
                continue;
            }
            if let Some(obj) = v.as_object() {
                flatten(&all, section, "", obj);
            }
        }
    }
}

fn flatten(f: &Gauges, section: &str, prefix: &str, m: &Map<String, Value>) {
    for (k, v) in m {
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}_{k}")
        };
        match v {
            Value::Number(n) => {
                if let Some(n) = n.as_u64() {
                    f.get_or_create(&labels(&[("section", section), ("name", &name)]))
                        .set(i(n));
                }
            }
            Value::Object(o) => flatten(f, section, &name, o),
            _ => {}
        }
    }
}
