//! Hostile VM and mesh frames through the switch: learning, VLANs, bounds.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use meshwire::switch::{Decision, Switch, SwitchConfig};
use meshwire::wire::MacAddr;

fuzz_target!(|data: &[u8]| {
    let mut sw = Switch::new(SwitchConfig::default());
    let t0 = Instant::now();
    let mut rest = data;
    let mut step = 0u64;
    // Records of [selector, len, bytes...]: selector picks port or mesh.
    while rest.len() >= 2 {
        let sel = rest[0];
        let len = (rest[1] as usize).min(rest.len() - 2);
        let frame = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let now = t0 + Duration::from_millis(step * 50);
        step += 1;
        if sel & 0x80 == 0 {
            let port = (sel % 4) as u32;
            let (d, _) = sw.from_port(now, port, frame);
            if let Decision::Port(p) = d {
                assert_ne!(p, port, "hairpin");
            }
        } else {
            let orig = (sel & 1 == 1).then_some(MacAddr([2, 0, 0, 0, 9, sel]));
            let d = sw.from_mesh(now, frame, orig);
            assert!(
                !matches!(d, Decision::Originator(_)),
                "mesh frame back to the mesh"
            );
        }
    }
    let _ = sw.expire(t0 + Duration::from_secs(3600));
});
