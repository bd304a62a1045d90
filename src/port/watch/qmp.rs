//! QMP messages as meshwire reads them, sans I/O: one line of JSON from
//! qemu's monitor socket in, one [`Msg`] out.
//!
//! The socket is the operator's, but what arrives on it is not trusted:
//! a line that is no JSON, JSON that is no QMP message, or a field of the
//! wrong type is an [`Error`] (counted and logged by the caller), never a
//! panic. Only what the watcher acts on is picked out; the rest of a
//! message (timestamps, event data it does not need) is ignored.

use serde_json::Value;

use crate::wire::MacAddr;

/// Longest line taken from the socket: qemu's events and the answers
/// asked for are a few hundred bytes; a longer line is garbage or hostile.
pub const MAX_LINE: usize = 64 * 1024;

/// The ids of the commands the watcher sends, echoed in qemu's answers.
pub const ID_CAPABILITIES: &str = "mw-cap";
pub const ID_STATUS: &str = "mw-status";
pub const ID_RX_FILTER: &str = "mw-rxf";
pub const ID_EVENTS: &str = "mw-events";

/// What one line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// The greeting qemu sends on connect (`{"QMP": {...}}`).
    Greeting,
    /// An asynchronous event.
    Event(Event),
    /// The answer to `qmp_capabilities`.
    CapabilitiesOk,
    /// The answer to `query-status`: qemu's run state.
    Status(RunState),
    /// The answer to `query-rx-filter`: the NICs' MACs.
    Macs(Vec<MacAddr>),
    /// An `error` answer to one of our commands (its id, its class).
    CommandError { id: String, class: String },
    /// A well-formed answer or message the watcher has no use for.
    Other,
}

/// The events the watcher acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The guest's CPUs run (a migration's destination: the guest is
    /// there now).
    Resume,
    /// The guest's CPUs stopped (a migration's source: from here on the
    /// guest reads nothing).
    Stop,
    /// `MIGRATION` with its status.
    Migration(MigrationStatus),
    /// qemu is going away (guest shutdown or quit).
    Shutdown,
    /// Another event, by name (counted, not acted on).
    Other(String),
}

/// `MIGRATION` event statuses (qemu's MigrationStatus), those that matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationStatus {
    Setup,
    Active,
    /// `pre-switchover`, `device`: the last phase, the guest stopped.
    Switchover,
    Completed,
    /// `failed`, `cancelled`: the guest stays (or runs again) where it was.
    Failed,
    /// Any other (`postcopy-*`, `wait-unplug`, ...).
    Other,
}

/// `query-status`'s `status`, those that matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    /// `inmigrate`: an incoming qemu waiting for (or receiving) the guest.
    InMigrate,
    /// `postmigrate`: a source whose guest left.
    PostMigrate,
    /// Paused for another reason (`paused`, `prelaunch`, `finish-migrate`,
    /// ...).
    Paused,
}

/// Why a line was not a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    TooLong(usize),
    NotUtf8,
    NotJson,
    /// JSON, but no QMP message (no greeting, event, return or error), or
    /// a field the watcher needs has the wrong type.
    NotQmp(&'static str),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::TooLong(n) => write!(f, "line of {n} bytes (max {MAX_LINE})"),
            Error::NotUtf8 => f.write_str("not UTF-8"),
            Error::NotJson => f.write_str("not JSON"),
            Error::NotQmp(why) => write!(f, "not a QMP message: {why}"),
        }
    }
}

/// Parses one line (without or with its newline).
pub fn parse(line: &[u8]) -> Result<Msg, Error> {
    if line.len() > MAX_LINE {
        return Err(Error::TooLong(line.len()));
    }
    let text = std::str::from_utf8(line).map_err(|_| Error::NotUtf8)?;
    let v: Value = serde_json::from_str(text.trim()).map_err(|_| Error::NotJson)?;
    let Value::Object(m) = &v else {
        return Err(Error::NotQmp("not an object"));
    };
    if m.contains_key("QMP") {
        return Ok(Msg::Greeting);
    }
    if let Some(name) = m.get("event") {
        let name = name.as_str().ok_or(Error::NotQmp("event is no string"))?;
        return Ok(Msg::Event(event(name, m.get("data"))?));
    }
    let id = m.get("id").and_then(Value::as_str).unwrap_or("");
    if let Some(e) = m.get("error") {
        let class = e.get("class").and_then(Value::as_str).unwrap_or("");
        return Ok(Msg::CommandError {
            id: id.to_string(),
            class: class.to_string(),
        });
    }
    let Some(ret) = m.get("return") else {
        return Err(Error::NotQmp("no greeting, event, return or error"));
    };
    match id {
        ID_CAPABILITIES => Ok(Msg::CapabilitiesOk),
        ID_STATUS => {
            let s = ret
                .get("status")
                .and_then(Value::as_str)
                .ok_or(Error::NotQmp("query-status without a status"))?;
            Ok(Msg::Status(run_state(s)))
        }
        ID_RX_FILTER => {
            let list = ret
                .as_array()
                .ok_or(Error::NotQmp("query-rx-filter is no list"))?;
            // Bounded: a VM has a handful of NICs.
            let macs = list
                .iter()
                .take(64)
                .filter_map(|nic| nic.get("main-mac")?.as_str()?.parse::<MacAddr>().ok())
                .filter(|m| m.is_unicast() && !m.is_zero())
                .collect();
            Ok(Msg::Macs(macs))
        }
        _ => Ok(Msg::Other),
    }
}

fn event(name: &str, data: Option<&Value>) -> Result<Event, Error> {
    Ok(match name {
        "RESUME" => Event::Resume,
        "STOP" => Event::Stop,
        "SHUTDOWN" => Event::Shutdown,
        "MIGRATION" => {
            let s = data
                .and_then(|d| d.get("status"))
                .and_then(Value::as_str)
                .ok_or(Error::NotQmp("MIGRATION without a status"))?;
            Event::Migration(migration_status(s))
        }
        // Bounded and printable: the name is only counted and logged.
        other => Event::Other(
            other
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(64)
                .collect(),
        ),
    })
}

fn migration_status(s: &str) -> MigrationStatus {
    match s {
        "setup" => MigrationStatus::Setup,
        "active" => MigrationStatus::Active,
        "pre-switchover" | "device" => MigrationStatus::Switchover,
        "completed" => MigrationStatus::Completed,
        "failed" | "cancelled" | "cancelling" => MigrationStatus::Failed,
        _ => MigrationStatus::Other,
    }
}

fn run_state(s: &str) -> RunState {
    match s {
        "running" => RunState::Running,
        "inmigrate" => RunState::InMigrate,
        "postmigrate" => RunState::PostMigrate,
        _ => RunState::Paused,
    }
}

/// The commands sent after the greeting, one per line, in this order.
/// qemu sends `MIGRATION` events only with the `events` capability on
/// (libvirt turns it on; a plain qemu has it off): the watcher turns it on
/// too. It changes nothing else, and qemu refuses it during a migration
/// (that error is ignored).
pub fn handshake() -> String {
    format!(
        "{{\"execute\":\"qmp_capabilities\",\"id\":\"{ID_CAPABILITIES}\"}}\n\
         {{\"execute\":\"migrate-set-capabilities\",\"arguments\":{{\"capabilities\":\
         [{{\"capability\":\"events\",\"state\":true}}]}},\"id\":\"{ID_EVENTS}\"}}\n\
         {{\"execute\":\"query-status\",\"id\":\"{ID_STATUS}\"}}\n\
         {{\"execute\":\"query-rx-filter\",\"id\":\"{ID_RX_FILTER}\"}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_messages() {
        let greeting = br#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 8}, "package": ""}, "capabilities": ["oob"]}}"#;
        assert_eq!(parse(greeting), Ok(Msg::Greeting));
        let ev = br#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESUME"}"#;
        assert_eq!(parse(ev), Ok(Msg::Event(Event::Resume)));
        let ev = br#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}"#;
        assert_eq!(parse(ev), Ok(Msg::Event(Event::Stop)));
        for (s, want) in [
            ("setup", MigrationStatus::Setup),
            ("active", MigrationStatus::Active),
            ("device", MigrationStatus::Switchover),
            ("completed", MigrationStatus::Completed),
            ("cancelled", MigrationStatus::Failed),
            ("postcopy-active", MigrationStatus::Other),
        ] {
            let line = format!(r#"{{"event": "MIGRATION", "data": {{"status": "{s}"}}}}"#);
            assert_eq!(
                parse(line.as_bytes()),
                Ok(Msg::Event(Event::Migration(want)))
            );
        }
        assert_eq!(
            parse(br#"{"event": "NIC_RX_FILTER_CHANGED", "data": {}}"#),
            Ok(Msg::Event(Event::Other("NIC_RX_FILTER_CHANGED".into())))
        );
        assert_eq!(
            parse(br#"{"return": {}, "id": "mw-cap"}"#),
            Ok(Msg::CapabilitiesOk)
        );
        assert_eq!(
            parse(br#"{"return": {"status": "inmigrate", "running": false}, "id": "mw-status"}"#),
            Ok(Msg::Status(RunState::InMigrate))
        );
        let rxf = br#"{"return": [{"name": "net0", "main-mac": "52:54:00:4d:57:01", "promiscuous": true}, {"name": "n1", "main-mac": "ff:ff:ff:ff:ff:ff"}, {"name": "n2"}], "id": "mw-rxf"}"#;
        let mac: MacAddr = "52:54:00:4d:57:01".parse().unwrap();
        assert_eq!(parse(rxf), Ok(Msg::Macs(vec![mac])));
        assert_eq!(
            parse(br#"{"error": {"class": "CommandNotFound", "desc": "x"}, "id": "mw-rxf"}"#),
            Ok(Msg::CommandError {
                id: "mw-rxf".into(),
                class: "CommandNotFound".into()
            })
        );
        assert_eq!(parse(br#"{"return": 5}"#), Ok(Msg::Other));
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        assert_eq!(parse(b"\xff\xfe"), Err(Error::NotUtf8));
        assert_eq!(parse(b"{\"event\": "), Err(Error::NotJson));
        assert_eq!(parse(b""), Err(Error::NotJson));
        assert!(matches!(parse(b"[1,2]"), Err(Error::NotQmp(_))));
        assert!(matches!(parse(b"{\"event\": 5}"), Err(Error::NotQmp(_))));
        assert!(matches!(
            parse(br#"{"event": "MIGRATION", "data": {"status": 1}}"#),
            Err(Error::NotQmp(_))
        ));
        assert!(matches!(
            parse(br#"{"event": "MIGRATION"}"#),
            Err(Error::NotQmp(_))
        ));
        assert!(matches!(
            parse(br#"{"return": 1, "id": "mw-status"}"#),
            Err(Error::NotQmp(_))
        ));
        assert!(matches!(
            parse(br#"{"return": {}, "id": "mw-rxf"}"#),
            Err(Error::NotQmp(_))
        ));
        assert!(matches!(parse(b"{}"), Err(Error::NotQmp(_))));
        assert_eq!(
            parse(b"{\"event\": \"A\\u001b[31mB\\nC\"}"),
            Ok(Msg::Event(Event::Other("A[31mBC".into())))
        );
        let long = vec![b' '; MAX_LINE + 1];
        assert_eq!(parse(&long), Err(Error::TooLong(MAX_LINE + 1)));
        // Deeply nested JSON: serde_json's recursion limit, not a stack
        // overflow.
        let deep = "[".repeat(10_000);
        assert_eq!(parse(deep.as_bytes()), Err(Error::NotJson));
        // Every prefix of real messages.
        let real = br#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "MIGRATION", "data": {"status": "completed"}}"#;
        for n in 0..real.len() {
            let _ = parse(&real[..n]);
        }
    }

    #[test]
    fn the_handshake_is_four_lines_of_json() {
        let h = handshake();
        let lines: Vec<&str> = h.lines().collect();
        assert_eq!(lines.len(), 4);
        for l in lines {
            let v: Value = serde_json::from_str(l).unwrap();
            assert!(v["execute"].is_string());
        }
    }
}
