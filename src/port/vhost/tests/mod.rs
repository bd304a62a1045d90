//! The device's own tests, no root and no qemu needed (the real guests are
//! in `netns-tests/interop/vhost*.rs`):
//! - `kick`: the read side against a guest driver on another thread; no
//!   kick may be lost between "the queue looked empty" and "notifications
//!   on";
//! - `dirty`: every page the device writes into the guest is marked in a
//!   migration's dirty log, and nothing else;
//! - `log`: the same end to end, the test playing qemu over the socket;
//! - `access`: the socket file's group and mode, at open and on a change;
//! - `uso`: UDP segmentation offload both ways through the port layer.

mod access;
mod dirty;
mod kick;
mod log;
mod uso;
