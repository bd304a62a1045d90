//! The metrics endpoint's HTTP request parser: any bytes a TCP client
//! sends as a request head. It must never panic, and what it serves must
//! have been a GET or HEAD of `/` or `/metrics`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshwire::metrics::http::{parse_request, Route};

fuzz_target!(|data: &[u8]| {
    if let Ok(route) = parse_request(data) {
        let line = data.split(|&b| b == b'\r').next().unwrap_or(data);
        let head_only = matches!(
            route,
            Route::Metrics { head_only: true } | Route::Index { head_only: true }
        );
        assert!(line.starts_with(if head_only { b"HEAD /" } else { b"GET /" }));
        if matches!(route, Route::Metrics { .. }) {
            assert!(line.windows(8).any(|w| w == b"/metrics"));
        }
    }
});
