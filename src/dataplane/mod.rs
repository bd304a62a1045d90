//! The worker loop that moves packets between ports, switch, mesh and tunnel.

use crate::config::Validated;

pub fn run(_cfg: Validated) -> Result<(), String> {
    Err("dataplane not built yet".into())
}
