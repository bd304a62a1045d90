//! Hostile sequences of decrypted inner packets through the stateful receive
//! path: the link checks, the per-peer reassembly table, the GRE checks.
//! Input: records of [time step byte][length u16 BE][packet bytes].
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use meshwire::tunnel::gretap::{classify, decap_gre, Inner, Link};
use meshwire::tunnel::reassembly::{Reassembly, Verdict};
use meshwire::tunnel::{TunnelCounters, REASM_MAX_BYTES, REASM_MAX_DATAGRAMS, REASM_MAX_LEN};

fuzz_target!(|data: &[u8]| {
    let links = [
        Link {
            local: "198.19.0.1".parse().unwrap(),
            remote: "198.19.0.2".parse().unwrap(),
        },
        Link {
            local: "fd00::1".parse().unwrap(),
            remote: "fd00::2".parse().unwrap(),
        },
    ];
    let mut tables = [Reassembly::default(), Reassembly::default()];
    let mut c = TunnelCounters::default();
    let mut now = Instant::now();
    let mut rest = data;
    while let [step, hi, lo, tail @ ..] = rest {
        now += Duration::from_millis(u64::from(*step) * 16);
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (packet, next) = tail.split_at(len);
        rest = next;
        for (link, table) in links.iter().zip(tables.iter_mut()) {
            let gre = match classify(packet, *link) {
                Ok(Inner::Whole(g)) => g,
                Ok(Inner::Fragment(f)) => {
                    if table.input(f, now, &mut c) != Verdict::Complete {
                        continue;
                    }
                    assert!(table.completed().len() <= REASM_MAX_LEN);
                    table.completed()
                }
                Err(_) => continue,
            };
            if let Ok(frame) = decap_gre(gre) {
                assert!(frame.len() <= gre.len());
            }
            assert!(table.in_progress() <= REASM_MAX_DATAGRAMS);
            assert!(table.held_bytes() <= REASM_MAX_BYTES);
        }
    }
});
