//! The system calls meshwire makes, wrapped once, each `unsafe` block with
//! the reason it is sound. The layers above the I/O (`wire`, `mesh`,
//! `switch`, `bridge`) forbid unsafe code; the device and socket code in
//! `port/` and `tunnel/` call these wrappers. What is not here yet: the
//! batched UDP I/O (`tunnel/rx_batch.rs`, `tx_batch.rs`: recvmmsg/sendmmsg
//! over their own preallocated message arrays), the UDP socket setup and
//! its reuseport BPF program (`tunnel/socket.rs`, `steer.rs`), the TUN
//! ioctls of `port/tap.rs` and the control socket's peer credentials.

pub mod epoll;
pub mod eventfd;
pub mod ifreq;
pub mod sockopt;
