//! ARP/ND suppression and the distributed ARP table (issue 11) under
//! hostile input: ARP packets and NS/NA (checksummed, so the deep parsers
//! are reached) from a VM port, a VLAN port and an uplink, answered,
//! snooped and held for the DHT; DAT packets (DHT_GET, DHT_PUT,
//! DAT_CACHE_REPLY and unknown subtypes in UNICAST_4ADDR) from a peer,
//! addressed to us; time passing (held requests flood, entries expire);
//! and the request/snoop decoders and DHT hashes on raw bytes.
//!
//! Records: [kind, arg, len, bytes...].
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use meshwire::bridge::arp_nd::{snoop, Request};
use meshwire::bridge::{Bridge, PortPolicy};
use meshwire::mesh::dat;
use meshwire::mesh::{Mesh, MeshConfig};
use meshwire::switch::{Switch, SwitchConfig};
use meshwire::wire::{ndisc, MacAddr};

const ORIG: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const PEER_ORIG: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const OUR_HARDIF: MacAddr = MacAddr([2, 0, 0, 0, 1, 0]);
const PEER_HARDIF: MacAddr = MacAddr([2, 0, 0, 0, 2, 0]);
const VM: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 1]);

fn get<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    for (i, x) in a.iter_mut().enumerate() {
        *x = b.get(off + i).copied().unwrap_or(0);
    }
    a
}

/// An Ethernet/IPv4 ARP frame whose fields come from `b`.
fn arp_frame(out: &mut Vec<u8>, src: MacAddr, b: &[u8]) {
    out.clear();
    out.extend_from_slice(&[0xff; 6]);
    out.extend_from_slice(src.as_bytes());
    out.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1 + (get::<1>(b, 0)[0] & 1)]);
    let sha = if get::<1>(b, 1)[0] & 1 == 0 { src.0 } else { get::<6>(b, 2) };
    out.extend_from_slice(&sha);
    out.extend_from_slice(&[198, 19, 1, get::<1>(b, 8)[0]]);
    out.extend_from_slice(&get::<6>(b, 9));
    out.extend_from_slice(&[198, 19, 1, get::<1>(b, 15)[0]]);
}

/// An NS or NA with a valid checksum, its fields from `b`.
fn nd_frame(out: &mut Vec<u8>, src: MacAddr, b: &[u8]) {
    let sip = if get::<1>(b, 0)[0] & 1 == 0 {
        Ipv6Addr::UNSPECIFIED
    } else {
        Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, get::<1>(b, 1)[0].into())
    };
    let target = Ipv6Addr::new(0xfd00, 0x10, 0, 0, 0, 0, 0, get::<1>(b, 2)[0].into());
    let dip: Ipv6Addr = "ff02::1:ff00:1".parse().unwrap();
    let ty = if get::<1>(b, 3)[0] & 1 == 0 { 135 } else { 136 };
    let mut m = vec![ty, 0, 0, 0, get::<1>(b, 4)[0], 0, 0, 0];
    m.extend_from_slice(&target.octets());
    let opt = get::<1>(b, 5)[0] % 3;
    if opt != 0 {
        m.extend_from_slice(&[opt, 1]);
        m.extend_from_slice(&get::<6>(b, 6));
    }
    let c = ndisc::icmpv6_checksum(&sip, &dip, &m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    out.clear();
    out.extend_from_slice(&[0x33, 0x33, 0xff, 0, 0, 1]);
    out.extend_from_slice(src.as_bytes());
    out.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    out.extend_from_slice(&(m.len() as u16).to_be_bytes());
    out.extend_from_slice(&[58, 255]);
    out.extend_from_slice(&sip.octets());
    out.extend_from_slice(&dip.octets());
    out.extend_from_slice(&m);
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
            ipv6: vec!["fd00:10::5".parse().unwrap()],
            ..PortPolicy::vm(VM)
        },
        PortPolicy {
            vlan: Some(10),
            ipv4: vec![Ipv4Addr::new(198, 19, 1, 6)],
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
    let mut packet = Vec::with_capacity(512);
    for (kind, arg, body) in common::records(data, 2) {
        let port = u32::from(arg % 3);
        let src = match arg >> 6 {
            0 => VM,
            1 => MacAddr([0x52, 0x54, 0, 0, 0, 2]),
            _ => MacAddr([2, 0, 0, 0, 9, arg & 0x0f]),
        };
        match kind % 7 {
            0 => b.from_port(now, port, body, &mut io),
            1 => {
                arp_frame(&mut frame, src, body);
                b.from_port(now, port, &frame, &mut io);
            }
            2 => {
                nd_frame(&mut frame, src, body);
                b.from_port(now, port, &frame, &mut io);
            }
            // A DAT packet from the peer, for us.
            3 | 4 => {
                if kind % 7 == 3 {
                    arp_frame(&mut frame, src, body);
                } else {
                    frame.clear();
                    frame.extend_from_slice(body);
                }
                packet.clear();
                packet.extend_from_slice(OUR_HARDIF.as_bytes());
                packet.extend_from_slice(PEER_HARDIF.as_bytes());
                packet.extend_from_slice(&[0x43, 0x05, 0x42, 15, 50, 0]);
                packet.extend_from_slice(ORIG.as_bytes());
                packet.extend_from_slice(PEER_ORIG.as_bytes());
                packet.extend_from_slice(&[arg % 6, 0]);
                packet.extend_from_slice(&frame);
                b.from_peer(now, 0, &packet, &mut io);
            }
            5 => {
                now += Duration::from_millis(u64::from(arg) * 20);
                b.tick(now, arg & 1 == 1, &mut io);
            }
            _ => {
                let _ = Request::parse(body);
                let _ = snoop(body);
                let ip = Ipv4Addr::from(get::<4>(body, 0));
                let _ = dat::dat_key(ip, u16::from_le_bytes(get::<2>(body, 4)));
                let _ = dat::dat_addr(MacAddr(get::<6>(body, 6)));
                if let Some(r) = Request::parse(body) {
                    r.answer(VM, arg & 1 == 1, &mut frame);
                }
            }
        }
    }
    std::hint::black_box(io.bytes);
});
