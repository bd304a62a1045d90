//! Config parsing and validation: defaults, and every error naming its field.

use super::*;

fn key() -> String {
    keys::encode_key(&keys::generate_private())
}

fn pubkey() -> String {
    keys::encode_key(&keys::public_from_private(&keys::generate_private()))
}

fn base() -> String {
    format!(
        "[node]\nprivate_key = \"{}\"\naddress = \"198.19.0.1\"\n[[peer]]\npublic_key = \"{}\"\nendpoint = \"198.18.0.2:51820\"\naddress = \"198.19.0.2\"\npersistent_keepalive = 25\n[[port]]\nname = \"vm1\"\n",
        key(),
        pubkey()
    )
}

#[test]
fn good_config() {
    let c = parse(&base(), Path::new(".")).unwrap();
    assert_eq!(c.raw.node.listen_port, 51820);
    assert_eq!(c.raw.mesh.originator_interval_ms, 1000);
    assert_eq!(c.raw.control.socket, PathBuf::from(DEFAULT_SOCKET));
    assert_eq!(c.peers.len(), 1);
    assert_eq!(c.peers[0].persistent_keepalive, Some(25));
    // Stock guests' 1500 by default; 1500 - 98 - 10 - 14 cross whole.
    assert_eq!(c.default_port_mtu(), 1500);
    assert_eq!(c.unfragmented_port_mtu(), 1378);
    // Without batman fragmentation nothing larger could cross.
    let nofrag = parse(
        &(base() + "[mesh]\nfragmentation = false\n"),
        Path::new("."),
    )
    .unwrap();
    assert_eq!(nofrag.default_port_mtu(), 1378);
    // Defaults of the speed issue's keys.
    assert_eq!(c.raw.node.workers, 0);
    assert!(c.workers() >= 1);
    assert!(c.raw.ports[0].offload && !c.raw.ports[0].udp_coalescing);
    assert!(c.raw.node.mss_clamp, "MSS clamping is on by default");
    // Scoped relaying by default; the kernel's rules on request.
    assert_eq!(c.raw.mesh.relay, super::RelayConfig::Scoped);
    let kernel = parse(&(base() + "[mesh]\nrelay = \"kernel\"\n"), Path::new(".")).unwrap();
    assert_eq!(kernel.raw.mesh.relay, super::RelayConfig::Kernel);
}

#[test]
fn workers_and_udp_coalescing() {
    let text = base().replace("[node]\n", "[node]\nworkers = 3\n") + "udp_coalescing = true\n";
    let c = parse(&text, Path::new(".")).unwrap();
    assert_eq!(c.workers(), 3);
    assert!(c.raw.ports[0].udp_coalescing);
    expect_field(
        &base().replace("[node]\n", "[node]\nworkers = 65\n"),
        "node.workers",
    );
    expect_field(
        &base().replace("[node]\n", "[node]\nworkers = -1\n"),
        "workers",
    );
}

#[test]
fn mac_flap_freeze() {
    let c = parse(&base(), Path::new(".")).unwrap();
    assert_eq!(
        c.raw.node.mac_flap_freeze_ms, 0,
        "detection only by default"
    );
    let on = base().replace("[node]\n", "[node]\nmac_flap_freeze_ms = 180000\n");
    let c = parse(&on, Path::new(".")).unwrap();
    assert_eq!(c.raw.node.mac_flap_freeze_ms, 180_000);
    expect_field(
        &base().replace("[node]\n", "[node]\nmac_flap_freeze_ms = 86400001\n"),
        "node.mac_flap_freeze_ms",
    );
    expect_field(
        &base().replace("[node]\n", "[node]\nmac_flap_freeze_ms = -1\n"),
        "mac_flap_freeze_ms",
    );
}

fn expect_field(text: &str, field: &str) {
    let e = parse(text, Path::new(".")).unwrap_err();
    assert!(
        e.to_string().contains(field),
        "error '{e}' does not name '{field}'"
    );
}

#[test]
fn unknown_key_named() {
    expect_field(&(base() + "bogus = 1\n"), "bogus");
    expect_field(
        &base().replace("[node]\n", "[node]\nlisten_prot = 1\n"),
        "listen_prot",
    );
}

#[test]
fn bad_fields_named() {
    expect_field(
        &base().replace("198.18.0.2:51820", "198.18.0.2"),
        "peer[0].endpoint",
    );
    expect_field(
        &base().replace("address = \"198.19.0.2\"", "address = \"fd00::2\""),
        "peer[0].address",
    );
    expect_field(
        &base().replace("name = \"vm1\"", "name = \"a/b\""),
        "port[0].name",
    );
    expect_field(
        &(base() + "[mesh]\noriginator_interval_ms = 1\n"),
        "mesh.originator_interval_ms",
    );
    let no_key = base()
        .lines()
        .filter(|l| !l.starts_with("private_key"))
        .collect::<Vec<_>>()
        .join("\n");
    expect_field(&no_key, "node.private_key");
    expect_field(
        &base().replacen("private_key = \"", "private_key = \"x", 1),
        "node.private_key",
    );
    expect_field("[node]\nprivate_key = \"\"\n", "address");
}

#[test]
fn type_errors_name_the_field() {
    expect_field(
        &(base() + "[mesh]\noriginator_interval_ms = \"x\"\n"),
        "mesh.originator_interval_ms",
    );
    expect_field(
        &base().replace("persistent_keepalive = 25", "persistent_keepalive = -1"),
        "peer[0].persistent_keepalive",
    );
    expect_field(&(base() + "[mesh]\nrelay = \"echo\"\n"), "mesh.relay");
    let two = base() + &format!("[[peer]]\npublic_key = \"{}\"\naddress = 5\n", pubkey());
    expect_field(&two, "peer[1].address");
}

#[test]
fn peers_past_the_peer_table_are_refused() {
    let one = "[[peer]]\npublic_key = \"x\"\naddress = \"198.19.0.9\"\n";
    let text = base() + &one.repeat(crate::tunnel::MAX_PEERS);
    let e = parse(&text, Path::new(".")).unwrap_err().to_string();
    assert!(e.starts_with("peer: 4097 peers; at most 4096"), "{e}");
}

#[test]
fn peer_mtu() {
    let c = parse(&base(), Path::new(".")).unwrap();
    assert_eq!(c.peer_hardif_mtu(0), 1402);
    let t = base().replace(
        "persistent_keepalive = 25",
        "persistent_keepalive = 25\nmtu = 1382",
    );
    let c = parse(&t, Path::new(".")).unwrap();
    assert_eq!(c.peer_hardif_mtu(0), 1382);
    // Never past what the underlay carries.
    let c = parse(&t.replace("1382", "9000"), Path::new(".")).unwrap();
    assert_eq!(c.peer_hardif_mtu(0), 1402);
    expect_field(&t.replace("1382", "1000"), "peer[0].mtu");
}

#[test]
fn ipv6_mtu() {
    let t = base()
        .replace("198.19.0.1", "fd00::1")
        .replace("198.19.0.2", "fd00::2");
    let c = parse(&t, Path::new(".")).unwrap();
    assert_eq!(c.unfragmented_port_mtu(), 1500 - 138 - 24);
    assert_eq!(c.default_port_mtu(), 1500);
}

#[test]
fn attach_ports() {
    let ok = base().replace("name = \"vm1\"", "name = \"vm1\"\nattach = \"vnet3\"");
    let v = parse(&ok, Path::new(".")).expect("attach");
    assert_eq!(v.raw.ports[0].attach.as_deref(), Some("vnet3"));
    expect_field(
        &base().replace("name = \"vm1\"", "name = \"vm1\"\nattach = \"a/b\""),
        "port[0].attach",
    );
    expect_field(
        &base().replace(
            "name = \"vm1\"",
            "name = \"vm1\"\nattach = \"vnet3\"\nmtu = 1500",
        ),
        "port[0].mtu",
    );
    expect_field(
        &base().replace(
            "name = \"vm1\"",
            "name = \"vm1\"\nattach = \"vnet3\"\noffload = false",
        ),
        "port[0].offload",
    );
    let twice = base().replace("name = \"vm1\"", "name = \"vm1\"\nattach = \"vnet3\"")
        + "[[port]]\nname = \"vm2\"\nattach = \"vnet3\"\n";
    expect_field(&twice, "port[1].attach");
}

#[test]
fn vhost_user_ports() {
    let with = |k: &str| base().replace("name = \"vm1\"", &format!("name = \"vm1\"\n{k}"));
    let v = parse(
        &with("vhost_user = \"/run/meshwire/vm1.sock\""),
        Path::new("."),
    )
    .expect("vhost_user");
    assert_eq!(
        v.raw.ports[0].vhost_user.as_deref(),
        Some(Path::new("/run/meshwire/vm1.sock"))
    );
    for bad in [
        "vhost_user = \"vm1.sock\"",
        "vhost_user = \"/\"",
        "vhost_user = \"/run/vm1.sock\"\nattach = \"vnet3\"",
        "vhost_user = \"/run/vm1.sock\"\nbridge = \"br0\"",
    ] {
        expect_field(&with(bad), "port[0].vhost_user");
    }
    let twice = with("vhost_user = \"/run/vm1.sock\"")
        + "[[port]]\nname = \"vm2\"\nvhost_user = \"/run/vm1.sock\"\n";
    expect_field(&twice, "port[1].vhost_user");
}

/// Who may connect to a vhost-user socket: its group and mode, each
/// refusal naming its key.
#[test]
fn vhost_user_socket_access() {
    let with = |k: &str| {
        let k = format!("vhost_user = \"/run/vm1.sock\"\n{k}");
        base().replace("name = \"vm1\"", &format!("name = \"vm1\"\n{k}"))
    };
    let access = |k: &str| {
        let v = parse(&with(k), Path::new(".")).expect(k);
        v.raw.ports[0].vhost_access().unwrap()
    };
    assert_eq!((access("").gid, access("").mode), (None, 0o660));
    let a = access("vhost_user_group = \"root\"\nvhost_user_mode = \"0600\"");
    assert_eq!((a.gid, a.mode), (Some(0), 0o600));
    let a = access("vhost_user_group = 64055\nvhost_user_mode = 0o640");
    assert_eq!((a.gid, a.mode), (Some(64055), 0o640));
    for (bad, field) in [
        (
            "vhost_user_group = \"no-such-group-meshwire-x\"",
            "vhost_user_group",
        ),
        ("vhost_user_group = \"\"", "vhost_user_group"),
        ("vhost_user_mode = \"0666\"", "vhost_user_mode"),
        ("vhost_user_mode = 660", "vhost_user_mode"),
        ("vhost_user_mode = \"0060\"", "vhost_user_mode"),
    ] {
        expect_field(&with(bad), &format!("port[0].{field}"));
    }
    // Without vhost_user the keys mean nothing: refused, not ignored.
    for key in ["vhost_user_group = \"root\"", "vhost_user_mode = \"0660\""] {
        let text = base().replace("name = \"vm1\"", &format!("name = \"vm1\"\n{key}"));
        let field = key.split(' ').next().unwrap();
        expect_field(&text, &format!("port[0].{field}"));
    }
}

#[test]
fn bridged_ports() {
    let ok = base().replace("name = \"vm1\"", "name = \"up1\"\nbridge = \"br-vms\"");
    let v = parse(&ok, Path::new(".")).expect("bridge");
    assert_eq!(v.raw.ports[0].bridge.as_deref(), Some("br-vms"));
    for bad in [
        "bridge = \"br/vms\"",
        "bridge = \"a-name-longer-than-15\"",
        "bridge = \"\"",
        "bridge = \"vm1\"",
        "bridge = \"br0\"\nattach = \"vnet3\"",
    ] {
        expect_field(
            &base().replace("name = \"vm1\"", &format!("name = \"vm1\"\n{bad}")),
            "port[0].bridge",
        );
    }
}

#[test]
fn port_policy_defaults() {
    // A port without mac: an uplink, every role, default rates.
    let c = parse(&base(), Path::new(".")).unwrap();
    let p = c.raw.ports[0].policy();
    assert_eq!(p, crate::bridge::PortPolicy::default());
    assert!(p.dhcp_server && p.router_advertisements && p.mac.is_none());
    assert!(p.arp_nd_rate > 0 && p.broadcast_rate > 0);
    // A VM port: spoof checks (its mac), no server roles, same rates.
    let vm = base() + "mac = \"52:54:00:12:34:56\"\nipv4 = [\"198.19.10.5\"]\nipv6 = [\"fd00:10::5\"]\nvlan = 10\n";
    let c = parse(&vm, Path::new(".")).unwrap();
    let p = c.raw.ports[0].policy();
    assert_eq!(p.mac, Some("52:54:00:12:34:56".parse().unwrap()));
    assert_eq!(p.ipv4, vec!["198.19.10.5".parse::<Ipv4Addr>().unwrap()]);
    assert_eq!(p.ipv6, vec!["fd00:10::5".parse::<Ipv6Addr>().unwrap()]);
    assert_eq!(p.vlan, Some(10));
    assert!(!p.dhcp_server && !p.router_advertisements);
    assert_eq!(p.arp_nd_rate, crate::bridge::policy::DEFAULT_ARP_ND_RATE);
}

#[test]
fn port_policy_contract_keys() {
    // The example, key for key.
    let text = base()
        + "mac = \"52:54:00:12:34:56\"\nipv4 = [\"198.19.10.5\"]\nipv6 = [\"fd00:10::5\"]\nvlan = 10\ndhcp_server = true\nrouter_advertisements = true\narp_nd_rate = 20\nbroadcast_rate = 200\n"
        + "[[port]]\nname = \"up\"\ntrunk = [10, 20]\nvlan = 30\n";
    let c = parse(&text, Path::new(".")).unwrap();
    let p = c.raw.ports[0].policy();
    assert!(p.dhcp_server && p.router_advertisements);
    assert_eq!((p.arp_nd_rate, p.broadcast_rate), (20, 200));
    let up = c.raw.ports[1].policy();
    assert_eq!((up.trunk.clone(), up.vlan), (vec![10, 20], Some(30)));
}

#[test]
fn port_policy_errors_name_the_field() {
    let vm = |extra: &str| base() + "mac = \"52:54:00:12:34:56\"\n" + extra;
    expect_field(&(base() + "mac = \"01:00:5e:00:00:01\"\n"), "port[0].mac");
    expect_field(&(base() + "mac = \"nonsense\"\n"), "port[0].mac");
    expect_field(&vm("ipv4 = [\"fd00::1\"]\n"), "port[0].ipv4");
    expect_field(&vm("ipv4 = [\"224.0.0.1\"]\n"), "port[0].ipv4[0]");
    expect_field(
        &vm("ipv4 = [\"198.19.1.1\", \"198.19.1.1\"]\n"),
        "port[0].ipv4[1]",
    );
    expect_field(&vm("ipv6 = [\"ff02::1\"]\n"), "port[0].ipv6[0]");
    expect_field(&(base() + "ipv4 = [\"198.19.1.1\"]\n"), "port[0].ipv4");
    expect_field(&(base() + "ipv6 = [\"fd00::1\"]\n"), "port[0].ipv6");
    expect_field(&vm("vlan = 0\n"), "port[0].vlan");
    expect_field(&vm("vlan = 4095\n"), "port[0].vlan");
    expect_field(&vm("vlan = 70000\n"), "port[0].vlan");
    expect_field(&vm("trunk = [10]\n"), "port[0].trunk");
    expect_field(&(base() + "trunk = [10, 4095]\n"), "port[0].trunk[1]");
    expect_field(&(base() + "vlan = 10\ntrunk = [10]\n"), "port[0].trunk[0]");
    expect_field(&vm("dhcp_server = \"no\"\n"), "port[0].dhcp_server");
    expect_field(
        &vm("router_advertisements = 1\n"),
        "port[0].router_advertisements",
    );
    expect_field(&vm("arp_nd_rate = -1\n"), "port[0].arp_nd_rate");
    expect_field(&vm("broadcast_rate = 20000000\n"), "port[0].broadcast_rate");
    let second = base() + "[[port]]\nname = \"vm2\"\nmac = \"ff:ff:ff:ff:ff:ff\"\n";
    expect_field(&second, "port[1].mac");
}

#[test]
fn policy_spec_merge() {
    let spec = PolicySpec {
        mac: Some("02:00:00:00:00:01".parse().unwrap()),
        ipv4: vec!["198.19.1.1".parse().unwrap()],
        vlan: Some(10),
        ..PolicySpec::default()
    };
    let change = PolicySpec {
        ipv6: vec!["fd00::1".parse().unwrap()],
        vlan: Some(0),
        arp_nd_rate: Some(5),
        ..PolicySpec::default()
    };
    let m = spec.merged(&change);
    assert_eq!(m.ipv4, spec.ipv4, "not given: kept");
    assert_eq!(m.ipv6, change.ipv6);
    assert_eq!(m.vlan, None, "vlan 0 clears it");
    assert_eq!(m.arp_nd_rate, Some(5));
    assert_eq!(m.mac, spec.mac);
}

#[test]
fn multicast_allowlist_key() {
    use crate::bridge::policy::mcast::McastKind;
    let t =
        base() + "mac = \"52:54:00:12:34:56\"\nmulticast = [\"arp\", \"dhcp\", \"nd\", \"mld\"]\n";
    let c = parse(&t, Path::new(".")).unwrap();
    assert_eq!(
        c.raw.ports[0].policy().multicast,
        Some(vec![
            McastKind::Arp,
            McastKind::Dhcp,
            McastKind::Nd,
            McastKind::Mld
        ])
    );
    expect_field(
        &(base() + "multicast = [\"bonjour\"]\n"),
        "port[0].multicast",
    );
}
