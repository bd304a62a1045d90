//! Ports: the TAP devices on the VM side of the switch.
//!
//! - [`tap`]: one TAP device whose fd this process holds.
//! - [`ports`]: the registry PortId -> TAP with per-port counters.

pub mod ports;
pub mod tap;

#[cfg(test)]
pub(crate) mod testnet;
#[cfg(test)]
mod tests;

pub use ports::{max_frame_len, Port, PortCounters, PortInfo, Ports, PortsCounters, MAX_PORTS};
pub use tap::Tap;

/// A port's id in this process; never reused while it runs.
pub type PortId = u32;
