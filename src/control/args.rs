//! The control request parser and the checks of ctl arguments.
//!
//! A request is hostile input (any local operator, any script, a fuzzer):
//! it is parsed and every argument checked like the config key it stands
//! for, before the dataplane sees it, and errors name the argument
//! (`--mtu: must be between 576 and 65000`). `meshwire ctl` runs the same
//! checks before it connects.

use std::collections::HashSet;
use std::net::IpAddr;

use super::{CtlCommand, PolicyArgs, PortAction, MAX_REQUEST};
use crate::config::{check_ifname, ConfigError, PolicySpec};
use crate::wire::MacAddr;

/// Port MTUs, as `[[port]] mtu`.
pub const PORT_MTU: std::ops::RangeInclusive<u16> = 576..=65000;
/// Addresses one `ctl announce` or `ctl port add/set` may name: announce
/// work is done while the node is held, so it is bounded.
pub const MAX_IPS: usize = 32;
/// Echo requests one `ctl ping` sends.
pub const MAX_PINGS: u32 = 10_000;

/// Parses one request line and checks its arguments.
pub fn parse_request(line: &[u8]) -> Result<CtlCommand, String> {
    if line.len() > MAX_REQUEST {
        return Err(format!("bad request: longer than {MAX_REQUEST} bytes"));
    }
    let text = std::str::from_utf8(line).map_err(|_| "bad request: not UTF-8".to_string())?;
    let cmd: CtlCommand =
        serde_json::from_str(text.trim()).map_err(|e| format!("bad request: {e}"))?;
    validate(&cmd)?;
    Ok(cmd)
}

/// Checks a command's arguments like the config checks its keys.
pub fn validate(cmd: &CtlCommand) -> Result<(), String> {
    match cmd {
        CtlCommand::Announce { port, mac, ip } => {
            name("--port", port)?;
            if let Some(m) = mac {
                unicast("--mac", m)?;
            }
            ips(ip)
        }
        CtlCommand::Port { action } => match action {
            PortAction::Add {
                name: n,
                mtu,
                attach,
                bridge,
                vhost_user,
                vhost_user_group,
                vhost_user_mode,
                qmp,
                policy,
            } => {
                name("NAME", n)?;
                qmp_path(qmp)?;
                if vhost_user.is_none() && (vhost_user_group.is_some() || vhost_user_mode.is_some())
                {
                    return Err(
                        "--vhost-user-group, --vhost-user-mode: only with --vhost-user".into(),
                    );
                }
                vhost_access(vhost_user_group.as_deref(), vhost_user_mode.as_deref())?;
                if let Some(sock) = vhost_user {
                    vhost_path(sock)?;
                    if attach.is_some() || bridge.is_some() {
                        return Err("--vhost-user: a vhost-user port is the VM's own device, not a TAP: leave out --attach and --bridge".into());
                    }
                }
                if let Some(br) = bridge {
                    name("--bridge", br)?;
                    if attach.is_some() {
                        return Err("--bridge: an attached device is the VM's own TAP, not a bridge uplink: give one of --bridge and --attach".into());
                    }
                }
                if let Some(dev) = attach {
                    name("--attach", dev)?;
                    if mtu.is_some() {
                        return Err(
                            "--mtu: an attached device keeps its own MTU (libvirt's): leave it out"
                                .into(),
                        );
                    }
                }
                if let Some(m) = mtu {
                    if !PORT_MTU.contains(m) {
                        return Err(format!(
                            "--mtu: {m}: must be between {} and {}",
                            PORT_MTU.start(),
                            PORT_MTU.end()
                        ));
                    }
                }
                policy_args(policy, false)
            }
            PortAction::Del { name: n } => name("NAME", n),
            PortAction::Set {
                name: n,
                qmp,
                policy,
            } => {
                name("NAME", n)?;
                qmp_path(qmp)?;
                policy_args(policy, true)
            }
        },
        CtlCommand::Ping {
            dest,
            count,
            interval_ms,
        } => {
            unicast("DEST", dest)?;
            if !(1..=MAX_PINGS).contains(count) {
                return Err(format!(
                    "--count: {count}: must be between 1 and {MAX_PINGS}"
                ));
            }
            if !(10..=60_000).contains(interval_ms) {
                return Err(format!(
                    "--interval-ms: {interval_ms}: must be between 10 and 60000"
                ));
            }
            Ok(())
        }
        CtlCommand::Traceroute { dest, max_hops } => {
            unicast("DEST", dest)?;
            if !(1..=50).contains(max_hops) {
                return Err(format!("--max-hops: {max_hops}: must be between 1 and 50"));
            }
            Ok(())
        }
        CtlCommand::Event { count, seconds } => {
            if count == &Some(0) {
                return Err("--count: must be at least 1".into());
            }
            if seconds.is_some_and(|s| s == 0 || s > 31_536_000) {
                return Err("--seconds: must be between 1 and 31536000 (a year)".into());
            }
            Ok(())
        }
        CtlCommand::IcmpSend { dest, ttl, .. } => {
            unicast("DEST", dest)?;
            if !(1..=50).contains(ttl) {
                return Err(format!("ttl: {ttl}: must be between 1 and 50"));
            }
            Ok(())
        }
        CtlCommand::LogLevel { filter: Some(f) } => {
            if f.len() > crate::log::MAX_FILTER {
                return Err(format!(
                    "FILTER: longer than {} bytes",
                    crate::log::MAX_FILTER
                ));
            }
            tracing_subscriber::EnvFilter::try_new(f)
                .map(drop)
                .map_err(|e| format!("FILTER: '{}': {e}", f.escape_debug()))
        }
        CtlCommand::Translate { vlan, .. } => match vlan {
            Some(v) if *v > 4094 => Err(format!("--vlan: {v}: must be between 0 and 4094")),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

fn name(arg: &str, n: &str) -> Result<(), String> {
    check_ifname(n).map_err(|e| format!("{arg}: '{}': {e}", n.escape_debug()))
}

fn unicast(arg: &str, m: &MacAddr) -> Result<(), String> {
    if !m.is_unicast() || m.is_zero() {
        return Err(format!("{arg}: {m} is not a unicast MAC"));
    }
    Ok(())
}

fn ips(ip: &[IpAddr]) -> Result<(), String> {
    if ip.len() > MAX_IPS {
        return Err(format!("--ip: {} addresses; at most {MAX_IPS}", ip.len()));
    }
    let mut seen = HashSet::new();
    for a in ip {
        if a.is_unspecified() || a.is_multicast() || a == &IpAddr::V4(std::net::Ipv4Addr::BROADCAST)
        {
            return Err(format!("--ip: {a} is not a unicast address"));
        }
        if !seen.insert(a) {
            return Err(format!("--ip: {a} appears twice"));
        }
    }
    Ok(())
}

/// The policy keys as the config checks them. For `port set` the keys
/// are a change to the port's current ones, so what only the merged
/// policy can show (addresses without a mac) is left to the dataplane,
/// which checks the merged policy the same way.
fn policy_args(p: &PolicyArgs, set: bool) -> Result<(), String> {
    ips(&p.ip)?;
    let mut spec: PolicySpec = p.spec();
    if set {
        if spec.vlan == Some(0) {
            spec.vlan = None; // `--vlan 0`: back to the untagged network
        }
        if spec.mac.is_none() && !p.ip.is_empty() {
            spec.mac = Some(MacAddr::local_unicast([0, 0, 0, 0, 0, 1]));
        }
    }
    spec.resolve("ctl").map(drop).map_err(arg_error)
}

/// `ctl.ipv4[1]: ...` -> `--ip: ...`.
fn arg_error(e: ConfigError) -> String {
    let key = e.field.strip_prefix("ctl.").unwrap_or(&e.field);
    let key = key.split('[').next().unwrap_or(key);
    let arg = match key {
        "ipv4" | "ipv6" => "ip".to_string(),
        k => k.replace('_', "-"),
    };
    format!("--{arg}: {}", e.message)
}

/// `--vhost-user`: a socket file (absolute, short enough for a unix
/// socket) as `[[port]] vhost_user`. What is at the path is checked by the
/// daemon, which replaces only a stale socket there.
fn vhost_path(p: &std::path::Path) -> Result<(), String> {
    if p.file_name().is_none() {
        return Err(format!(
            "--vhost-user: {}: must be an absolute path to a socket file",
            p.display()
        ));
    }
    crate::port::watch::client::check_path(p).map_err(|e| format!("--vhost-user: {e}"))
}

/// `--vhost-user-group`, `--vhost-user-mode`: who may connect to the
/// socket, checked as the `[[port]]` keys are.
pub fn vhost_access(
    group: Option<&str>,
    mode: Option<&str>,
) -> Result<crate::port::vhost::SocketAccess, String> {
    use crate::config::{GroupSpec, ModeSpec};
    let group = group.map(|g| GroupSpec::Name(g.to_owned()));
    let mode = mode.map(|m| ModeSpec::Text(m.to_owned()));
    crate::config::vhost_socket(group.as_ref(), mode.as_ref())
        .map_err(|(key, e)| format!("--{}: {e}", key.replace('_', "-")))
}

/// `--qmp`: absolute and short enough for a unix socket; "" (stop
/// watching) only where `port set` takes it.
fn qmp_path(p: &Option<std::path::PathBuf>) -> Result<(), String> {
    match p {
        Some(p) if !p.as_os_str().is_empty() => {
            crate::port::watch::client::check_path(p).map_err(|e| format!("--qmp: {e}"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Result<CtlCommand, String> {
        parse_request(json.as_bytes())
    }

    #[test]
    fn errors_name_the_argument() {
        for (json, want) in [
            (
                r#"{"cmd":"port","action":{"action":"add","name":"vm1","mtu":10}}"#,
                "--mtu: 10",
            ),
            (
                r#"{"cmd":"port","action":{"action":"add","name":"vm1","mtu":65535}}"#,
                "--mtu",
            ),
            (
                r#"{"cmd":"port","action":{"action":"add","name":"vm1","mtu":1500,"attach":"vnet0"}}"#,
                "--mtu: an attached",
            ),
            (
                r#"{"cmd":"port","action":{"action":"add","name":"a/b"}}"#,
                "NAME: 'a/b'",
            ),
            (
                r#"{"cmd":"port","action":{"action":"add","name":"sixteen-chars-xx"}}"#,
                "NAME",
            ),
            (
                r#"{"cmd":"port","action":{"action":"add","name":"vm1","attach":""}}"#,
                "--attach",
            ),
            (
                r#"{"cmd":"port","action":{"action":"add","name":"vm1","vhost_user":"vm1.sock"}}"#,
                "--vhost-user: vm1.sock: not an absolute path",
            ),
            (
                r#"{"cmd":"port","action":{"action":"add","name":"vm1","vhost_user":"/"}}"#,
                "--vhost-user: /: must be an absolute path to a socket file",
            ),
            (
                r#"{"cmd":"port","action":{"action":"add","name":"vm1","vhost_user":""}}"#,
                "--vhost-user",
            ),
            (
                r#"{"cmd":"port","action":{"action":"add","name":"vm1","vhost_user":"/run/vm1.sock","attach":"vnet3"}}"#,
                "--vhost-user: a vhost-user port is the VM's own device",
            ),
            (
                r#"{"cmd":"port","action":{"action":"add","name":"vm1","vhost_user":"/run/vm1.sock","bridge":"br0"}}"#,
                "--vhost-user: a vhost-user port is the VM's own device",
            ),
            (
                r#"{"cmd":"port","action":{"action":"add","name":"vm1","vlan":4095}}"#,
                "--vlan",
            ),
            (
                r#"{"cmd":"port","action":{"action":"add","name":"vm1","vlan":0}}"#,
                "--vlan",
            ),
            (
                r#"{"cmd":"port","action":{"action":"add","name":"vm1","trunk":[0]}}"#,
                "--trunk",
            ),
            (
                r#"{"cmd":"port","action":{"action":"add","name":"vm1","arp_nd_rate":20000000}}"#,
                "--arp-nd-rate",
            ),
            (
                r#"{"cmd":"port","action":{"action":"add","name":"vm1","ip":["198.19.1.1"]}}"#,
                "--ip: addresses belong to a VM port",
            ),
            (
                r#"{"cmd":"port","action":{"action":"add","name":"vm1","mac":"ff:ff:ff:ff:ff:ff"}}"#,
                "--mac",
            ),
            (
                r#"{"cmd":"port","action":{"action":"set","name":"vm1","vlan":5000}}"#,
                "--vlan",
            ),
            (
                r#"{"cmd":"port","action":{"action":"del","name":""}}"#,
                "NAME",
            ),
            (
                r#"{"cmd":"port","action":{"action":"set","name":"vm1","qmp":"vm1.qmp"}}"#,
                "--qmp",
            ),
            (r#"{"cmd":"announce","port":"vm 1"}"#, "--port"),
            (
                r#"{"cmd":"announce","port":"vm1","ip":["224.0.0.1"]}"#,
                "--ip",
            ),
            (
                r#"{"cmd":"announce","port":"vm1","ip":["fd00::1","fd00::1"]}"#,
                "twice",
            ),
            (
                r#"{"cmd":"announce","port":"vm1","mac":"01:00:5e:00:00:01"}"#,
                "--mac",
            ),
            (r#"{"cmd":"nosuch"}"#, "bad request"),
            ("\u{0}", "bad request"),
        ] {
            let e = req(json).unwrap_err();
            assert!(e.contains(want), "{json}: {e}");
        }
        let many: Vec<String> = (1..=33).map(|i| format!("\"fd00::{i:x}\"")).collect();
        let e = req(&format!(
            r#"{{"cmd":"announce","port":"vm1","ip":[{}]}}"#,
            many.join(",")
        ))
        .unwrap_err();
        assert!(e.contains("at most 32"), "{e}");
        let long = format!("/{}", "q".repeat(120));
        let e = req(&format!(
            r#"{{"cmd":"port","action":{{"action":"add","name":"vm1","qmp":"{long}"}}}}"#
        ))
        .unwrap_err();
        assert!(e.contains("--qmp"), "{e}");
        let e = req(&format!(
            r#"{{"cmd":"port","action":{{"action":"add","name":"vm1","vhost_user":"{long}"}}}}"#
        ))
        .unwrap_err();
        assert!(
            e.contains("--vhost-user") && e.contains("unix socket"),
            "{e}"
        );
        assert!(parse_request(&[0xff, 0xfe]).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn good_requests_pass() {
        for json in [
            r#"{"cmd":"stats"}"#,
            r#"{"cmd":"fdb"}"#,
            r#"{"cmd":"port","action":{"action":"add","name":"vm1","mtu":1500,"mac":"52:54:00:00:00:01","ip":["198.19.1.5"],"vlan":10}}"#,
            r#"{"cmd":"port","action":{"action":"add","name":"vm1","attach":"vnet3"}}"#,
            r#"{"cmd":"port","action":{"action":"set","name":"vm1","vlan":0}}"#,
            r#"{"cmd":"port","action":{"action":"set","name":"vm1","qmp":"/run/meshwire/vm1.qmp"}}"#,
            r#"{"cmd":"port","action":{"action":"set","name":"vm1","qmp":""}}"#,
            r#"{"cmd":"port","action":{"action":"add","name":"vm1","attach":"vnet3","qmp":"/run/meshwire/vm1.qmp"}}"#,
            r#"{"cmd":"port","action":{"action":"add","name":"vm1","vhost_user":"/run/meshwire/vm1.sock","mtu":9000,"mac":"52:54:00:00:00:01","ip":["198.19.1.5"]}}"#,
            r#"{"cmd":"port","action":{"action":"add","name":"vm1","vhost_user":"/run/meshwire/vm1.sock","qmp":"/run/meshwire/vm1.qmp"}}"#,
            r#"{"cmd":"port","action":{"action":"set","name":"vm1","ip":["198.19.1.6"]}}"#,
            r#"{"cmd":"announce","port":"vm1","mac":"52:54:00:00:00:01","ip":["198.19.1.5","fd00::5"]}"#,
        ] {
            req(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        }
    }
}
