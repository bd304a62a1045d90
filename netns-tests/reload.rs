//! `meshwire ctl reload [--dry-run]` and SIGHUP (issue 14): the plan
//! names what changes, what a reload applies (ports and their policies)
//! is applied, and everything else it cannot apply yet (a peer removed,
//! the listen port) is named as needing a restart, logged, and left as it
//! runs: traffic to the peer that left the file keeps flowing. A broken
//! file is refused with the field named, and nothing changes.

use std::fs;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

fn reload(t: &Topology, dry: bool) -> Result<Value, String> {
    let sock = t.socket(1);
    let mut args = vec![BIN, "ctl", "--socket", sock.to_str().unwrap(), "reload"];
    if dry {
        args.push("--dry-run");
    }
    args.push("--json");
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("meshwire ctl reload");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
}

fn port_names(t: &Topology) -> Vec<String> {
    t.ctl(1, "ports")
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect()
}

fn list(v: &Value, k: &str) -> Vec<String> {
    v[k].as_array()
        .unwrap_or_else(|| panic!("no {k} in {v}"))
        .iter()
        .filter_map(|x| x.as_str().map(String::from))
        .collect()
}

#[test]
fn reload_applies_ports_and_names_what_needs_a_restart() {
    let mut t = Topology::new(
        "mwRl",
        &[&[Attach::TapNic], &[Attach::TapNic], &[Attach::TapNic]],
        500,
    );
    t.start_all();
    assert!(t.wait_routes(Duration::from_secs(30)), "{}", t.dump_logs());
    let far = t.vm("vm3a").ip4.clone();
    assert!(t.ping_until("vm1a", &far, Duration::from_secs(30)));

    // Nothing changed: an empty plan.
    let p = reload(&t, true).unwrap();
    assert_eq!(p["applied"], false);
    for k in [
        "ports_added",
        "ports_removed",
        "policies_changed",
        "needs_restart",
    ] {
        assert!(list(&p, k).is_empty(), "{k}: {p}");
    }

    // hv3's peer leaves the file, a port comes, the listen port changes.
    let path = t.config_path(1);
    let orig = fs::read_to_string(&path).unwrap();
    let pk3 = t.hvs[2].public_key.clone();
    let start = orig.find(&format!("public_key = \"{pk3}\"")).unwrap();
    let block_start = orig[..start].rfind("[[peer]]").unwrap();
    let block_end = orig[start..]
        .find("\n[")
        .map_or(orig.len(), |i| start + i + 1);
    let mut edited = format!("{}{}", &orig[..block_start], &orig[block_end..]);
    edited = edited.replacen("listen_port = 51820", "listen_port = 51821", 1);
    edited += "\n[[port]]\nname = \"t-new\"\n";
    fs::write(&path, &edited).unwrap();

    let p = reload(&t, true).unwrap();
    assert_eq!(p["applied"], false, "{p}");
    assert_eq!(list(&p, "ports_added"), ["t-new"], "{p}");
    let restart = list(&p, "needs_restart");
    assert!(restart.contains(&"node.listen_port".to_string()), "{p}");
    assert!(restart.contains(&format!("peer[{pk3}] removed")), "{p}");
    assert!(
        !port_names(&t).contains(&"t-new".to_string()),
        "dry run applied"
    );

    let p = reload(&t, false).unwrap();
    assert_eq!(p["applied"], true, "{p}");
    assert!(wait_until(Duration::from_secs(10), || port_names(&t)
        .contains(&"t-new".to_string())));
    let log = t.log(1);
    assert!(
        log.contains("needs a restart (not applied)") && log.contains("node.listen_port"),
        "{log}"
    );
    // Not applied means still running: hv3 stays a peer.
    assert!(t.ping_until("vm1a", &far, Duration::from_secs(30)));
    // ... and the next reload names it again.
    let p = reload(&t, true).unwrap();
    assert!(list(&p, "needs_restart").contains(&format!("peer[{pk3}] removed")));
    assert!(list(&p, "ports_added").is_empty(), "{p}");

    // A broken file: refused, the field named, nothing changes.
    fs::write(
        &path,
        edited.replacen("listen_port = 51821", "listen_port = \"x\"", 1),
    )
    .unwrap();
    let e = reload(&t, false).unwrap_err();
    assert!(e.contains("listen_port"), "{e}");
    assert!(port_names(&t).contains(&"t-new".to_string()));

    // The human plan.
    fs::write(&path, &orig).unwrap();
    let sock = t.socket(1);
    let human = sh(&[BIN, "ctl", "--socket", sock.to_str().unwrap(), "reload"]);
    assert!(
        human.contains("applied") && human.contains("ports removed: t-new"),
        "{human}"
    );
    assert!(wait_until(Duration::from_secs(10), || !port_names(&t)
        .contains(&"t-new".to_string())));
}
