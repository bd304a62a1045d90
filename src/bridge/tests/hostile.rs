//! An authenticated peer that lies: it holds a WireGuard session, so its
//! packets arrive, but the batman addresses inside are its own invention.
//! Node 0 is honest, node 1 its honest neighbour, node 2 the liar; each
//! attack is a packet node 2 sends node 0 over their link.

use super::*;
use crate::mesh::tt_tvlv::tt_container;
use crate::wire::batman::ogm;
use crate::wire::batman::tvlv::{self, tt_client, tt_flags, tvlv_type, TtChange};
use crate::wire::batman::unicast::UnicastTvlvPacket;

const LIAR: usize = 2;

fn honest_mesh() -> Net {
    let mut net = Net::full_mesh(3);
    net.converge();
    net.run(Duration::from_secs(20));
    net
}

/// The hard interface node 0 routes node 1's originator over.
fn route_0_to_1(net: &Net) -> Option<MacAddr> {
    net.nodes[0].mesh.unicast_route(orig(1)).map(|r| r.next_hop)
}

fn unicast_tvlv(src: MacAddr, dst: MacAddr, tvlv_region: &[u8]) -> Vec<u8> {
    let hlen = UnicastTvlvPacket::<&[u8]>::HEADER_LEN;
    let mut p = vec![0u8; hlen];
    {
        let mut u = UnicastTvlvPacket::new_unchecked(&mut p[..]);
        u.init_header();
        u.set_ttl(50);
        u.set_dest(dst);
        u.set_src(src);
        u.set_tvlv_len(tvlv_region.len() as u16);
    }
    p.extend_from_slice(tvlv_region);
    p
}

#[test]
fn a_forged_ogm_cannot_take_the_route_to_a_peer_with_a_direct_link() {
    let mut net = honest_mesh();
    let direct = Net::hardif_mac(1, 0);
    assert_eq!(route_0_to_1(&net), Some(direct));
    // OGMs "from node 1" with perfect quality and fresh sequence numbers,
    // relayed by the liar, every interval for a while.
    for i in 0..40 {
        let mut pkt = Vec::new();
        ogm::emit(&mut pkt, 49, 0, (1 << 30) + i, orig(1), orig(1), 255, &[]);
        net.inject(LIAR, 0, None, &pkt);
        net.run(Duration::from_millis(500));
    }
    assert_eq!(route_0_to_1(&net), Some(direct), "the liar took the route");
    assert!(net.nodes[0].mesh.counters().ogm_route_kept_direct > 0);
    // Traffic to a VM on node 1 still goes there directly.
    net.send(1, 0, &frame(MacAddr::BROADCAST, vm(0xb), 1));
    net.clear();
    let f = frame(vm(0xb), vm(0xa), 2);
    net.send(0, 0, &f);
    assert_eq!(net.count(1, 0, &f), 1);
    assert_eq!(net.datagrams, 1);
}

#[test]
fn a_peer_speaks_with_its_own_hard_interface_mac_only() {
    let mut net = honest_mesh();
    let before = net.nodes[0].counters().tunnel_wrong_source;
    // The liar's OGM with node 1's hard interface MAC as the source.
    let mut pkt = Vec::new();
    ogm::emit(&mut pkt, 50, 0, 7, orig(LIAR), orig(LIAR), 255, &[]);
    net.inject(LIAR, 0, Some(Net::hardif_mac(1, 0)), &pkt);
    net.inject(LIAR, 0, Some(MacAddr([2, 0x66, 0, 0, 0, 1])), &pkt);
    assert_eq!(net.nodes[0].counters().tunnel_wrong_source, before + 2);
    assert_eq!(route_0_to_1(&net), Some(Net::hardif_mac(1, 0)));
}

#[test]
fn an_unsolicited_full_table_cannot_replace_another_nodes_clients() {
    let mut net = honest_mesh();
    net.send(1, 0, &frame(MacAddr::BROADCAST, vm(0xb), 1));
    net.run(Duration::from_secs(2));
    assert_eq!(
        net.nodes[0].mesh.tt_global_lookup(vm(0xb), 0),
        Some(orig(1))
    );
    // "Node 1's" whole table, sent by the liar: one bogus client, not B.
    let bogus = TtChange {
        flags: 0,
        addr: vm(0x66),
        vid: 0,
    };
    let c = tt_container(
        tt_flags::RESPONSE | tt_flags::FULL_TABLE,
        200,
        &[],
        &[bogus],
    );
    net.inject(LIAR, 0, None, &unicast_tvlv(orig(1), orig(0), &c));
    assert_eq!(
        net.nodes[0].mesh.tt_global_lookup(vm(0xb), 0),
        Some(orig(1))
    );
    assert_eq!(net.nodes[0].mesh.tt_global_lookup(vm(0x66), 0), None);
    assert!(net.nodes[0].mesh.counters().tt_unsolicited > 0);
}

#[test]
fn a_roam_advert_from_a_made_up_originator_does_not_withdraw_our_client() {
    let mut net = honest_mesh();
    net.send(0, 0, &frame(MacAddr::BROADCAST, vm(0xa), 1));
    let mut value = Vec::new();
    value.extend_from_slice(vm(0xa).as_bytes());
    value.extend_from_slice(&0u16.to_be_bytes());
    let mut c = Vec::new();
    tvlv::emit(&mut c, tvlv_type::ROAM, 1, &value).unwrap();
    let nobody = MacAddr([2, 0x66, 0x66, 0, 0, 0]);
    net.inject(LIAR, 0, None, &unicast_tvlv(nobody, orig(0), &c));
    assert_eq!(net.fdb(0, vm(0xa)), Some(Location::Port(0)));
    assert!(net.nodes[0]
        .mesh
        .tt_local_entries()
        .iter()
        .any(|e| e.mac == vm(0xa)));
}

#[test]
fn one_ogm_from_a_never_seen_originator_installs_no_clients() {
    let mut net = honest_mesh();
    let ghost = MacAddr([2, 0x66, 0, 0, 0, 0x99]);
    let changes: Vec<TtChange> = (0..30u8)
        .map(|i| TtChange {
            flags: 0,
            addr: MacAddr([2, 0x66, 1, 0, 0, i]),
            vid: 0,
        })
        .collect();
    let c = tt_container(tt_flags::OGM_DIFF, 1, &[], &changes);
    let mut pkt = Vec::new();
    ogm::emit(&mut pkt, 49, 0, 1, ghost, ghost, 255, &c);
    net.inject(LIAR, 0, None, &pkt);
    let installed = net.nodes[0]
        .mesh
        .tt_global_entries()
        .iter()
        .filter(|e| e.orig == ghost)
        .count();
    assert_eq!(installed, 0);
    assert!(net.nodes[0].mesh.counters().tt_unconfirmed > 0);
    let _ = tt_client::DEL;
}

#[test]
fn a_flood_of_tt_requests_is_answered_a_few_times_only() {
    let mut net = honest_mesh();
    net.send(0, 0, &frame(MacAddr::BROADCAST, vm(0xa), 1));
    net.run(Duration::from_secs(2));
    let answered = net.nodes[0].mesh.counters().tt_requests_answered;
    let c = tt_container(tt_flags::REQUEST | tt_flags::FULL_TABLE, 0, &[], &[]);
    net.clear();
    for _ in 0..100 {
        net.inject(LIAR, 0, None, &unicast_tvlv(orig(LIAR), orig(0), &c));
    }
    let now_answered = net.nodes[0].mesh.counters().tt_requests_answered - answered;
    assert!(now_answered <= 5, "{now_answered} answers to one requester");
    assert!(net.datagrams <= 2 * 5, "{} datagrams back", net.datagrams);
}

#[test]
fn a_forged_broadcast_origin_does_not_repoint_the_fdb() {
    use crate::wire::batman::bcast::{self, BcastPacket};
    let mut net = honest_mesh();
    net.send(1, 0, &frame(MacAddr::BROADCAST, vm(0xb), 1));
    net.run(Duration::from_secs(2));
    assert_eq!(net.fdb(0, vm(0xb)), Some(Location::Originator(orig(1))));
    // A broadcast "from" the liar's own (routed) originator, then one
    // "from" node 1, both carrying B as their source.
    for (i, o) in [orig(LIAR), orig(1)].into_iter().enumerate() {
        let mut p = vec![0u8; bcast::HEADER_LEN];
        {
            let mut b = BcastPacket::new_unchecked(&mut p[..]);
            b.init_header();
            b.set_ttl(50);
            b.set_seqno(1 + i as u32);
            b.set_orig(o);
        }
        p.extend_from_slice(&frame(MacAddr::BROADCAST, vm(0xb), 9));
        net.inject(LIAR, 0, None, &p);
    }
    assert_eq!(net.fdb(0, vm(0xb)), Some(Location::Originator(orig(1))));
    // The liar's own origin: the TT says B is at node 1.
    assert_eq!(net.nodes[0].counters().mesh_source_contradicted, 1);
    // Node 1's origin over the liar's link: node 1's own link is alive.
    assert_eq!(net.nodes[0].mesh.counters().bcast_kept_direct, 1);
}
