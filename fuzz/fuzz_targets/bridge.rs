//! Hostile input through the whole hub: frames from ports, and batman
//! packets from peers addressed to us as unicast (our hard interface MAC,
//! and with the batman destination set to our originator), so unicast
//! delivery, fragments, TT requests and responses, ROAM adverts, ICMP and
//! forwarding are reached, not only broadcasts. The bridge's own reactions
//! (deliveries to ports, redirects, floods) run as they would in the
//! dataplane.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use meshwire::bridge::Bridge;
use meshwire::mesh::{Mesh, MeshConfig};
use meshwire::switch::{Switch, SwitchConfig};
use meshwire::wire::MacAddr;

const ORIG: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

fn hardif(peer: u32) -> MacAddr {
    MacAddr([2, 0, 0, 0, 1, peer as u8])
}

fuzz_target!(|data: &[u8]| {
    let mesh = Mesh::new(MeshConfig::new(ORIG));
    let mut b = Bridge::new(mesh, Switch::new(SwitchConfig::default()));
    for p in 0..3u32 {
        b.add_link(p, hardif(p), Some(1400), "peer");
        b.set_link_alive(p, true);
    }
    b.add_port(0, "p0");
    b.add_port(1, "p1");
    let t0 = Instant::now();
    let mut io = common::Sink::default();
    let mut now = t0;
    let mut frame = Vec::with_capacity(2048);
    // Records: [kind, arg, len, bytes...].
    for (kind, arg, body) in common::records(data, 8) {
        match kind % 5 {
            // A VM frame into a port (2 is not a port).
            0 => b.from_port(now, u32::from(arg % 3), body, &mut io),
            // A batman packet for our hard interface on link `arg % 4`
            // (3 is not a link), from a neighbour MAC.
            1 | 2 => {
                let peer = u32::from(arg % 4);
                frame.clear();
                if kind % 5 == 1 {
                    frame.extend_from_slice(hardif(peer).as_bytes());
                } else {
                    frame.extend_from_slice(MacAddr::BROADCAST.as_bytes());
                }
                frame.extend_from_slice(&[2, 0, 0, 0, 9, arg]);
                frame.extend_from_slice(&0x4305u16.to_be_bytes());
                frame.extend_from_slice(body);
                // Unicast-class headers carry their destination at 4..10:
                // point it at us when asked, so the packet is ours.
                if arg & 0x80 != 0 && frame.len() >= 14 + 10 {
                    frame[18..24].copy_from_slice(ORIG.as_bytes());
                }
                b.from_peer(now, peer, &frame, &mut io);
            }
            // Time passes: OGMs, purges, ageing.
            3 => {
                now += Duration::from_millis(u64::from(arg) * 20);
                b.tick(now, arg & 1 == 0, &mut io);
            }
            // Links and ports come and go.
            _ => match arg % 4 {
                0 => b.set_link_alive(u32::from(arg >> 2) % 3, arg & 0x10 != 0).map_or((), |_| ()),
                1 => b.remove_port(1),
                2 => b.add_port(1, "p1"),
                _ => {
                    let _ = b.announce(now, 0, None, &[], &mut io);
                }
            },
        }
    }
    let _ = b.switch.fdb_entries(now);
    let _ = b.mesh.originators();
    std::hint::black_box(io.bytes);
});
