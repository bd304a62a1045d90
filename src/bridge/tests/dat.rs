//! batman-adv's distributed ARP table through whole bridges: nodes learn
//! each other's DAT capability from OGMs, ARP replies are put into the
//! DHT, a node that does not know an address asks the DHT and its
//! request never floods when the DHT answers, and a kernel-shaped DHT_GET
//! is answered with a DAT_CACHE_REPLY.

use std::net::Ipv4Addr;

use super::*;
use crate::bridge::policy::frames::arp;
use crate::wire::arp::{Operation, Packet as ArpPacket, Repr as ArpRepr};
use crate::wire::batman::{packet_type, subtype, COMPAT_VERSION};

const N: usize = 6;

fn ip(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 2, host)
}

/// Client `tag` behind port 0 of node `tag`, with address ip(tag).
fn client(tag: u8) -> MacAddr {
    vm(tag)
}

fn who_has(tag: u8, target: Ipv4Addr) -> Vec<u8> {
    arp(
        Operation::Request,
        client(tag),
        client(tag),
        ip(tag),
        target,
    )
}

fn reply(from: u8, to: u8) -> Vec<u8> {
    let mut f = arp(
        Operation::Reply,
        client(from),
        client(from),
        ip(from),
        ip(to),
    );
    f[..6].copy_from_slice(client(to).as_bytes());
    // The target hardware address of a real reply is the asker's.
    f[14 + 18..14 + 24].copy_from_slice(client(to).as_bytes());
    f
}

fn replies_at(net: &Net, node: usize) -> Vec<ArpRepr> {
    net.got[node]
        .iter()
        .filter(|(p, f)| *p == 0 && f.get(12..14) == Some(&[8, 6]))
        .filter_map(|(_, f)| ArpRepr::parse(&ArpPacket::new_checked(&f[14..]).ok()?).ok())
        .filter(|r| r.operation == Operation::Reply)
        .collect()
}

fn bcasts(net: &Net) -> Vec<u64> {
    net.nodes
        .iter()
        .map(|b| b.mesh.counters().rx_bcast)
        .collect()
}

/// Six nodes, each with a client on port 0 that has spoken once (so the
/// TT knows every client), none of whose addresses anyone knows.
fn six() -> Net {
    let mut net = Net::full_mesh(N);
    net.converge();
    for n in 0..N {
        // An ordinary frame (no ARP): the MAC is learned, not the address.
        net.send(n, 0, &frame(MacAddr::BROADCAST, client(n as u8), 1));
    }
    net.run(Duration::from_secs(3));
    net.clear();
    net
}

#[test]
fn every_node_is_a_dat_candidate_of_the_others() {
    let net = six();
    for n in 0..N {
        let c = net.nodes[n].mesh.dat_candidates(ip(9), 0);
        assert_eq!(c.len(), 3, "node {n}");
        assert!(!c.contains(&orig(n)), "a node never asks itself");
    }
}

#[test]
fn a_request_the_dht_answers_never_floods() {
    let mut net = six();
    // Client 1 asks for client 0: nobody knows it. The DHT_GETs go out,
    // their candidates hand the request to their ports, and after 250 ms
    // it floods (the fallback). Client 0 answers; node 0 puts the reply
    // into the DHT.
    let q = who_has(1, ip(0));
    net.send(1, 0, &q);
    net.run(Duration::from_millis(300));
    assert_eq!(net.nodes[1].counters().dat_fallback, 1);
    // Client 0 got it once, from the fallback flood.
    assert_eq!(net.count(0, 0, &q), 1, "client 0 got the request");
    net.send(0, 0, &reply(0, 1));
    assert_eq!(replies_at(&net, 1).len(), 1);
    let puts: u64 = net.nodes.iter().map(|b| b.mesh.counters().dat_put_rx).sum();
    assert_eq!(puts, 6, "3 candidates for each of the reply's 2 addresses");
    // Every other node that asks now is answered by the DHT (or locally,
    // where a DHT_PUT landed): the client gets client 0's MAC and no
    // request floods.
    for n in 2..N {
        net.clear();
        let before = bcasts(&net);
        let q = who_has(n as u8, ip(0));
        net.send(n, 0, &q);
        net.run(Duration::from_millis(300));
        let r = replies_at(&net, n);
        assert_eq!(r.len(), 1, "node {n}");
        assert_eq!((r[0].sha, r[0].spa), (client(0), ip(0)));
        assert_eq!(
            bcasts(&net),
            before,
            "node {n}: a broadcast crossed the mesh"
        );
        assert_eq!(net.nodes[n].counters().dat_fallback, 0);
        assert_eq!(net.count(0, 0, &q), 0, "node {n}: client 0 was asked");
    }
    let answered: u64 = net.nodes.iter().map(|b| b.counters().dat_answered).sum();
    assert!(answered > 0, "the DHT answered none");
}

/// A DHT_GET as a kernel node sends it (the layout of refvm's capture:
/// UNICAST_4ADDR to our originator from its own, subtype 2, the client's
/// ARP request inside).
fn kernel_dht_get(to: MacAddr, from: MacAddr, request: &[u8]) -> Vec<u8> {
    let mut p = vec![packet_type::UNICAST_4ADDR, COMPAT_VERSION, 50, 0];
    p.extend_from_slice(&to.0);
    p.extend_from_slice(&from.0);
    p.extend_from_slice(&[subtype::DAT_DHT_GET, 0]);
    p.extend_from_slice(request);
    p
}

#[test]
fn a_kernel_dht_get_is_answered_with_a_cache_reply() {
    let mut net = six();
    // Node 3 knows client 3's address (its own port's ARP).
    net.send(3, 0, &who_has(3, ip(77)));
    net.run(Duration::from_millis(300));
    net.clear();
    // Node 2 (as a kernel would) asks node 3 for ip(3) for client 2.
    let q = who_has(2, ip(3));
    net.inject(2, 3, None, &kernel_dht_get(orig(3), orig(2), &q));
    assert_eq!(net.nodes[3].mesh.counters().dat_get_rx, 1);
    assert_eq!(net.nodes[3].counters().dat_answered, 1);
    assert_eq!(net.nodes[3].mesh.counters().dat_cache_reply_tx, 1);
    assert_eq!(net.nodes[2].mesh.counters().dat_cache_reply_rx, 1);
    // The cache reply reached client 2, carrying client 3's MAC.
    let r = replies_at(&net, 2);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].sha, r[0].spa, r[0].tha, r[0].tpa),
        (client(3), ip(3), client(2), ip(2))
    );
    assert_eq!(net.count(3, 0, &q), 0, "answered, not handed to the owner");
    // An address nobody knows: counted, not answered, not handed to the
    // ports (the asker's fallback flood will bring it).
    let q = who_has(2, ip(99));
    net.inject(2, 3, None, &kernel_dht_get(orig(3), orig(2), &q));
    assert_eq!(net.count(3, 0, &q), 0);
    assert!(
        replies_at(&net, 2).len() == 1,
        "no answer for an unknown address"
    );
    assert_eq!(net.nodes[3].counters().dat_unanswered, 1);
    // Garbage inside a DAT packet is counted, never a panic.
    net.inject(2, 3, None, &kernel_dht_get(orig(3), orig(2), &[0xff; 20]));
    assert_eq!(net.nodes[3].counters().dat_malformed, 1);
}
