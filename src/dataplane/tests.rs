//! The dataplane's own glue on real TAPs and a real socket (root): a node
//! held through `Held` writes ports through the holder's outbox and
//! encrypts what it queued for the tunnels only after the lock is released.
//! The forwarding decisions themselves are the bridge's, tested without
//! root in `bridge::tests`.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{Held, Node, Outbox};
use crate::config;
use crate::keys;
use crate::wire::MacAddr;

fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(dst.as_bytes());
    f.extend_from_slice(src.as_bytes());
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(64, 0x5a);
    f
}

/// A node with two TAP ports and one peer that never answers, and worker
/// 0's outbox over its ports.
fn node(tag: &str) -> (Mutex<Node>, Outbox, [String; 2]) {
    let pid = std::process::id();
    let names = [
        format!("mwd{tag}{}a", pid % 10000),
        format!("mwd{tag}{}b", pid % 10000),
    ];
    let peer = keys::public_from_private(&keys::generate_private());
    let text = format!(
        "[node]\nprivate_key = \"{}\"\nlisten_port = {}\naddress = \"198.19.0.1\"\n[control]\nsocket = \"/tmp/unused-{pid}.sock\"\n[[peer]]\npublic_key = \"{}\"\nendpoint = \"127.0.0.1:9\"\naddress = \"198.19.0.2\"\n[[port]]\nname = \"{}\"\n[[port]]\nname = \"{}\"\n",
        keys::encode_key(&keys::generate_private()),
        40000 + (pid % 20000) as u16 + tag.len() as u16,
        keys::encode_key(&peer),
        names[0],
        names[1],
    );
    let cfg = config::parse(&text, Path::new("/")).expect("config");
    let (node, ports) = Node::new(&cfg).expect("node (needs root)");
    let tunnel = node.tunnels.new_io(false).expect("socket");
    let out = Outbox::new(ports, tunnel, Arc::clone(node.tunnels.core()));
    (Mutex::new(node), out, names)
}

#[test]
fn a_held_node_writes_ports_and_encrypts_only_after_release() {
    let (node, mut out, names) = node("h");
    let now = Instant::now();
    let a = out.ports.id_by_name(&names[0]).unwrap();
    let b = out.ports.id_by_name(&names[1]).unwrap();
    let vm = MacAddr([2, 0, 0, 0, 0x77, 1]);
    // Frames handed to the tunnel (sealed, or queued behind the handshake).
    let sealed = |o: &Outbox| o.tunnel.counters().tx_frames;
    {
        let mut h = Held::new(&node, &mut out);
        let (n, o) = h.parts();
        n.bridge
            .from_port(now, a, &frame(MacAddr::BROADCAST, vm), o);
        // The first OGM for the peer's link.
        n.on_tick(now, false, false, o);
        assert_eq!(n.bridge.mesh.counters().tx_ogm, 1);
        assert_eq!(sealed(o), 0, "encrypted under the node lock");
        assert!(node.try_lock().is_err(), "the guard does not hold the lock");
    }
    assert!(node.try_lock().is_ok(), "the guard kept the lock");
    assert_eq!(sealed(&out), 1, "the OGM for the peer was not sealed");
    out.flush();
    let tx = |o: &Outbox, p| o.ports.get(p).unwrap().counters.tx_frames;
    // The first tick also sent the querier's IGMP and MLD general query
    // into each port (bridge/mcast_snoop.rs).
    assert_eq!(tx(&out, a), 2, "flooded back out the ingress port");
    assert_eq!(tx(&out, b), 3, "not flooded to the other port");
}
