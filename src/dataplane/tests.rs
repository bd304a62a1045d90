//! The node's own decisions, on real TAPs and a real socket (root).

use std::path::Path;
use std::time::Instant;

use super::Node;
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

/// A node with two TAP ports and one peer that never answers.
fn node(tag: &str) -> (Node, [String; 2]) {
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
    (Node::new(&cfg).expect("node (needs root)"), names)
}

#[test]
fn a_no_route_flood_never_goes_back_out_the_ingress_port() {
    let (mut node, names) = node("h");
    let now = Instant::now();
    let vm = MacAddr([2, 0, 0, 0, 0x77, 1]);
    let remote = MacAddr([2, 0, 0, 0, 0x77, 2]);
    let orig = MacAddr([2, 0, 0, 0, 0x77, 0xee]);
    // The switch learns `remote` at an originator the mesh has no route to.
    node.switch
        .from_mesh(now, &frame(MacAddr::BROADCAST, remote), Some(orig));
    let a = node.ports.id_by_name(&names[0]).unwrap();
    let b = node.ports.id_by_name(&names[1]).unwrap();
    let tx = |n: &Node, p| n.ports.get(p).unwrap().counters.tx_frames;
    let (a0, b0) = (tx(&node, a), tx(&node, b));

    node.on_port_frame(now, a, &frame(remote, vm));

    assert_eq!(node.counters.no_route, 1, "the mesh had a route?");
    assert_eq!(tx(&node, a), a0, "flooded back out the ingress port");
    assert_eq!(tx(&node, b), b0 + 1, "not flooded to the other port");
}
