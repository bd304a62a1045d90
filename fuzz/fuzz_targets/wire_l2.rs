//! Hostile Ethernet, ARP and neighbour-discovery bytes through the views.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshwire::wire::{arp, ethernet, ndisc};

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = ethernet::Frame::new_checked(data) {
        let _ = (
            f.dst_addr(),
            f.src_addr(),
            f.batman_vid(),
            f.inner_ethertype(),
        );
        let p = f.payload();
        if let Ok(a) = arp::Packet::new_checked(p) {
            let _ = (
                a.operation(),
                a.sha(),
                a.spa(),
                a.tha(),
                a.tpa(),
                a.is_gratuitous(),
            );
        }
        let _ = ndisc::Ndisc::parse(p);
    }
    let _ = ndisc::Ndisc::parse(data);
});
