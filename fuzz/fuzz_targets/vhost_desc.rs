//! A vhost-user guest made of the input: ring geometry, descriptor tables,
//! avail rings and buffers (`port::vhost::hostile`). Both directions of the
//! device run on it; nothing may panic, and every access stays inside the
//! guest's two regions (vm-memory refuses the rest).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = meshwire::port::vhost::hostile::run(data);
});
