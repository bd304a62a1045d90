//! The MCAST TVLV (multicast.rs): ours laid out as the kernel reads it,
//! the kernel's (captured) and hostile ones parsed into each originator's
//! flags.

use std::time::Instant;

use super::*;
use crate::mesh::multicast::{flags, OWN_FLAGS};
use crate::wire::batman::tests::OGM as KERNEL_OGM;
use crate::wire::batman::tvlv::{self, tvlv_type};
use crate::wire::batman::{OgmIter, TvlvIter};

/// The TVLV region of our first primary OGM.
fn own_tvlvs(multicast: bool) -> Vec<(u8, u8, Vec<u8>)> {
    let mut c = MeshConfig::new(MacAddr([2, 0, 0, 0, 0x0d, 0]));
    c.multicast = multicast;
    let mut m = Mesh::new(c);
    m.hardif_add(4, MacAddr([2, 0, 0, 0, 0x0d, 4]));
    let mut out = Vec::new();
    m.tick(Instant::now(), &mut out);
    let Some(MeshOutput::Transmit { packet, .. }) = out.first() else {
        panic!("no OGM: {out:?}")
    };
    let ogm = OgmIter::new(packet).next().unwrap().unwrap();
    TvlvIter::new(ogm.tvlv())
        .map(|t| t.unwrap())
        .map(|t| (t.tvlv_type, t.version, t.value.to_vec()))
        .collect()
}

#[test]
fn own_ogm_carries_mcast_v2_as_the_kernel_lays_it_out() {
    let tv = own_tvlvs(true);
    let mcast: Vec<_> = tv.iter().filter(|t| t.0 == tvlv_type::MCAST).collect();
    // struct batadv_tvlv_mcast_data: flags, reserved[3]; version 2.
    assert_eq!(mcast, vec![&(0x06, 2, vec![0x07, 0, 0, 0])]);
    assert_eq!(
        OWN_FLAGS,
        flags::WANT_ALL_UNSNOOPABLES | flags::WANT_ALL_IPV4 | flags::WANT_ALL_IPV6
    );
    assert_eq!(tv[0].0, tvlv_type::TT, "TT stays first");
    // multicast = false: today's behaviour, no container.
    assert!(own_tvlvs(false).iter().all(|t| t.0 != tvlv_type::MCAST));
}

/// The kernel originator's TVLV region of a captured OGM (`&KERNEL_OGM[24..]`)
/// or a hostile one, as the mesh reads it once the kernel node is routed
/// (bat_iv.rs reads TVLVs only from an originator with a route).
fn kernel_region(region: &[u8]) -> (Mesh, MacAddr) {
    let t0 = Instant::now();
    let mut m = Mesh::new(MeshConfig::new(MacAddr([2, 0, 0, 0, 0x0b, 0])));
    m.hardif_add(1, MacAddr([2, 0, 0, 0, 0x0b, 1]));
    let kernel = MacAddr([2, 0, 0, 0, 0x0a, 1]);
    let mut out = Vec::new();
    m.receive(t0, 1, kernel, MacAddr::BROADCAST, &KERNEL_OGM, &mut out);
    assert_eq!(m.mcast_flags(kernel), None, "not read before a route");
    m.tt_ogm_receive(t0, kernel, region, &mut out);
    (m, kernel)
}

#[test]
fn kernel_mcast_flags_are_kept_per_originator() {
    // The capture's kernel has no bridge: WANT_NO_RTR4 | WANT_NO_RTR6.
    let (m, k) = kernel_region(&KERNEL_OGM[24..]);
    assert_eq!(m.mcast_flags(k), Some(0x18));
    assert_eq!(m.originators()[0].mcast_flags, Some(0x18));
    assert_eq!(m.counters().malformed, 0);
    // An OGM without the container: multicast-disabled, as a kernel sees it.
    let (m, k) = kernel_region(&[]);
    assert_eq!((m.mcast_flags(k), m.counters().malformed), (None, 0));
    // Newer kernels' FORW_MCAST bit and a longer value are taken as they are.
    let mut region = Vec::new();
    tvlv::emit(&mut region, tvlv_type::MCAST, 2, &[0x3f, 0, 0, 0, 9, 9]).unwrap();
    let (m, k) = kernel_region(&region);
    assert_eq!(m.mcast_flags(k), Some(0x3f));
}

#[test]
fn hostile_mcast_tvlvs_are_counted_not_trusted() {
    // Too short for batadv_tvlv_mcast_data: counted, taken as no container.
    for value in [&[][..], &[0x07][..], &[0x07, 0, 0][..]] {
        let mut region = Vec::new();
        tvlv::emit(&mut region, tvlv_type::MCAST, 2, value).unwrap();
        let (m, k) = kernel_region(&region);
        assert_eq!((m.mcast_flags(k), m.counters().malformed), (None, 1));
    }
    // An unknown version is not read as version 2.
    let mut region = Vec::new();
    tvlv::emit(&mut region, tvlv_type::MCAST, 1, &[0x07, 0, 0, 0]).unwrap();
    let (m, k) = kernel_region(&region);
    assert_eq!(m.mcast_flags(k), None);
    // A length running past the region: the whole region is refused.
    let (m, k) = kernel_region(&[0x06, 2, 0, 9, 0x07]);
    assert_eq!(m.mcast_flags(k), None);
    assert!(m.counters().malformed >= 1);
}

#[test]
fn meshwire_nodes_see_each_others_flags() {
    let mut s = Sim::new(3);
    s.link(0, 1);
    s.link(1, 2);
    s.run(Duration::from_secs(5));
    assert_eq!(s.nodes[0].mcast_flags(orig_mac(2)), Some(OWN_FLAGS));
    assert_eq!(s.nodes[2].mcast_flags(orig_mac(0)), Some(OWN_FLAGS));
}
