//! Hostile batman-adv input through the whole mesh state machine: OGM
//! aggregates, TVLVs and TT, broadcasts, unicasts, fragments. A run of
//! several packets per input reaches the stateful paths (an OGM creates an
//! originator, a later TT request or unicast uses it).
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use meshwire::mesh::{Mesh, MeshConfig};
use meshwire::wire::MacAddr;

fuzz_target!(|data: &[u8]| {
    let mut mesh = Mesh::new(MeshConfig::new(MacAddr([2, 0, 0, 0, 0, 1])));
    for h in 0..3u8 {
        mesh.hardif_add(h as u32, MacAddr([2, 0, 0, 0, 1, h]));
    }
    let t0 = Instant::now();
    let mut out = Vec::new();
    // Input: records of [hardif, src mac low byte, len, bytes...].
    let mut rest = data;
    let mut step = 0u64;
    while rest.len() >= 3 {
        let hardif = (rest[0] % 4) as u32; // 3 = unknown hardif
        let src = MacAddr([2, 0, 0, 0, 2, rest[1]]);
        let len = (rest[2] as usize).min(rest.len() - 3);
        let pkt = &rest[3..3 + len];
        rest = &rest[3 + len..];
        let now = t0 + Duration::from_millis(step * 300);
        step += 1;
        mesh.receive(now, hardif, src, MacAddr::BROADCAST, pkt, &mut out);
        mesh.tick(now, &mut out);
        out.clear();
    }
    let _ = mesh.originators();
    let _ = mesh.tt_global_entries();
});
