//! IGMP/MLD snooping and the multicast send path under hostile input:
//! IGMP and MLD messages with valid checksums around fuzzed bodies (so the
//! v3/v2 record walks are reached), raw frames, from a VM port, a VLAN
//! port and an uplink; time passing (listeners expire, queries go out);
//! multicast UDP from the ports decided by batadv_mcast_forw_mode; and the
//! parser and destination classifier on raw bytes. A port never holds more
//! than its cap of groups.
//!
//! Records: [kind, arg, len, bytes...].
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use meshwire::bridge::mcast_snoop::GROUPS_PER_PORT;
use meshwire::bridge::{policy::link_local, Bridge, PortPolicy};
use meshwire::mesh::{Mesh, MeshConfig};
use meshwire::switch::{Switch, SwitchConfig};
use meshwire::wire::{checksum, igmp, MacAddr};

const ORIG: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const PEER_ORIG: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const OUR_HARDIF: MacAddr = MacAddr([2, 0, 0, 0, 1, 0]);
const VM: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 1]);

/// IPv4 (router alert) around an IGMP message `m` (checksum filled in).
fn igmp_frame(out: &mut Vec<u8>, src: MacAddr, m: &[u8]) {
    let mut m = m.to_vec();
    if m.len() >= 4 {
        m[2] = 0;
        m[3] = 0;
        let c = checksum::checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
    }
    out.clear();
    out.extend_from_slice(&[1, 0, 0x5e, 0, 0, 0x16]);
    out.extend_from_slice(src.as_bytes());
    out.extend_from_slice(&[8, 0, 0x46, 0xc0]);
    out.extend_from_slice(&((24 + m.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 1, 2, 0, 0, 198, 19, 1, 5, 224, 0, 0, 22]);
    out.extend_from_slice(&[0x94, 4, 0, 0]);
    out.extend_from_slice(&m);
}

/// IPv6 + hop-by-hop around an MLD message `m` (checksum filled in).
fn mld_frame(out: &mut Vec<u8>, src: MacAddr, m: &[u8]) {
    let sip = link_local(src);
    let dip: Ipv6Addr = "ff02::16".parse().unwrap();
    let mut m = m.to_vec();
    if m.len() >= 4 {
        m[2] = 0;
        m[3] = 0;
        let ph = checksum::pseudo_header_v6(sip, dip, 58, m.len() as u32);
        let c = checksum::finish(checksum::combine(&[ph, checksum::sum(&m)]));
        m[2..4].copy_from_slice(&c.to_be_bytes());
    }
    out.clear();
    out.extend_from_slice(&[0x33, 0x33, 0, 0, 0, 0x16]);
    out.extend_from_slice(src.as_bytes());
    out.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    out.extend_from_slice(&((8 + m.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&sip.octets());
    out.extend_from_slice(&dip.octets());
    out.extend_from_slice(&[58, 0, 5, 2, 0, 0, 1, 0]);
    out.extend_from_slice(&m);
}

/// A UDP datagram to the IPv4 group `g`.
fn udp_frame(out: &mut Vec<u8>, src: MacAddr, g: Ipv4Addr) {
    out.clear();
    out.extend_from_slice(igmp::group_mac(g.into()).as_bytes());
    out.extend_from_slice(src.as_bytes());
    out.extend_from_slice(&[8, 0, 0x45, 0, 0, 28, 0, 0, 0, 0, 1, 17, 0, 0, 198, 19, 1, 5]);
    out.extend_from_slice(&g.octets());
    out.extend_from_slice(&[0x13, 0x88, 0x13, 0x88, 0, 8, 0, 0]);
}

fuzz_target!(|data: &[u8]| {
    let mesh = Mesh::new(MeshConfig::new(ORIG));
    let mut b = Bridge::new(mesh, Switch::new(SwitchConfig::default()));
    b.add_link(0, OUR_HARDIF, Some(1400), "peer");
    b.set_link_owner(0, PEER_ORIG);
    b.set_link_alive(0, true);
    let policies = [
        PortPolicy {
            ipv4: vec![Ipv4Addr::new(198, 19, 1, 5)],
            ..PortPolicy::vm(VM)
        },
        PortPolicy {
            vlan: Some(10),
            ..PortPolicy::vm(MacAddr([0x52, 0x54, 0, 0, 0, 2]))
        },
        PortPolicy::default(),
    ];
    for (p, pol) in policies.into_iter().enumerate() {
        b.hooks.set_policy(p as u32, pol);
        b.add_port(p as u32, "p");
    }
    let mut now = Instant::now();
    let mut io = common::Sink::default();
    let mut frame = Vec::with_capacity(256);
    for (kind, arg, body) in common::records(data, 2) {
        let port = u32::from(arg % 3);
        let src = if arg & 0x80 == 0 { VM } else { MacAddr([2, 0, 0, 0, 9, arg & 0x0f]) };
        match kind % 6 {
            0 => b.from_port(now, port, body, &mut io),
            1 => {
                igmp_frame(&mut frame, src, body);
                b.from_port(now, port, &frame, &mut io);
            }
            2 => {
                mld_frame(&mut frame, src, body);
                b.from_port(now, port, &frame, &mut io);
            }
            3 => {
                now += Duration::from_millis(u64::from(arg) * 2000);
                b.tick(now, arg & 1 == 1, &mut io);
            }
            4 => {
                let g = Ipv4Addr::new(239, 1, body.first().copied().unwrap_or(0), arg);
                udp_frame(&mut frame, src, g);
                b.from_port(now, port, &frame, &mut io);
            }
            _ => {
                let _ = igmp::parse(body, |_, _| {});
                let _ = igmp::mcast_dst(body);
                let _ = b.mesh.mcast_forw_mode(body);
            }
        }
        for p in 0..3 {
            assert!(b.mcast_groups(p).len() <= GROUPS_PER_PORT);
        }
    }
    std::hint::black_box(io.bytes);
});
