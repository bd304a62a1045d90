//! `meshwire ctl`: sends one request to the daemon and formats the answer.

use std::path::Path;

use super::CtlCommand;

pub fn run(_socket: &Path, _cmd: CtlCommand, _json: bool) -> Result<String, String> {
    Err("control client not built yet".into())
}
