//! Hostile decrypted tunnel payloads: inner IPv4/IPv6, GRE and the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshwire::tunnel::gretap::{decap, Link};

fuzz_target!(|data: &[u8]| {
    for link in [
        Link {
            local: "198.19.0.1".parse().unwrap(),
            remote: "198.19.0.2".parse().unwrap(),
        },
        Link {
            local: "fd00::1".parse().unwrap(),
            remote: "fd00::2".parse().unwrap(),
        },
    ] {
        if let Ok(frame) = decap(data, link) {
            assert!(frame.len() <= data.len());
        }
    }
});
