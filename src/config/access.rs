//! Who may open a unix socket meshwire listens on: its group and file
//! mode, as `[control]` and a vhost-user port's socket take them (a group
//! by name or gid, a mode as "0660" or a TOML octal 0o660).

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum GroupSpec {
    Gid(u32),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ModeSpec {
    Number(i64),
    Text(String),
}

impl GroupSpec {
    /// The gid, looked up by name where it is one.
    pub fn gid(&self) -> Result<u32, String> {
        match self {
            GroupSpec::Gid(g) => Ok(*g),
            GroupSpec::Name(n) => resolve_group(n),
        }
    }
}

/// A group name or a numeric gid, as the system knows it.
pub fn resolve_group(name: &str) -> Result<u32, String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if let Ok(g) = name.parse::<u32>() {
        return Ok(g);
    }
    match crate::sys::cred::group_gid(name) {
        Ok(Some(g)) => Ok(g),
        Ok(None) => Err(format!(
            "no group '{name}' on this system (create it: groupadd {name})"
        )),
        Err(e) => Err(format!("cannot look up group '{name}': {e}")),
    }
}

/// A permission mode (0 to 0777) with no bits for others (`why_not_others`
/// says what they would get) that leaves the owner, the daemon, read and
/// write.
pub fn parse_mode(m: &ModeSpec, why_not_others: &str) -> Result<u32, String> {
    let v = match m {
        ModeSpec::Number(n) => u32::try_from(*n).map_err(|_| format!("{n} is not a file mode"))?,
        ModeSpec::Text(s) => parse_octal(s)?,
    };
    if v > 0o777 {
        return Err(format!(
            "{v:#o} is not a permission mode (0 to 0777; a decimal TOML number? write \"0660\" or 0o660)"
        ));
    }
    if v & 0o007 != 0 {
        return Err(format!(
            "{v:04o} opens the socket to every local user; {why_not_others}"
        ));
    }
    if v & 0o600 != 0o600 {
        return Err(format!(
            "{v:04o}: the owner needs read and write (0600 at least)"
        ));
    }
    Ok(v)
}

fn parse_octal(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    if digits.is_empty() || !digits.chars().all(|c| ('0'..='7').contains(&c)) {
        return Err(format!("'{s}' is not an octal file mode like \"0660\""));
    }
    u32::from_str_radix(digits, 8).map_err(|_| format!("'{s}' is not a file mode"))
}

/// A vhost-user port's socket access from its keys; an error names the
/// key (`vhost_user_group` or `vhost_user_mode`).
pub fn vhost_socket(
    group: Option<&GroupSpec>,
    mode: Option<&ModeSpec>,
) -> Result<crate::port::vhost::SocketAccess, (&'static str, String)> {
    let mut a = crate::port::vhost::SocketAccess::default();
    if let Some(g) = group {
        a.gid = Some(g.gid().map_err(|e| ("vhost_user_group", e))?);
    }
    if let Some(m) = mode {
        let others = "whoever connects becomes this VM's network: give qemu's group \
                      (vhost_user_group) 0660 instead";
        a.mode = parse_mode(m, others).map_err(|e| ("vhost_user_mode", e))?;
    }
    Ok(a)
}
