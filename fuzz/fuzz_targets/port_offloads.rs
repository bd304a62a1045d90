//! Hostile TAP reads through the offload paths: a virtio header plus a
//! (super-)frame as a VM's kernel hands it over, cut into frames; and
//! frames through both coalescers (TCP and UDP) toward a TAP, whose
//! super-frames must cut back into frames no longer than the port takes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshwire::port::{gro, gro_udp, PortCounters, PortRx};

/// A 1500-byte MTU port: MTU + Ethernet header + one 802.1Q tag.
const MAX_FRAME: usize = 1500 + 14 + 4;

fuzz_target!(|data: &[u8]| {
    let mut c = PortCounters::default();
    let mut rx = PortRx::new();
    rx.load(data, true, &mut c, MAX_FRAME);
    rx.load(data, false, &mut c, MAX_FRAME);
    let mut frames: Vec<Vec<u8>> = Vec::new();
    rx.for_each_frame(|f| {
        assert!(f.len() <= MAX_FRAME);
        frames.push(f.to_vec());
    });
    // The input also as a run of frames, each behind a 2-byte big-endian
    // length, so flows, lengths and checksums the coalescers compare vary
    // (the corpus seeds valid flows).
    let mut rest = data;
    while frames.len() < 256 {
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(u16::from_be_bytes(*len)).min(tail.len());
        let (f, tail) = tail.split_at(len);
        frames.push(f.to_vec());
        rest = tail;
    }

    let mut tcp = gro::Gro::new();
    let mut udp = gro_udp::UdpGro::new();
    let mut out = PortRx::new();
    let mut super_frames = Vec::new();
    for f in &frames {
        if !tcp.push(f) {
            super_frames.push(tcp.take().to_vec());
            tcp.push(f);
        }
        if !udp.push(f) {
            super_frames.push(udp.take().to_vec());
            udp.push(f);
        }
    }
    super_frames.push(tcp.take().to_vec());
    super_frames.push(udp.take().to_vec());
    // What we would write, read back as the kernel would hand it over.
    for s in super_frames.iter().filter(|s| !s.is_empty()) {
        out.clear();
        out.load(s, true, &mut c, MAX_FRAME);
        out.for_each_frame(|f| assert!(f.len() <= MAX_FRAME));
    }
});
