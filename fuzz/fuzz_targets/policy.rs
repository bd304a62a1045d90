//! The port policy as a whole (issue 11): hostile frames from a VM port (in
//! a VLAN, with a DHCP-learnable address), from a trunk uplink and from an
//! open uplink, through the whole hub and its hooks (ingress checks, storm
//! buckets, egress isolation, DHCP learning, MSS clamping), plus the
//! parsers only the policy uses (DHCP, the IPv6 header chain).
//!
//! Records: [kind, arg, len, bytes...]. Most kinds put an Ethernet header
//! from a port's own MAC (or another) with a chosen ethertype in front of
//! the bytes, so the L3 parsers are reached rather than the header check.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use meshwire::bridge::policy::mcast::McastKind;
use meshwire::bridge::{Bridge, PortPolicy};
use meshwire::mesh::{Mesh, MeshConfig};
use meshwire::switch::{Switch, SwitchConfig};
use meshwire::wire::{dhcp, ipv6, MacAddr};

const ORIG: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const VM: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
const ETHERTYPES: [u16; 8] = [0x0800, 0x86dd, 0x0806, 0x8035, 0x8100, 0x88a8, 0x4305, 0x88cc];

fuzz_target!(|data: &[u8]| {
    let mesh = Mesh::new(MeshConfig::new(ORIG));
    let mut b = Bridge::new(mesh, Switch::new(SwitchConfig::default()));
    b.add_link(0, MacAddr([2, 0, 0, 0, 1, 0]), Some(1400), "peer");
    b.set_link_alive(0, true);
    b.hooks.set_mss_clamp(Some((1338, 1318)));
    let policies = [
        PortPolicy {
            ipv6: vec!["fd00::1".parse().unwrap()],
            vlan: Some(10),
            arp_nd_rate: 5,
            broadcast_rate: 5,
            multicast: Some(vec![McastKind::Arp, McastKind::Nd, McastKind::Dhcp]),
            ..PortPolicy::vm(VM)
        },
        PortPolicy {
            trunk: vec![10, 20],
            dhcp_server: false,
            router_advertisements: false,
            ..PortPolicy::default()
        },
        PortPolicy::default(),
    ];
    for (p, pol) in policies.into_iter().enumerate() {
        b.hooks.set_policy(p as u32, pol);
        b.add_port(p as u32, "p");
    }
    let t0 = Instant::now();
    let mut now = t0;
    let mut io = common::Sink::default();
    let mut frame = Vec::with_capacity(2048);
    for (kind, arg, body) in common::records(data, 4) {
        let port = u32::from(arg % 3);
        match kind % 6 {
            // A raw frame.
            0 => b.from_port(now, port, body, &mut io),
            // A frame from the VM's MAC (or another) with a chosen ethertype.
            1 | 2 => {
                frame.clear();
                frame.extend_from_slice(&[0xff; 6]);
                let src = if kind % 6 == 1 { VM } else { MacAddr([2, 0, 0, 0, 9, arg]) };
                frame.extend_from_slice(src.as_bytes());
                frame.extend_from_slice(&ETHERTYPES[usize::from(arg >> 5)].to_be_bytes());
                frame.extend_from_slice(body);
                b.from_port(now, port, &frame, &mut io);
            }
            // The parsers only the policy uses.
            3 => {
                let _ = dhcp::parse_ack(body);
                let _ = ipv6::upper_layer(body);
                if let Some((s, d)) = dhcp::udp_ports(body) {
                    let _ = dhcp::is_v4_server_message(s, d, body);
                    let _ = dhcp::is_v6_server_message(s, d, body);
                }
            }
            // Time passes: buckets refill, idle sources are forgotten.
            4 => {
                now += Duration::from_millis(u64::from(arg) * 10);
                b.tick(now, true, &mut io);
            }
            // A new policy for a port at runtime.
            _ => {
                let p = PortPolicy {
                    vlan: (arg & 1 == 1).then_some(u16::from(arg) + 1),
                    broadcast_rate: u32::from(arg),
                    ..PortPolicy::vm(MacAddr([0x52, 0x54, 0, 0, 0, arg | 1]))
                };
                b.hooks.set_policy(port, p);
            }
        }
    }
    std::hint::black_box(io.bytes);
});
