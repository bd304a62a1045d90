//! The command-line contract: key tools interchangeable with wg(8), config
//! checks that name the bad field.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_meshwire");

fn run(args: &[&str], stdin: &str) -> Output {
    let mut c = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn genkey_pubkey_roundtrip() {
    let g = run(&["genkey"], "");
    assert!(g.status.success());
    let private = stdout(&g);
    assert_eq!(private.len(), 44);
    let p = run(&["pubkey"], &format!("{private}\n"));
    assert!(p.status.success());
    assert_eq!(stdout(&p).len(), 44);
    assert_ne!(stdout(&p), private);
    // RFC 7748 6.1: Alice's key pair.
    let alice = run(
        &["pubkey"],
        "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=\n",
    );
    assert_eq!(
        stdout(&alice),
        "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo="
    );
    let bad = run(&["pubkey"], "not a key\n");
    assert!(!bad.status.success());
}

/// Where wg(8) is installed (CI installs it), both tools agree both ways.
#[test]
fn keys_interchangeable_with_wg() {
    if Command::new("wg").arg("--version").output().is_err() {
        if std::env::var_os("CI").is_some() {
            panic!("CI must install wireguard-tools for this test");
        }
        eprintln!("wg not installed here; CI runs this check");
        return;
    }
    let wg_pubkey = |private: &str| {
        let mut wg = Command::new("wg")
            .arg("pubkey")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        wg.stdin
            .take()
            .unwrap()
            .write_all(private.as_bytes())
            .unwrap();
        stdout(&wg.wait_with_output().unwrap())
    };
    let wg_private = stdout(&Command::new("wg").arg("genkey").output().unwrap());
    assert_eq!(
        wg_pubkey(&wg_private),
        stdout(&run(&["pubkey"], &wg_private))
    );
    let our_private = stdout(&run(&["genkey"], ""));
    assert_eq!(
        wg_pubkey(&our_private),
        stdout(&run(&["pubkey"], &our_private))
    );
}

fn check(text: &str) -> Output {
    let dir = std::env::temp_dir().join(format!("mw-cli-{}-{}", std::process::id(), text.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.toml");
    std::fs::write(&path, text).unwrap();
    let o = run(&["check", "--config", path.to_str().unwrap()], "");
    std::fs::remove_dir_all(&dir).unwrap();
    o
}

fn good() -> String {
    let k = stdout(&run(&["genkey"], ""));
    let p = stdout(&run(&["pubkey"], &stdout(&run(&["genkey"], ""))));
    format!("[node]\nprivate_key = \"{k}\"\nlisten_port = 51820\naddress = \"198.19.0.1\"\n[mesh]\noriginator_interval_ms = 1000\n[control]\nsocket = \"/run/meshwire/meshwire.sock\"\n[[peer]]\npublic_key = \"{p}\"\nendpoint = \"198.18.0.2:51820\"\naddress = \"198.19.0.2\"\npersistent_keepalive = 25\n[[port]]\nname = \"vm1\"\n")
}

#[test]
fn check_accepts_the_documented_config() {
    let o = check(&good());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn check_names_the_bad_field() {
    for (text, field) in [
        (good().replace("listen_port", "listen_prot"), "listen_prot"),
        (
            good().replace("198.18.0.2:51820", "nowhere"),
            "peer[0].endpoint",
        ),
        (
            good().replace("name = \"vm1\"", "name = \"much-too-long-name\""),
            "port[0].name",
        ),
        (
            good() + "[[peer]]\npublic_key = \"AAAA\"\naddress = \"198.19.0.3\"\n",
            "peer[1].public_key",
        ),
        (
            good().replace(
                "originator_interval_ms = 1000",
                "originator_interval_ms = \"x\"",
            ),
            "originator_interval_ms",
        ),
    ] {
        let o = check(&text);
        assert!(!o.status.success(), "accepted: {text}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(field), "'{err}' does not name {field}");
    }
}

/// Runs a daemon with no peers and no ports (it sends nothing) until its
/// first log line, then stops it; returns what it wrote to stderr.
fn first_log_lines(extra: &[&str], tag: &str) -> String {
    let dir = std::env::temp_dir().join(format!("mw-cli-log-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let k = stdout(&run(&["genkey"], ""));
    let port = 20000 + (std::process::id() % 20000) as u16 + tag.len() as u16;
    let cfg = format!(
        "[node]\nprivate_key = \"{k}\"\nlisten_port = {port}\naddress = \"198.19.0.1\"\n[control]\nsocket = \"{}\"\n",
        dir.join("s").display()
    );
    let path = dir.join("c.toml");
    std::fs::write(&path, cfg).unwrap();
    let log = std::fs::File::create(dir.join("log")).unwrap();
    let mut args = vec!["run", "--config", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut child = Command::new(BIN)
        .args(&args)
        .env("RUST_LOG", "info")
        .stderr(log)
        .spawn()
        .unwrap();
    let mut text = String::new();
    for _ in 0..100 {
        text = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        if text.contains("meshwire running") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    std::fs::remove_dir_all(&dir).unwrap();
    text
}

#[test]
fn logs_to_a_file_carry_no_colour_and_json_is_one_object_per_line() {
    let text = first_log_lines(&[], "text");
    assert!(text.contains("meshwire running"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in a log file: {text:?}"
    );
    let json = first_log_lines(&["--log-format", "json"], "json");
    let line = json
        .lines()
        .find(|l| l.contains("meshwire running"))
        .unwrap_or_else(|| panic!("{json}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("a JSON object per line");
    assert_eq!(v["level"], "INFO", "{v}");
    assert_eq!(v["fields"]["message"], "meshwire running", "{v}");
}

/// `genkey > file` warns when the file is world-readable (as `wg genkey`
/// does); `check` warns about a private key file, or a config holding the
/// key, that others may read, and still passes (why warn, not refuse: README).
#[test]
fn key_file_modes_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("mw-cli-keymode-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("key");
    // genkey through a shell redirect, with the umask an operator has.
    let genkey = |umask: &str| {
        let _ = std::fs::remove_file(&key);
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask}; exec \"$0\" genkey > \"$1\""))
            .arg(BIN)
            .arg(&key)
            .output()
            .unwrap();
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let warned = genkey("022");
    assert!(warned.contains("world accessible"), "{warned}");
    assert_eq!(std::fs::read_to_string(&key).unwrap().trim().len(), 44);
    assert_eq!(genkey("077"), "");
    // Printed to a pipe (this test reads it): no warning.
    let o = run(&["genkey"], "");
    assert!(String::from_utf8_lossy(&o.stderr).is_empty());

    let p = stdout(&run(&["pubkey"], &stdout(&run(&["genkey"], ""))));
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        format!("[node]\nprivate_key_file = \"key\"\naddress = \"198.19.0.1\"\n[[peer]]\npublic_key = \"{p}\"\naddress = \"198.19.0.2\"\n"),
    )
    .unwrap();
    let check = || run(&["check", "--config", cfg.to_str().unwrap()], "");
    for (mode, warn) in [
        (0o600, None),
        (0o640, Some("readable by its group")),
        (0o644, Some("every user")),
    ] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let o = check();
        assert!(o.status.success(), "{mode:o}");
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        match warn {
            None => assert!(err.is_empty(), "{mode:o}: {err}"),
            Some(w) => assert!(
                err.contains("node.private_key_file")
                    && err.contains(w)
                    && err.contains("chmod 600"),
                "{mode:o}: {err}"
            ),
        }
    }
    // An inline key makes the config itself the file to keep private.
    let k = std::fs::read_to_string(&key).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "[node]\nprivate_key = \"{}\"\naddress = \"198.19.0.1\"\n",
            k.trim()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = String::from_utf8_lossy(&check().stderr).to_string();
    assert!(
        err.contains("the config (it holds node.private_key)"),
        "{err}"
    );
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(String::from_utf8_lossy(&check().stderr).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ctl_says_why_it_cannot_reach_the_daemon() {
    let dir = std::env::temp_dir().join(format!("mw-cli-ctl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("none.sock");
    let o = run(&["ctl", "--socket", sock.to_str().unwrap(), "peers"], "");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is meshwire running"), "{err}");
    // A socket nobody listens on any more: refused, the same words.
    let bound = dir.join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&bound).unwrap());
    let o = run(&["ctl", "--socket", bound.to_str().unwrap(), "peers"], "");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no daemon is listening"), "{err}");
    // A daemon that takes the request and never answers: given up after
    // --timeout, saying how to wait longer; 0 is refused by name.
    let mute = dir.join("mute.sock");
    let listener = std::os::unix::net::UnixListener::bind(&mute).unwrap();
    let m = mute.to_str().unwrap();
    let o = run(&["ctl", "--socket", m, "--timeout", "1", "peers"], "");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--timeout"), "{err}");
    drop(listener);
    let o = run(&["ctl", "--socket", m, "--timeout", "0", "peers"], "");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--timeout"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ctl port add --vhost-user` is checked before connecting, like the
/// config key: errors name the flag.
#[test]
fn ctl_port_add_vhost_user_is_checked_by_flag() {
    let sock = std::env::temp_dir().join(format!("mw-cli-vu-{}.sock", std::process::id()));
    let s = sock.to_str().unwrap();
    for (args, want) in [
        (
            &["--vhost-user", "vm1.sock"][..],
            "--vhost-user: vm1.sock: not an absolute path",
        ),
        (
            &["--vhost-user", "/run/vm1.sock", "--attach", "vnet3"][..],
            "--vhost-user: a vhost-user port is the VM's own device",
        ),
        (
            &["--vhost-user", "/run/vm1.sock", "--bridge", "br0"][..],
            "--vhost-user: a vhost-user port is the VM's own device",
        ),
        (
            &["--vhost-user", "/run/vm1.sock", "--mtu", "100"][..],
            "--mtu: 100",
        ),
        (&["--vhost-user-group", "kvm"][..], "only with --vhost-user"),
        (
            &["--vhost-user", "/run/vm1.sock", "--vhost-user-mode", "0666"][..],
            "--vhost-user-mode: 0666 opens the socket to every local user",
        ),
        (
            &[
                "--vhost-user",
                "/run/vm1.sock",
                "--vhost-user-group",
                "no-such-group-mw-x",
            ][..],
            "--vhost-user-group: no group 'no-such-group-mw-x'",
        ),
    ] {
        let mut a = vec!["ctl", "--socket", s, "port", "add", "vm1"];
        a.extend_from_slice(args);
        let o = run(&a, "");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{a:?}: {err}");
    }
    // A good one gets as far as connecting.
    let o = run(
        &[
            "ctl",
            "--socket",
            s,
            "port",
            "add",
            "vm1",
            "--vhost-user",
            "/run/vm1.sock",
            "--mac",
            "52:54:00:00:00:01",
            "--ip",
            "198.19.1.5",
        ],
        "",
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is meshwire running"), "{err}");
}
