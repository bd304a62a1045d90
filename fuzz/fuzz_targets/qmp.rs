//! The qemu watcher (`[[port]] qmp`) under hostile input from the QMP
//! socket: each input is split into lines as the watcher splits what it
//! reads; every line goes through the parser and, when it parses, the
//! state machine, whose actions must stay within what a qemu can cause.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshwire::port::watch::machine::Machine;
use meshwire::port::watch::qmp;

fuzz_target!(|data: &[u8]| {
    let mut m = Machine::default();
    m.connected();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(msg) = qmp::parse(line) {
            let _ = m.on_msg(&msg);
            assert!(m.macs().len() <= 64);
        }
    }
    let _ = m.disconnected();
});
