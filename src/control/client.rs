//! `meshwire ctl`: sends one request to the daemon and formats the answer,
//! as a table for people or as JSON for scripts.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::{CtlCommand, Reply};

/// Sends `cmd` and returns the daemon's `data`. A daemon serving its
/// maximum of clients answers "busy" at once; that is retried for a few
/// seconds (the others' deadlines free a place within two).
pub fn request(socket: &Path, cmd: &CtlCommand) -> Result<Value, String> {
    let give_up = std::time::Instant::now() + Duration::from_secs(6);
    let mut wait = Duration::from_millis(20);
    loop {
        match request_once(socket, cmd) {
            Err(e) if e.starts_with(BUSY) && std::time::Instant::now() < give_up => {
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(500));
            }
            r => return r,
        }
    }
}

/// How long one read of the answer may wait (`ctl --timeout`): the daemon
/// streams a large report as it renders it, at a lower priority than its
/// workers, so on a loaded machine the gaps between parts can be long.
static READ_TIMEOUT_MS: AtomicU64 = AtomicU64::new(10_000);

/// Sets the wait for each part of an answer, for this process.
pub fn set_read_timeout(t: Duration) {
    READ_TIMEOUT_MS.store(t.as_millis().max(1) as u64, Ordering::Relaxed);
}

/// How the daemon's "too many clients" answer begins.
pub const BUSY: &str = "busy:";

fn request_once(socket: &Path, cmd: &CtlCommand) -> Result<Value, String> {
    let conn = UnixStream::connect(socket).map_err(|e| connect_error(socket, &e))?;
    conn.set_read_timeout(Some(Duration::from_millis(
        READ_TIMEOUT_MS.load(Ordering::Relaxed),
    )))
    .map_err(|e| e.to_string())?;
    let mut line = serde_json::to_vec(cmd).map_err(|e| e.to_string())?;
    line.push(b'\n');
    // A daemon that refuses at once (busy, credentials) may close before
    // our request is written: its answer is still there to read.
    let sent = (&conn).write_all(&line);
    let mut answer = String::new();
    BufReader::new(&conn)
        .read_line(&mut answer)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
                "no answer within {} ms (ctl --timeout SECS waits longer)",
                READ_TIMEOUT_MS.load(Ordering::Relaxed)
            ),
            _ => format!("no answer: {e}"),
        })?;
    if answer.is_empty() {
        return Err(match sent {
            Err(e) => e.to_string(),
            Ok(()) => "no answer: the daemon closed the connection".into(),
        });
    }
    let reply: Reply =
        serde_json::from_str(&answer).map_err(|e| format!("bad answer from the daemon: {e}"))?;
    if reply.ok {
        Ok(reply.data.unwrap_or(Value::Null))
    } else {
        Err(reply.error.unwrap_or_else(|| "request failed".into()))
    }
}

/// Why `ctl` could not reach the daemon, in words an operator acts on.
fn connect_error(socket: &Path, e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let s = socket.display();
    match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => format!(
            "cannot connect to {s}: no daemon is listening there ({e}); is meshwire running, \
             and is this its [control] socket (--socket)?"
        ),
        ErrorKind::PermissionDenied => format!(
            "cannot connect to {s}: not permitted ({e}); run as root, as the daemon's user, \
             or as a member of its [control] group"
        ),
        _ => format!("cannot connect to {s}: {e}"),
    }
}

pub fn run(socket: &Path, cmd: CtlCommand, json: bool) -> Result<String, String> {
    // The daemon checks the same; here the error comes without a daemon.
    super::validate(&cmd)?;
    match cmd {
        CtlCommand::Ping {
            dest,
            count,
            interval_ms,
        } => {
            let interval = Duration::from_millis(interval_ms);
            return super::ping::ping(socket, dest, count, interval, json);
        }
        CtlCommand::Traceroute { dest, max_hops } => {
            return super::ping::traceroute(socket, dest, max_hops, json);
        }
        CtlCommand::Event { count, seconds } => {
            return super::event::follow(socket, count, seconds, json);
        }
        _ => {}
    }
    let data = request(socket, &cmd)?;
    if json {
        let mut s = serde_json::to_string_pretty(&data).map_err(|e| e.to_string())?;
        s.push('\n');
        return Ok(s);
    }
    Ok(match cmd {
        CtlCommand::Peers => table(
            &data,
            &[
                ("PEER", "public_key"),
                ("ADDRESS", "address"),
                ("ENDPOINT", "endpoint"),
                ("HANDSHAKE", "last_handshake_ago"),
                ("RX", "rx_bytes"),
                ("TX", "tx_bytes"),
                ("UP", "session_up"),
            ],
        ),
        CtlCommand::Originators => table(
            &data,
            &[
                ("ORIGINATOR", "originator"),
                ("LAST-SEEN", "last_seen_ms"),
                ("TQ", "tq"),
                ("NEXT-HOP", "next_hop"),
                ("VIA", "via"),
                ("TTVN", "ttvn"),
            ],
        ),
        CtlCommand::Fdb => table(
            &data,
            &[
                ("MAC", "mac"),
                ("VLAN", "vlan"),
                ("LOCATION", "location"),
                ("SOURCE", "source"),
                ("AGE-MS", "age_ms"),
            ],
        ),
        CtlCommand::Ports => table(
            &data,
            &[
                ("PORT", "name"),
                ("MTU", "mtu"),
                ("RX-FRAMES", "rx_frames"),
                ("TX-FRAMES", "tx_frames"),
                ("RX-BYTES", "rx_bytes"),
                ("TX-BYTES", "tx_bytes"),
                ("DROPS", "drops"),
            ],
        ),
        CtlCommand::Tt => {
            let local = table(
                &data["local"],
                &[
                    ("CLIENT", "mac"),
                    ("VLAN", "vlan"),
                    ("NEW", "new"),
                    ("PENDING-DELETE", "pending_delete"),
                ],
            );
            let global = table(
                &data["global"],
                &[
                    ("CLIENT", "mac"),
                    ("VLAN", "vlan"),
                    ("ORIGINATOR", "originator"),
                    ("FLAGS", "flags"),
                ],
            );
            let own = cell(data.get("originator"));
            format!("local (announced by {own}):\n{local}\nglobal:\n{global}")
        }
        CtlCommand::Translate { .. } => {
            let hop = match data.get("next_hop") {
                Some(Value::String(h)) => format!(" (next hop {h}, TQ {})", cell(data.get("tq"))),
                _ => String::new(),
            };
            match data.get("served_by") {
                Some(Value::String(s)) => format!("{} -> {s}{hop}\n", cell(data.get("mac"))),
                _ => format!("{}: unknown\n", cell(data.get("mac"))),
            }
        }
        CtlCommand::Graph => data["dot"].as_str().unwrap_or_default().to_string(),
        CtlCommand::LogLevel { .. } => format!("{}\n", cell(data.get("filter"))),
        CtlCommand::Reload { .. } | CtlCommand::Peer { .. } => {
            let list = |k: &str| -> String {
                let v: Vec<String> = (data[k].as_array().into_iter().flatten())
                    .map(|x| cell(Some(x)))
                    .collect();
                if v.is_empty() {
                    "-".into()
                } else {
                    v.join(", ")
                }
            };
            format!(
                "{}\npeers added: {}\npeers removed: {}\npeers replaced: {}\npeer MTUs changed: {}\nports added: {}\nports removed: {}\npolicies changed: {}\nneeds a restart (not applied): {}\n",
                if data["applied"] == Value::Bool(true) {
                    "applied"
                } else {
                    "dry run: nothing changed"
                },
                list("peers_added"),
                list("peers_removed"),
                list("peers_changed"),
                list("peers_mtu_changed"),
                list("ports_added"),
                list("ports_removed"),
                list("policies_changed"),
                list("needs_restart")
            )
        }
        CtlCommand::Ping { .. }
        | CtlCommand::Traceroute { .. }
        | CtlCommand::IcmpSend { .. }
        | CtlCommand::IcmpPoll { .. }
        | CtlCommand::Event { .. }
        | CtlCommand::EventsSince { .. } => serde_json::to_string(&data).unwrap_or_default() + "\n",
        CtlCommand::Announce { .. } | CtlCommand::Port { .. } => {
            format!("{}\n", data.as_str().unwrap_or("done"))
        }
        CtlCommand::Stats => {
            let mut s = serde_json::to_string_pretty(&data).map_err(|e| e.to_string())?;
            s.push('\n');
            s
        }
    })
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Renders an array of objects as aligned columns.
pub fn table(data: &Value, cols: &[(&str, &str)]) -> String {
    let rows: Vec<Vec<String>> = data
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| cols.iter().map(|(_, k)| cell(r.get(*k))).collect())
                .collect()
        })
        .unwrap_or_default();
    let mut width: Vec<usize> = cols.iter().map(|(h, _)| h.len()).collect();
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{:<w$}  ", c, w = width[i]));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(cols.iter().map(|(h, _)| *h).collect(), &mut out);
    for r in &rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_and_fills_missing() {
        let v = serde_json::json!([{"a": "x", "b": 1}, {"a": "longer"}]);
        let t = table(&v, &[("A", "a"), ("B", "b")]);
        assert_eq!(t, "A       B\nx       1\nlonger  -\n");
    }
}
