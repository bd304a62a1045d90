use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::json;

use super::http::{parse_request, Refusal, Route};
use super::render::NAMES;
use super::*;

fn sample() -> Snapshot {
    Snapshot {
        taken: SystemTime::now(),
        originator: "02:00:00:00:00:01".into(),
        stats: json!({
            "node": {"moves": 3, "redirected": 1},
            "mesh": {"tx_ogm": 10, "rx_ogm": 20, "frag_sent": 4, "frag_reassembled": 2, "frag_dropped": 1},
            "tunnel": {"rx_datagrams": 7, "nested": {"x": 1}},
            "workers": [{"worker": 0, "node_locks": 5, "port_frames": 6, "tunnel_datagrams": 7},
                        {"worker": 1, "node_locks": 8, "port_frames": 9, "tunnel_datagrams": 10, "node_wait_us": 1500000, "node_held_us": 250}],
        }),
        peers: json!([
            {"public_key": "k1=", "address": "198.19.0.2", "link_up": true, "session_up": true,
             "rx_bytes": 100, "tx_bytes": 200, "rx_frames": 1, "tx_frames": 2, "handshakes": 1,
             "handshake_attempts": 0, "last_handshake": 1_700_000_000u64},
            {"public_key": "k2=", "address": "198.19.0.3", "link_up": false, "session_up": false,
             "rx_bytes": 0, "tx_bytes": 0, "rx_frames": 0, "tx_frames": 0, "handshakes": 0,
             "handshake_attempts": 3, "last_handshake": null},
        ]),
        ports: json!([
            {"name": "vm1", "mtu": 1500, "rx_frames": 5, "tx_frames": 6, "rx_bytes": 500, "tx_bytes": 600,
             "counters": {"rx_drop_oversize": 2, "tx_errors": 1, "rx_frames": 5},
             "policy": {"drop_spoofed_mac": 4, "mss_clamped": 9}},
        ]),
        sizes: Sizes {
            fdb: 2,
            tt_local: 1,
            tt_global: 3,
            originators: 2,
        },
    }
}

/// The value of the sample line `metric` (name with labels, as printed).
fn value(text: &str, metric: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(metric)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn render_names_values_and_labels() {
    let t = render(&sample(), SystemTime::now());
    assert_eq!(value(&t, "meshwire_peers"), Some(2.0));
    assert_eq!(value(&t, "meshwire_peers_up"), Some(1.0));
    assert_eq!(
        value(
            &t,
            "meshwire_peer_rx_bytes_total{peer=\"k1=\",address=\"198.19.0.2\"}"
        ),
        Some(100.0)
    );
    assert_eq!(
        value(
            &t,
            "meshwire_peer_link_up{peer=\"k2=\",address=\"198.19.0.3\"}"
        ),
        Some(0.0)
    );
    // No handshake: no age, rather than a made-up one.
    assert!(!t.contains("meshwire_peer_handshake_age_seconds{peer=\"k2=\""));
    assert!(t.contains("meshwire_peer_handshake_age_seconds{peer=\"k1=\""));
    assert_eq!(
        value(
            &t,
            "meshwire_port_drops_total{port=\"vm1\",reason=\"rx_drop_oversize\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &t,
            "meshwire_port_drops_total{port=\"vm1\",reason=\"spoofed_mac\"}"
        ),
        Some(4.0)
    );
    assert!(!t.contains("reason=\"mss_clamped\""), "not a drop:\n{t}");
    assert_eq!(value(&t, "meshwire_ogm_sent_total"), Some(10.0));
    assert_eq!(value(&t, "meshwire_vm_moves_total"), Some(3.0));
    assert_eq!(
        value(&t, "meshwire_fragments_total{kind=\"sent\"}"),
        Some(4.0)
    );
    assert_eq!(
        value(&t, "meshwire_worker_node_locks_total{worker=\"1\"}"),
        Some(8.0)
    );
    assert_eq!(
        value(&t, "meshwire_worker_node_wait_seconds_total{worker=\"1\"}"),
        Some(1.5)
    );
    assert_eq!(
        value(&t, "meshwire_worker_node_held_seconds_total{worker=\"1\"}"),
        Some(0.00025)
    );
    assert_eq!(value(&t, "meshwire_tt_global_entries"), Some(3.0));
    assert_eq!(
        value(&t, "meshwire_stat{section=\"tunnel\",name=\"nested_x\"}"),
        Some(1.0)
    );
    // Every name the module promises appears with its type.
    for (name, kind) in NAMES {
        assert!(
            t.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} {kind} missing:\n{t}"
        );
    }
}

#[test]
fn label_values_are_escaped() {
    let mut s = sample();
    s.ports = json!([{"name": "a\"b\\c\nd", "mtu": 1500}]);
    let t = render(&s, SystemTime::now());
    assert!(t.contains("port=\"a\\\"b\\\\c\\nd\""), "{t}");
}

#[test]
fn requests() {
    let ok = |h: &str| parse_request(h.as_bytes());
    assert_eq!(
        ok("GET /metrics HTTP/1.1\r\nHost: x"),
        Ok(Route::Metrics { head_only: false })
    );
    assert_eq!(
        ok("HEAD /metrics?x=1 HTTP/1.0"),
        Ok(Route::Metrics { head_only: true })
    );
    assert_eq!(ok("GET / HTTP/1.1"), Ok(Route::Index { head_only: false }));
    assert_eq!(ok("GET /x HTTP/1.1").unwrap_err().0, 404);
    assert_eq!(ok("POST /metrics HTTP/1.1").unwrap_err().0, 405);
    assert_eq!(ok("GET /metrics HTTP/2").unwrap_err().0, 505);
    for bad in [
        "",
        "GET",
        "GET /metrics",
        "get /metrics HTTP/1.1",
        "GET  /metrics HTTP/1.1",
        "GET metrics HTTP/1.1",
        "\u{ff}",
    ] {
        assert_eq!(ok(bad), Err(Refusal(400, "Bad Request")), "{bad:?}");
    }
}

#[test]
fn hostile_requests_never_panic() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = Vec::new();
    for n in 0..100_000usize {
        buf.clear();
        let base = b"GET /metrics HTTP/1.1\r\n";
        buf.extend_from_slice(&base[..n % (base.len() + 1)]);
        for _ in 0..(n % 40) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.push(x as u8);
        }
        let _ = parse_request(&buf);
    }
}

fn get(addr: std::net::SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(req).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serves_over_tcp() {
    let exp = Arc::new(Exporter::default());
    let addr = http::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&exp)).unwrap();
    let r = get(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 503 "), "{r}");
    exp.publish(sample());
    let r = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(len, body.len());
    assert!(body.contains("meshwire_peers 2\n"), "{body}");
    let r = get(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(r.ends_with("\r\n\r\n"), "HEAD has no body: {r}");
    let r = get(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
    // A head over the limit is refused, and the server goes on.
    let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    big.resize(http::MAX_HEAD + 100, b'a');
    let r = get(addr, &big);
    assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
    let r = get(addr, b"GET / HTTP/1.0\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200 OK"), "{r}");
}
