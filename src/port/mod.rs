//! Ports: the devices on the VM side of the switch.
//!
//! - [`device`]: the port backend interface: what the dataplane reads,
//!   writes and polls, whatever the device is (a TAP today).
//! - [`packet`]: the network side of a TAP another process holds (AF_PACKET).
//! - [`held`]: whether an existing TAP is held by another process.
//! - [`bridged`]: a TAP that is a port of a Linux bridge (`[[port]] bridge`).
//! - [`tap`]: one TAP device whose fd this process holds, with IFF_VNET_HDR
//!   and checksum/TSO/USO offloads when asked (the default for ports).
//! - [`ports`]: the registry PortId -> TAP with per-port counters.
//! - [`rx`]: receive batches; super-frames come out as MTU-sized frames.
//! - [`segment`]: the Ethernet-aware GSO split and checksum completion.
//! - [`gro`]: coalescing of TCP segments into super-frames toward a TAP.
//! - [`gro_udp`]: the same for the datagrams of a UDP flow (USO).
//! - [`tx`]: plain writes and the pool of flows being coalesced.
//! - [`vhost`]: vhost-user ports: a VM's virtio-net device over shared memory.
//! - [`watch`]: the qemu behind a port, watched over its QMP socket
//!   (`[[port]] qmp`): live migrations acted on as they happen.

pub mod bridged;
pub mod counters;
pub mod device;
pub mod gro;
pub mod gro_udp;
pub mod held;
pub mod packet;
pub mod packet_slot;
pub mod ports;
pub mod rx;
pub mod segment;
pub mod tap;
pub mod tx;
pub(crate) mod tx_batch;
pub mod vhost;
pub mod watch;

#[cfg(test)]
pub(crate) mod testnet;
#[cfg(test)]
mod tests;

pub use device::{Device, PortOptions, Queue};
pub use ports::{max_frame_len, Port, PortCounters, PortInfo, Ports, PortsCounters, MAX_PORTS};
pub use rx::PortRx;
pub use tap::{Offloads, Tap, TapOptions};

/// A port's id in this process; never reused while it runs.
pub type PortId = u32;
