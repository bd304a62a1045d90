//! The control request parser (issue 13): any bytes a local client can
//! send on the control socket go through `parse_request` (JSON, then every
//! argument checked like the config key it stands for). It must never
//! panic, and what it accepts must survive a round trip and pass the same
//! checks again (what `meshwire ctl` sends is what the daemon accepts).
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshwire::control::{parse_request, validate, CtlCommand, MAX_REQUEST};

fuzz_target!(|data: &[u8]| {
    let Ok(cmd) = parse_request(data) else {
        return;
    };
    assert!(data.len() <= MAX_REQUEST);
    validate(&cmd).expect("accepted, so valid");
    let text = serde_json::to_string(&cmd).expect("serializable");
    let again: CtlCommand = parse_request(text.as_bytes()).expect("round trip");
    assert_eq!(again, cmd);
});
