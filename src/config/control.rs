//! `[control]`: where the control socket lives and who may use it.
//!
//! The socket answers with the mesh's topology and peers and takes port
//! changes, so it is for root, the daemon's own user and one operators'
//! group: its file mode and group say so to the file system, and the
//! daemon checks every client's credentials (SO_PEERCRED) on top, so a
//! too-open directory or a mode changed by hand does not open it up.

use std::path::PathBuf;

use serde::Deserialize;

use super::access::{parse_mode, resolve_group, GroupSpec, ModeSpec};
use super::{err, ConfigError, DEFAULT_SOCKET};

/// The socket's mode when `[control] mode` is absent: owner and group.
pub const DEFAULT_MODE: u32 = 0o660;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// The operators' group (name or numeric gid): the socket's group, and
    /// its members may use it. Absent: the daemon's own group.
    pub group: Option<GroupSpec>,
    /// The socket's file mode, as a string ("0660") or a TOML octal
    /// integer (0o660).
    pub mode: Option<ModeSpec>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            socket: default_socket(),
            group: None,
            mode: None,
        }
    }
}

fn default_socket() -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET)
}

/// `[control]` resolved: what the control server applies and checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlAccess {
    pub socket: PathBuf,
    /// The socket file's group and the group whose members are served.
    pub gid: Option<u32>,
    pub mode: u32,
}

impl ControlConfig {
    /// Checks the keys and looks the group up; errors name the field.
    pub fn access(&self) -> Result<ControlAccess, ConfigError> {
        if self.socket.as_os_str().is_empty() {
            return Err(err("control.socket", "must not be empty"));
        }
        let mode = match &self.mode {
            None => DEFAULT_MODE,
            Some(m) => parse_mode(
                m,
                "only root, the daemon's user and control.group are served anyway: use 0660 or 0600",
            )
            .map_err(|e| err("control.mode", e))?,
        };
        let gid = match &self.group {
            None => None,
            Some(GroupSpec::Gid(g)) => Some(*g),
            Some(GroupSpec::Name(n)) => {
                Some(resolve_group(n).map_err(|e| err("control.group", e))?)
            }
        };
        Ok(ControlAccess {
            socket: self.socket.clone(),
            gid,
            mode,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(text: &str) -> Result<ControlAccess, ConfigError> {
        toml::from_str::<ControlConfig>(text).unwrap().access()
    }

    #[test]
    fn defaults_and_forms() {
        let a = access("").unwrap();
        assert_eq!((a.gid, a.mode), (None, 0o660));
        assert_eq!(access("mode = \"0600\"").unwrap().mode, 0o600);
        assert_eq!(access("mode = 0o640").unwrap().mode, 0o640);
        assert_eq!(access("mode = \"0o660\"").unwrap().mode, 0o660);
        assert_eq!(access("group = \"root\"").unwrap().gid, Some(0));
        assert_eq!(access("group = 4242").unwrap().gid, Some(4242));
        assert_eq!(access("group = \"4243\"").unwrap().gid, Some(4243));
    }

    #[test]
    fn refusals_name_the_field() {
        for (text, field, what) in [
            ("mode = 660", "control.mode", "decimal"),
            ("mode = \"0666\"", "control.mode", "every local user"),
            ("mode = \"0066\"", "control.mode", "every local user"),
            ("mode = \"0460\"", "control.mode", "owner needs"),
            ("mode = \"rw\"", "control.mode", "octal"),
            ("mode = \"\"", "control.mode", "octal"),
            ("mode = -1", "control.mode", "not a file mode"),
            (
                "group = \"no-such-group-meshwire-x\"",
                "control.group",
                "groupadd",
            ),
            ("group = \"\"", "control.group", "empty"),
            ("socket = \"\"", "control.socket", "empty"),
        ] {
            let e = access(text).unwrap_err();
            assert_eq!(e.field, field, "{text}");
            assert!(e.message.contains(what), "{text}: {e}");
        }
    }
}
