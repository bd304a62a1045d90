//! A receive-ring slot of an attached port made of the input (status word,
//! lengths and offsets included): the parser must not panic, and a frame
//! it accepts lies inside the slot, behind a whole virtio header that does
//! not reach into the slot's own header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshwire::port::packet_slot::{parse, Slot, RING_VNET, TPACKET2_HDR};

fuzz_target!(|data: &[u8]| {
    if let Slot::Frame { vnet, frame } = parse(data).slot {
        assert!(vnet.start >= TPACKET2_HDR && vnet.len() == RING_VNET);
        assert!(vnet.end == frame.start && frame.end <= data.len());
    }
});
