//! meshwire: WireGuard + GRE/TEB + batman-adv IV + VM ports in one userspace process.
//!
//! The layers, outside in (see `../shared/DESIGN.md`):
//! - [`tunnel`]: one WireGuard session per peer over our own UDP socket, the
//!   inner IP + GRE/TEB framing of a kernel gretap.
//! - [`mesh`]: batman-adv IV: OGMs, originators, TQ, broadcast windows,
//!   translation table. Sans-I/O.
//! - [`switch`]: the forwarding decision for a VM frame (FDB, learning).
//! - [`port`]: TAP devices the process owns.
//! - [`control`]: the Unix-socket API behind `meshwire ctl`.
//! - [`dataplane`]: the loop that moves packets between the above.
//! - [`wire`]: packet formats only, zero-copy views that never panic.
//! - [`watch`]: qemu lifecycle watchers (QMP) that drive live migrations.
//! - [`sys`]: the system calls std does not wrap; the only `unsafe` code.

#![deny(unsafe_code)]

pub mod bridge;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod keys;
pub mod log;
pub mod mesh;
pub mod metrics;
pub mod port;
pub mod service;
pub mod switch;
#[allow(unsafe_code)]
pub mod sys;
pub mod tunnel;
pub mod wire;
