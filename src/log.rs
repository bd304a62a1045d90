//! Logs an operator can read: drops and moves are worth a warning, but a
//! hostile VM or peer must not be able to flood the log through them. A
//! [`RateLimit`] lets a few lines a second through per key (a port, the
//! move log) and counts what it held back, for the next line to say.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// The running daemon's log filter, changed by `meshwire ctl log-level`.
static FILTER: OnceLock<(
    reload::Handle<EnvFilter, Registry>,
    std::sync::Mutex<String>,
)> = OnceLock::new();

/// The longest filter `ctl log-level` takes (a RUST_LOG-style directive
/// list is a few dozen bytes).
pub const MAX_FILTER: usize = 512;

/// Logs to stderr: RUST_LOG as usual (default info), JSON lines or plain
/// text, colour only when stderr is a terminal (a log file or journald
/// must not carry escape codes). The filter can be changed while running.
pub fn init(json: bool) {
    use std::io::IsTerminal;
    // Unset or empty RUST_LOG: info (an empty filter would log nothing).
    let spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "info".into());
    let (filter, shown) = match EnvFilter::try_new(&spec) {
        Ok(f) => (f, spec),
        Err(_) => (EnvFilter::new("info"), "info".into()),
    };
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if json {
        registry.with(fmt.json()).try_init()
    } else {
        registry
            .with(fmt.with_ansi(std::io::stderr().is_terminal()))
            .try_init()
    };
    let _ = FILTER.set((handle, std::sync::Mutex::new(shown)));
}

/// The filter in force (None: logging was not set up by [`init`]).
pub fn filter() -> Option<String> {
    let (_, shown) = FILTER.get()?;
    Some(shown.lock().map(|s| s.clone()).unwrap_or_default())
}

/// Replaces the filter (RUST_LOG syntax: `debug`,
/// `info,meshwire::dataplane=debug`); a bad one changes nothing.
pub fn set_filter(spec: &str) -> Result<String, String> {
    if spec.len() > MAX_FILTER {
        return Err(format!("filter: longer than {MAX_FILTER} bytes"));
    }
    let f = EnvFilter::try_new(spec).map_err(|e| format!("filter '{spec}': {e}"))?;
    let (handle, shown) = FILTER.get().ok_or("logging is not set up")?;
    handle.reload(f).map_err(|e| e.to_string())?;
    let mut s = shown.lock().map_err(|e| e.to_string())?;
    *s = spec.to_string();
    Ok(s.clone())
}

#[derive(Debug, Clone)]
pub struct RateLimit {
    per_second: u32,
    window: Option<Instant>,
    lines: u32,
    suppressed: u64,
}

impl RateLimit {
    pub const fn new(per_second: u32) -> RateLimit {
        RateLimit {
            per_second,
            window: None,
            lines: 0,
            suppressed: 0,
        }
    }

    /// Whether a line may go out now: Some(lines held back since the last
    /// one that went out), or None (held back and counted).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        let fresh = self
            .window
            .is_none_or(|w| now.saturating_duration_since(w) >= Duration::from_secs(1));
        if fresh {
            self.window = Some(now);
            self.lines = 0;
        }
        if self.lines >= self.per_second {
            self.suppressed += 1;
            return None;
        }
        self.lines += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_lines_a_second_and_the_rest_counted() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(2);
        assert_eq!(r.allow(t0), Some(0));
        assert_eq!(r.allow(t0), Some(0));
        assert_eq!(r.allow(t0), None);
        assert_eq!(r.allow(t0 + Duration::from_millis(500)), None);
        assert_eq!(r.allow(t0 + Duration::from_secs(1)), Some(2));
    }
}
