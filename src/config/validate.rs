//! Reading and checking the config: TOML errors turned into the field
//! they are about, and every key checked (ranges, addresses, keys,
//! interface names) into a [`Validated`] config.

use super::*;

/// Parses TOML text and checks every field.
pub fn parse(text: &str, base_dir: &Path) -> Result<Validated, ConfigError> {
    let raw: Config = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
    validate(raw, base_dir)
}

/// Reads and checks a config file.
pub fn load(path: &Path) -> Result<Validated, ConfigError> {
    // The text may hold the private key inline: wiped when done.
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| err("", format!("cannot read {}: {e}", path.display())))?,
    );
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base)
}

fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    // toml names the key in "unknown field" and "missing field" errors but
    // not in type errors; its span does point at the offending line, so the
    // field path is read from there.
    let msg = e.message().trim().to_string();
    let Some(span) = e.span() else {
        return err("", msg);
    };
    let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
    let field = field_at(text, span.start).unwrap_or_default();
    err(field, format!("{msg} (line {line_no})"))
}

/// The dotted path of the key whose line holds byte `pos`: the enclosing
/// table header (with an index for arrays of tables) and the key itself.
fn field_at(text: &str, pos: usize) -> Option<String> {
    let pos = pos.min(text.len());
    let line_start = text[..pos].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    // The last table header before this line, and how often an array table
    // of that name appeared up to here.
    let mut table: Option<String> = None;
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    for l in text[..line_start].lines() {
        let l = l.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
            let name = name.trim().to_string();
            let n = counts.entry(name.clone()).or_insert(0);
            table = Some(format!("{name}[{n}]"));
            *n += 1;
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            table = Some(name.trim().to_string());
        }
    }
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    }
}

/// Upper bound on `node.workers` (and on the per-CPU default).
pub const MAX_WORKERS: usize = 64;

/// The longest MAC-flap freeze: past a day it is an outage, not a guard.
const MAX_FLAP_FREEZE_MS: u64 = 86_400_000;

/// Checks a config built in memory (`ctl peer` changes the running one)
/// exactly as a file's.
pub fn check_raw(raw: Config, base_dir: &Path) -> Result<Validated, ConfigError> {
    validate(raw, base_dir)
}

fn validate(raw: Config, base_dir: &Path) -> Result<Validated, ConfigError> {
    let private_key = node_private_key(&raw.node, base_dir)?;
    let public_key = keys::public_from_private(&private_key);
    if raw.node.listen_port == 0 {
        return Err(err("node.listen_port", "must be 1-65535"));
    }
    if raw.node.mac_flap_freeze_ms > MAX_FLAP_FREEZE_MS {
        return Err(err(
            "node.mac_flap_freeze_ms",
            "must be at most 86400000 (a day)",
        ));
    }
    if raw.node.underlay_mtu < 1280 || raw.node.underlay_mtu > 65535 - 100 {
        return Err(err("node.underlay_mtu", "must be between 1280 and 65435"));
    }
    if raw.node.workers > MAX_WORKERS {
        return Err(err(
            "node.workers",
            format!("must be between 0 (one per CPU) and {MAX_WORKERS}"),
        ));
    }
    check_inner_address("node.address", raw.node.address)?;
    let iv = raw.mesh.originator_interval_ms;
    if !(10..=3_600_000).contains(&iv) {
        return Err(err(
            "mesh.originator_interval_ms",
            "must be between 10 and 3600000",
        ));
    }
    if let Some(t) = raw.mesh.peer_timeout_ms {
        if t < iv || t > 3_600_000 {
            return Err(err(
                "mesh.peer_timeout_ms",
                "must be at least originator_interval_ms and at most 3600000",
            ));
        }
    }
    raw.control.access()?;
    raw.metrics.listen_addr()?;

    let mut peers = Vec::with_capacity(raw.peers.len());
    if raw.peers.len() > crate::tunnel::MAX_PEERS {
        return Err(err(
            "peer",
            format!(
                "{} peers; at most {}",
                raw.peers.len(),
                crate::tunnel::MAX_PEERS
            ),
        ));
    }
    let mut seen_keys = HashSet::new();
    let mut seen_addrs = HashSet::new();
    for (i, p) in raw.peers.iter().enumerate() {
        let f = |k: &str| format!("peer[{i}].{k}");
        let pk = keys::decode_key(&p.public_key).map_err(|m| err(f("public_key"), m))?;
        if pk == public_key {
            return Err(err(f("public_key"), "is this node's own public key"));
        }
        if !seen_keys.insert(pk) {
            return Err(err(f("public_key"), "appears twice"));
        }
        check_inner_address(&f("address"), p.address)?;
        if p.address == raw.node.address {
            return Err(err(f("address"), "is this node's own address"));
        }
        if p.address.is_ipv4() != raw.node.address.is_ipv4() {
            return Err(err(
                f("address"),
                "must be of the same family as node.address (gretap local/remote)",
            ));
        }
        if !seen_addrs.insert(p.address) {
            return Err(err(f("address"), "appears twice"));
        }
        let endpoint = match &p.endpoint {
            None => None,
            Some(s) => Some(parse_endpoint(s).map_err(|m| err(f("endpoint"), m))?),
        };
        if let Some(mtu) = p.mtu {
            // IPv6's minimum link MTU; batman fragments need room.
            if !(1280..=65000).contains(&mtu) {
                return Err(err(f("mtu"), "must be between 1280 and 65000"));
            }
        }
        if p.persistent_keepalive == Some(0) {
            // wg(8) treats 0 as off; accept it the same way.
        }
        peers.push(ValidPeer {
            public_key: pk,
            endpoint,
            address: p.address,
            persistent_keepalive: p.persistent_keepalive.filter(|&k| k > 0),
            mtu: p.mtu,
        });
    }

    let mut seen_ports = HashSet::new();
    let mut seen_devices = HashSet::new();
    for (i, p) in raw.ports.iter().enumerate() {
        let f = format!("port[{i}].name");
        check_ifname(&p.name).map_err(|m| err(&f, m))?;
        if !seen_ports.insert(p.name.clone()) {
            return Err(err(f, "appears twice"));
        }
        if let Some(dev) = &p.attach {
            let f = format!("port[{i}].attach");
            check_ifname(dev).map_err(|m| err(&f, m))?;
            if !seen_devices.insert(dev.clone()) {
                return Err(err(f, "this device is attached twice"));
            }
            if p.mtu.is_some() {
                return Err(err(
                    format!("port[{i}].mtu"),
                    "an attached device keeps its own MTU (libvirt's): remove the key",
                ));
            }
            if !p.offload {
                return Err(err(
                    format!("port[{i}].offload"),
                    "an attached device always carries virtio headers: remove the key",
                ));
            }
        }
        if let Some(sock) = &p.vhost_user {
            let f = format!("port[{i}].vhost_user");
            if !sock.is_absolute() || sock.file_name().is_none() {
                return Err(err(f, "must be an absolute path to a socket file"));
            }
            if !seen_devices.insert(sock.to_string_lossy().into_owned()) {
                return Err(err(f, "this socket is used by two ports"));
            }
            if p.attach.is_some() || p.bridge.is_some() {
                return Err(err(
                    f,
                    "a vhost-user port is the VM's own device, not a TAP: remove attach and bridge",
                ));
            }
            p.vhost_access()
                .map_err(|(key, m)| err(format!("port[{i}].{key}"), m))?;
        } else {
            for (key, set) in [
                ("vhost_user_group", p.vhost_user_group.is_some()),
                ("vhost_user_mode", p.vhost_user_mode.is_some()),
            ] {
                if set {
                    return Err(err(
                        format!("port[{i}].{key}"),
                        "only for a vhost-user port: set vhost_user or remove the key",
                    ));
                }
            }
        }
        if let Some(br) = &p.bridge {
            let f = format!("port[{i}].bridge");
            check_ifname(br).map_err(|m| err(&f, m))?;
            if p.attach.is_some() {
                return Err(err(
                    f,
                    "an attached device is the VM's own TAP, not a bridge uplink: remove one of bridge and attach",
                ));
            }
            if *br == p.name {
                return Err(err(f, "a port cannot be a port of itself"));
            }
        }
        if let Some(q) = &p.qmp {
            crate::port::watch::client::check_path(q)
                .map_err(|m| err(format!("port[{i}].qmp"), m))?;
        }
        if let Some(mtu) = p.mtu {
            if !(576..=65000).contains(&mtu) {
                return Err(err(
                    format!("port[{i}].mtu"),
                    "must be between 576 and 65000",
                ));
            }
        }
        p.policy_spec().resolve(&format!("port[{i}]"))?;
    }

    Ok(Validated {
        raw,
        private_key,
        public_key,
        peers,
    })
}

/// Warnings about where the private key is kept (see
/// `keys::file_mode_warning` for why these warn rather than refuse).
pub fn key_warnings(cfg: &Validated, config_path: &Path) -> Vec<String> {
    let base = config_path.parent().unwrap_or(Path::new("."));
    let node = &cfg.raw.node;
    let found = match &node.private_key_file {
        Some(p) => keys::file_mode_warning(&base.join(p), "node.private_key_file"),
        None => keys::file_mode_warning(config_path, "the config (it holds node.private_key)"),
    };
    found.into_iter().collect()
}

fn node_private_key(node: &NodeConfig, base_dir: &Path) -> Result<[u8; 32], ConfigError> {
    match (&node.private_key, &node.private_key_file) {
        (Some(_), Some(_)) => Err(err(
            "node.private_key",
            "give either private_key or private_key_file, not both",
        )),
        (None, None) => Err(err(
            "node.private_key",
            "missing (or give node.private_key_file)",
        )),
        (Some(k), None) => keys::decode_key(k).map_err(|m| err("node.private_key", m)),
        (None, Some(path)) => {
            let path = if path.is_relative() {
                base_dir.join(path)
            } else {
                path.clone()
            };
            let text = zeroize::Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| {
                err(
                    "node.private_key_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?);
            keys::decode_key(&text).map_err(|m| err("node.private_key_file", m))
        }
    }
}

fn check_inner_address(field: &str, a: IpAddr) -> Result<(), ConfigError> {
    if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
        return Err(err(field, "must be a unicast address"));
    }
    if let IpAddr::V4(v4) = a {
        if v4.is_broadcast() {
            return Err(err(field, "must be a unicast address"));
        }
    }
    Ok(())
}

/// `host:port` or `[v6]:port`, numeric (no DNS inside a dataplane daemon).
pub fn parse_endpoint(s: &str) -> Result<SocketAddr, String> {
    let sa: SocketAddr = s
        .parse()
        .map_err(|_| format!("'{s}' is not IP:port (IPv6 as [addr]:port)"))?;
    if sa.port() == 0 {
        return Err("port must not be 0".into());
    }
    if sa.ip().is_unspecified() || sa.ip().is_multicast() {
        return Err(format!("'{s}' is not a unicast address"));
    }
    Ok(sa)
}

/// Linux interface names: 1-15 bytes, no '/', ':' or white space.
pub fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err("interface names are 1 to 15 characters".into());
    }
    if name == "." || name == ".." {
        return Err("not a valid interface name".into());
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err("interface names may not hold '/', ':' or white space".into());
    }
    Ok(())
}
