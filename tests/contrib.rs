//! The files operators install or read beside the binary stay true to it:
//! the systemd unit passes `systemd-analyze verify`, every expression of
//! the Grafana dashboard names a metric the daemon exports, and the config
//! reference of docs/operations.md lists exactly the keys the config
//! structs accept (and checks as a config), and the libvirt qemu hook
//! drives a real daemon's ports (`contrib/hook.rs`).

use std::collections::BTreeSet;
use std::fmt::Display;
use std::path::Path;
use std::process::Command;

use serde::de::{DeserializeOwned, Visitor};

#[path = "contrib/hook.rs"]
mod hook;

const BIN: &str = env!("CARGO_BIN_EXE_meshwire");

fn read(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("meshwire-contrib-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn systemd_unit_verifies() {
    let unit = read("contrib/systemd/meshwire.service");
    for want in [
        "Type=notify\n",
        "WatchdogSec=",
        "User=meshwire\n",
        "ProtectSystem=strict\n",
        "NoNewPrivileges=yes\n",
        "AmbientCapabilities=CAP_NET_ADMIN",
        "CapabilityBoundingSet=CAP_NET_ADMIN",
        "DeviceAllow=/dev/net/tun rw\n",
        "RuntimeDirectory=meshwire\n",
    ] {
        assert!(unit.contains(want), "the unit lacks {want:?}");
    }
    // verify checks that ExecStart's binary exists: point it at this build.
    let dir = tmpdir("unit");
    let f = dir.join("meshwire.service");
    std::fs::write(&f, unit.replace("/usr/bin/meshwire", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&f)
        .output()
        .expect("systemd-analyze (Debian package systemd) must be installed");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "systemd-analyze verify:\n{text}");
    // It also prints (and exits 0 on) some problems: none may mention the unit.
    assert!(
        !text.contains("meshwire.service"),
        "systemd-analyze verify:\n{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let users = read("contrib/systemd/meshwire.sysusers.conf");
    assert!(users.lines().any(|l| l.starts_with("u meshwire ")));
    let tmp = read("contrib/systemd/meshwire.tmpfiles.conf");
    assert!(tmp.contains("/etc/meshwire/key 0600 meshwire meshwire"));
}

fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("meshwire_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn grafana_dashboard_uses_exported_metrics() {
    let text = read("contrib/grafana/meshwire.json");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(dash["title"].is_string() && dash["panels"].is_array());
    let mut all = Vec::new();
    exprs(&dash, &mut all);
    assert!(all.len() >= 10, "only {} expressions", all.len());
    let exported: BTreeSet<&str> = meshwire::metrics::NAMES.iter().map(|(n, _)| *n).collect();
    let mut used = BTreeSet::new();
    for e in &all {
        let names = metric_names(e);
        assert!(
            !names.is_empty(),
            "an expression without a meshwire metric: {e}"
        );
        for n in names {
            assert!(
                exported.contains(n.as_str()),
                "{n} (in {e}) is not exported"
            );
            used.insert(n);
        }
    }
    for must in [
        "meshwire_peers_up",
        "meshwire_peer_tx_bytes_total",
        "meshwire_port_drops_total",
        "meshwire_fdb_entries",
        "meshwire_vm_moves_total",
    ] {
        assert!(used.contains(must), "the dashboard does not show {must}");
    }
}

#[test]
fn operations_guide_names_every_metric() {
    let doc = read("docs/operations.md");
    for (name, _) in meshwire::metrics::NAMES {
        assert!(
            doc.contains(&format!("`{name}`")),
            "docs/operations.md lacks `{name}`"
        );
    }
}

/// The field names a config struct accepts, as serde sees them: a
/// deserializer that stops at `deserialize_struct` and keeps its list.
fn fields<T: DeserializeOwned>() -> BTreeSet<String> {
    #[derive(Debug)]
    struct Stop;
    impl Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: Display>(_: M) -> Self {
            Stop
        }
    }
    struct Capture<'a>(&'a mut Option<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for Capture<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut f = None;
    let _ = T::deserialize(Capture(&mut f));
    f.expect("a struct").iter().map(|s| s.to_string()).collect()
}

/// The TOML block after `<!-- config-reference -->` in the guide.
fn reference_block(doc: &str) -> &str {
    let start = doc.find("<!-- config-reference -->").expect("the marker");
    let rest = &doc[start..];
    let open = rest.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let len = rest[open..].find("\n```").expect("its end");
    &rest[open..open + len + 1]
}

#[test]
fn config_reference_lists_every_key() {
    use meshwire::config::*;
    let doc = read("docs/operations.md");
    let block = reference_block(&doc);
    let mut want = BTreeSet::new();
    for (section, keys) in [
        ("node", fields::<NodeConfig>()),
        ("mesh", fields::<MeshConfig>()),
        ("control", fields::<ControlConfig>()),
        ("metrics", fields::<MetricsConfig>()),
        ("peer", fields::<PeerConfig>()),
        ("port", fields::<PortConfig>()),
    ] {
        for k in keys {
            want.insert(format!("{section}.{k}"));
        }
    }
    let sections: BTreeSet<String> = fields::<Config>();
    assert_eq!(
        sections,
        ["control", "mesh", "metrics", "node", "peer", "port"]
            .map(String::from)
            .into(),
        "a new config section: add it to this test and to the guide"
    );
    // Keys in the block, commented out or not, by section.
    let mut got = BTreeSet::new();
    let mut section = String::new();
    for line in block.lines() {
        let l = line.trim_start_matches('#').trim();
        if let Some(h) = l.strip_prefix('[') {
            section = h.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        let Some((k, _)) = l.split_once(" = ") else {
            continue;
        };
        if k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            got.insert(format!("{section}.{k}"));
            assert!(
                line.contains("default") || line.contains("required"),
                "{section}.{k}: say its default (or that it is required): {line}"
            );
        }
    }
    let missing: Vec<_> = want.difference(&got).collect();
    let stale: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty(),
        "keys missing from the reference: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "keys in the reference the config does not know: {stale:?}"
    );

    // The block as written (its uncommented keys) is a valid config.
    let dir = tmpdir("ref");
    let key = Command::new(BIN).arg("genkey").output().unwrap().stdout;
    std::fs::write(dir.join("key"), key).unwrap();
    let mut cfg = block.replace("/etc/meshwire/key", dir.join("key").to_str().unwrap());
    // The example's group must exist on this machine.
    cfg = cfg.replace("group = \"meshwire\"", "group = \"root\"");
    std::fs::write(dir.join("meshwire.toml"), cfg).unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config"])
        .arg(dir.join("meshwire.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the reference does not check: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `scripts/install` into a staging root gives the documented layout, and
/// systemd's own tools, run on that root, make the user and group and give
/// /etc/meshwire and the key the modes and owners the guide promises.
#[test]
fn install_layout_with_sysusers_and_tmpfiles() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let root = tmpdir("install");
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install"))
        .env("DESTDIR", &root)
        .env("BIN", BIN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (path, mode) in [
        ("usr/bin/meshwire", 0o755),
        ("lib/systemd/system/meshwire.service", 0o644),
        ("usr/lib/sysusers.d/meshwire.conf", 0o644),
        ("usr/lib/tmpfiles.d/meshwire.conf", 0o644),
        ("usr/share/doc/meshwire/operations.md", 0o644),
        ("usr/share/meshwire/grafana/meshwire.json", 0o644),
    ] {
        let m = std::fs::metadata(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(m.permissions().mode() & 0o7777, mode, "{path}");
    }
    std::fs::create_dir_all(root.join("etc/meshwire")).unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(args[0])
            .args(&args[1..])
            .arg(format!("--root={}", root.display()))
            .output()
            .unwrap_or_else(|e| panic!("{} (Debian package systemd): {e}", args[0]));
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&["systemd-sysusers"]);
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("meshwire:"))
        .unwrap_or_else(|| panic!("no user meshwire: {passwd}"));
    let f: Vec<&str> = line.split(':').collect();
    let (uid, gid): (u32, u32) = (f[2].parse().unwrap(), f[3].parse().unwrap());
    assert!(uid != 0 && gid != 0, "{line}");
    assert!(f[6].ends_with("nologin"), "{line}");
    // A key written with a careless umask, and the config.
    for (name, mode) in [("key", 0o644), ("meshwire.toml", 0o644)] {
        let p = root.join("etc/meshwire").join(name);
        std::fs::write(&p, "x").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    run(&["systemd-tmpfiles", "--create"]);
    let meta = |p: &str| std::fs::metadata(root.join(p)).unwrap();
    let d = meta("etc/meshwire");
    assert_eq!((d.mode() & 0o7777, d.uid(), d.gid()), (0o750, 0, gid));
    let k = meta("etc/meshwire/key");
    assert_eq!((k.mode() & 0o7777, k.uid(), k.gid()), (0o600, uid, gid));
    let c = meta("etc/meshwire/meshwire.toml");
    assert_eq!((c.mode() & 0o7777, c.uid(), c.gid()), (0o640, 0, gid));
    let _ = std::fs::remove_dir_all(&root);
}
