//! `meshwire ctl event`: follows the daemon's event log (`bridge/events.rs`)
//! by asking for what came after the last event it printed, a few times a
//! second; one line per event, or one JSON object per line with `--json`.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::request;
use super::CtlCommand;

const POLL: Duration = Duration::from_millis(200);

fn line(e: &Value) -> String {
    let ms = e["time_ms"].as_u64().unwrap_or(0);
    let (s, ms) = ((ms / 1000) % 86_400, ms % 1000);
    let t = format!("{:02}:{:02}:{:02}.{ms:03}", s / 3600, s / 60 % 60, s % 60);
    let f = |k: &str| match &e[k] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    };
    match e["kind"].as_str().unwrap_or("") {
        "move" => format!(
            "{t} move {} vlan {}: {} -> {}",
            f("mac"),
            f("vlan"),
            f("from"),
            f("to")
        ),
        "peer_down" => format!("{t} peer down {}", f("peer")),
        "peer_up" => format!("{t} peer up {}", f("peer")),
        "route" => format!(
            "{t} route to {}: via {} -> via {}",
            f("originator"),
            f("from"),
            f("to")
        ),
        other => format!("{t} {other}"),
    }
}

/// Prints events as they come, until `count` events or `seconds` passed
/// (neither: until interrupted). Returns what is left to print.
pub fn follow(
    socket: &Path,
    count: Option<u32>,
    seconds: Option<u64>,
    json: bool,
) -> Result<String, String> {
    let until = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let start = request(socket, &CtlCommand::EventsSince { since: None })?;
    let mut last = start["last"].as_u64().unwrap_or(0);
    let mut printed = 0u32;
    let stdout = std::io::stdout();
    loop {
        if until.is_some_and(|u| Instant::now() >= u) || count.is_some_and(|c| printed >= c) {
            return Ok(String::new());
        }
        std::thread::sleep(POLL);
        let r = request(socket, &CtlCommand::EventsSince { since: Some(last) })?;
        last = r["last"].as_u64().unwrap_or(last);
        let mut out = stdout.lock();
        if let Some(missed) = r["missed"].as_u64().filter(|m| *m > 0) {
            let _ = writeln!(
                out,
                "({missed} events missed: the daemon keeps the last 4096)"
            );
        }
        for e in r["events"].as_array().into_iter().flatten() {
            if count.is_some_and(|c| printed >= c) {
                break;
            }
            let text = if json { e.to_string() } else { line(e) };
            if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
                return Ok(String::new()); // the reader went away
            }
            printed += 1;
        }
    }
}
