//! `meshwire ctl ping` and `traceroute`, run in the client: each probe is
//! one `icmp-send` request (the daemon sends a batman ICMP echo request,
//! `mesh/icmp.rs`) and `icmp-poll` requests until its answer came or a
//! second passed. Output as `batctl ping` / `batctl traceroute` print it;
//! `--json` gives the figures.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::client::request;
use super::CtlCommand;
use crate::mesh::{ICMP_ECHO_REPLY, ICMP_TTL_EXCEEDED};
use crate::wire::MacAddr;

/// How long a probe waits for its answer.
const WAIT: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(5);
/// batman's TTL for a ping (`BATADV_TTL`).
const PING_TTL: u8 = 50;

/// One probe: Some((who answered, message type, rtt ms)) or None (lost).
fn probe(
    socket: &Path,
    dest: MacAddr,
    ttl: u8,
    uid: u8,
    seqno: u16,
) -> Result<Option<(String, u8, f64)>, String> {
    request(
        socket,
        &CtlCommand::IcmpSend {
            dest,
            ttl,
            uid,
            seqno,
        },
    )?;
    let give_up = Instant::now() + WAIT;
    while Instant::now() < give_up {
        let a = request(socket, &CtlCommand::IcmpPoll { uid, seqno })?;
        if let Value::Object(m) = a {
            let from = m.get("from").and_then(Value::as_str).unwrap_or("-");
            let ty = m.get("msg_type").and_then(Value::as_u64).unwrap_or(255) as u8;
            let rtt = m.get("rtt_us").and_then(Value::as_u64).unwrap_or(0) as f64 / 1000.0;
            return Ok(Some((from.to_string(), ty, rtt)));
        }
        std::thread::sleep(POLL);
    }
    Ok(None)
}

/// A uid for this client's probes (the kernel gives each batctl socket
/// its own; ours tells concurrent `ctl ping`s apart).
fn uid() -> u8 {
    (std::process::id() & 0xff) as u8
}

pub fn ping(
    socket: &Path,
    dest: MacAddr,
    count: u32,
    interval: Duration,
    json_out: bool,
) -> Result<String, String> {
    let uid = uid();
    let mut out = String::new();
    let mut rtts = Vec::new();
    if !json_out {
        out += &format!("PING {dest} (batman ICMP, 20 bytes)\n");
    }
    for seq in 1..=count {
        let started = Instant::now();
        let seqno = (seq & 0xffff) as u16;
        match probe(socket, dest, PING_TTL, uid, seqno)? {
            Some((from, ICMP_ECHO_REPLY, rtt)) => {
                rtts.push(rtt);
                if !json_out {
                    out += &format!("20 bytes from {from} icmp_seq={seq} time={rtt:.2} ms\n");
                }
            }
            Some((from, ty, _)) if !json_out => {
                out += &format!("From {from} icmp_seq={seq}: message type {ty}\n");
            }
            _ if !json_out => out += &format!("Reply from {dest}: icmp_seq={seq} timeout\n"),
            _ => {}
        }
        if seq < count {
            std::thread::sleep(interval.saturating_sub(started.elapsed()));
        }
    }
    let received = rtts.len() as u32;
    let loss = 100.0 * f64::from(count - received) / f64::from(count);
    if json_out {
        let mut s = json!({
            "destination": dest,
            "transmitted": count,
            "received": received,
            "rtt_ms": rtts,
        })
        .to_string();
        s.push('\n');
        return Ok(s);
    }
    out += &format!(
        "--- {dest} ping statistics ---\n{count} packets transmitted, {received} received, {loss:.0}% packet loss\n"
    );
    if !rtts.is_empty() {
        let min = rtts.iter().cloned().fold(f64::MAX, f64::min);
        let max = rtts.iter().cloned().fold(0.0, f64::max);
        let avg = rtts.iter().sum::<f64>() / rtts.len() as f64;
        out += &format!("rtt min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms\n");
    }
    Ok(out)
}

pub fn traceroute(
    socket: &Path,
    dest: MacAddr,
    max_hops: u8,
    json_out: bool,
) -> Result<String, String> {
    let uid = uid();
    let mut hops = Vec::new();
    let mut out = format!("traceroute to {dest}, {max_hops} hops max\n");
    for ttl in 1..=max_hops {
        let answer = probe(socket, dest, ttl, uid, 0x8000 | u16::from(ttl))?;
        let reached = matches!(answer, Some((_, ICMP_ECHO_REPLY, _)));
        match &answer {
            Some((from, ICMP_ECHO_REPLY | ICMP_TTL_EXCEEDED, rtt)) => {
                out += &format!("{ttl:2}: {from}  {rtt:.3} ms\n");
                hops.push(json!({ "ttl": ttl, "from": from, "rtt_ms": rtt }));
            }
            _ => {
                out += &format!("{ttl:2}: *\n");
                hops.push(json!({ "ttl": ttl, "from": null }));
            }
        }
        if reached {
            break;
        }
    }
    if json_out {
        let mut s = json!({ "destination": dest, "hops": hops }).to_string();
        s.push('\n');
        return Ok(s);
    }
    Ok(out)
}
