//! The WireGuard + gretap layer: one boringtun `noise::Tunn` per peer over
//! our own UDP socket, with the inner IPv4/IPv6 + GRE/TEB framing of a kernel
//! `gretap` inside, so a kernel `wg` + `gretap` node is a valid peer.
//!
//! Files, one concern each (like the kernel module's):
//! - `core.rs`: what workers share (`TunnelCore`) and own (`TunnelIo`).
//! - `peer.rs`: a peer's Tunn, endpoint, inner address, stats.
//! - `peer_table.rs`: the peers by stable id (slot + generation), each slot
//!   behind its own lock; peers are added and removed while workers run.
//! - `noise.rs`: demultiplexing messages to peers (receiver index, initiator
//!   key) and the shared handshake rate limiter.
//! - `send.rs` / `receive.rs`: the two data paths.
//! - `codec.rs`: one frame's encapsulation + encryption and back, sans I/O.
//! - `timers.rs`: boringtun's timers for every peer.
//! - `socket.rs`: the dual-stack UDP socket (libc).
//! - `steer.rs`: which worker's socket receives which peer (reuseport BPF).
//! - `rx_batch.rs`: recvmmsg + UDP GRO; `tx_batch.rs`: sendmmsg + UDP GSO.
//! - `output.rs`: the one send queue every outgoing message joins.
//! - `gretap.rs`: inner encap/decap.
//! - `fragment.rs` / `reassembly.rs`: inner IP fragments for packets longer
//!   than one datagram over the underlay MTU may carry, and back.
//! - `counters.rs`: drop, event and batch-size counters.
//!
//! Threads: the peers live in a [`TunnelCore`], each behind its own lock
//! (a boringtun `Tunn` takes `&mut self` per message) and none behind a
//! lock over all of them, so [`Tunnels::add_peer`] and
//! [`Tunnels::remove_peer`] run beside the workers; everything a thread
//! needs for I/O (socket, batches, scratch buffers, counters) is its own
//! [`TunnelIo`]. Dataplane workers call the core with their `TunnelIo`
//! (`process_received`, `send_frames`, `tick`); [`Tunnels`] bundles the
//! core with the first socket's path for one-thread use (timers, tests):
//! `receive` when its socket is readable, `tick` every 100-250 ms,
//! `send_frame` for each outgoing frame, and `flush` once per loop
//! iteration.
//!
//! Batching (the point of it: one system call per packet was the limit of
//! every userspace peer measured here, see DESIGN.md): `send_frame`
//! encrypts into a preallocated batch of TX_BATCH datagrams and sends
//! nothing; `flush` hands the batch to the kernel with one sendmmsg, runs of
//! equal-sized datagrams to one endpoint as single UDP GSO messages. A full
//! batch flushes by itself, and `receive` and `tick` flush before they
//! return, so nothing waits past the caller's next `flush`, `receive` or
//! `tick`. Receive takes RX_BATCH entries per recvmmsg, each possibly a GRO
//! train. Where the kernel lacks GSO/GRO (before 4.18/5.0) or refuses GSO,
//! plain sendmmsg/recvmmsg remain; `set_batching(false)` turns all of it
//! off (one system call per datagram each way).
//!
//! Bounds (hostile or broken peers cannot grow memory):
//! - frames waiting for a handshake: boringtun's queue, 256 per peer (one
//!   allocation per queued frame, only while no session exists);
//! - one `receive` makes at most MAX_BATCHES_PER_CALL recvmmsg calls of
//!   RX_BATCH entries, and none after MAX_DATAGRAMS_PER_CALL datagrams (RX_SLOT bytes each: 2 MiB, allocated once, touched
//!   only as far as trains reach); datagrams over RX_DATAGRAM_MAX are
//!   dropped;
//! - the send batch: TX_BATCH slots of TX_SLOT bytes (576 KiB), allocated
//!   once;
//! - handshake processing: HANDSHAKE_RATE_LIMIT per second, then cookies;
//! - peers: at most MAX_PEERS slots (`peer_table.rs`: stable ids, slot +
//!   generation, inside boringtun's 24-bit index space);
//! - inner reassembly per peer: REASM_MAX_DATAGRAMS datagrams, REASM_MAX_BYTES
//!   bytes, REASM_TIMEOUT (see `reassembly.rs`).
//!
//! MTU (issue 3): VMs keep 1500 over a 1500-byte underlay. Unicast frames
//! that do not fit a link are batman-adv fragments already (the mesh);
//! anything else longer than one datagram over `underlay_mtu` may carry
//! (a broadcast of a full-size frame) is cut into inner IP fragments before
//! encryption, as the kernel's IP layer does below a gretap over wg0, and
//! reassembled per peer on receive. The socket sets IP_PMTUDISC_DO /
//! IPV6_DONTFRAG, so the underlay never fragments: a datagram that still
//! does not fit the path is refused (EMSGSIZE) and counted (tx_too_big).
//!
//! Wire compatibility with a kernel `wg` + `gretap` pair: inner IPv4 with DF,
//! TTL 64, TOS 0, an IP identification that counts up per peer, GRE
//! 0x0000/0x6558, and WireGuard's zero padding to 16 bytes (capped at the
//! 1420-byte wg0 MTU), which boringtun itself does not add.

mod codec;
mod core;
mod counters;
mod fragment;
pub mod gretap;
mod noise;
mod output;
mod peer;
pub(crate) mod peer_table;
pub mod reassembly;
mod receive;
mod rx_batch;
mod send;
mod socket;
mod steer;
mod test_hook;
mod timers;
mod tx_batch;

#[cfg(test)]
pub(crate) mod captures;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::x25519::StaticSecret;

pub use self::core::{TunnelCore, TunnelIo};
pub use codec::{encap_frame, open_datagram, seal_packet, Opened, Sealed, MAX_FRAME_LEN};
pub use counters::TunnelCounters;
pub use gretap::{Drop as InnerDrop, Link, INNER_TTL};
pub use noise::HANDSHAKE_RATE_LIMIT;
pub use peer::PeerStats;
pub use peer_table::{generation_of, make_id, slot_of, MAX_PEER_SLOTS as MAX_PEERS};
pub use reassembly::{REASM_MAX_BYTES, REASM_MAX_DATAGRAMS, REASM_MAX_LEN, REASM_TIMEOUT};
pub use receive::{MAX_BATCHES_PER_CALL, MAX_DATAGRAMS_PER_CALL};
pub use rx_batch::{RX_BATCH, RX_SLOT};
pub use send::MIN_UNDERLAY_MTU;
pub use socket::{RX_DATAGRAM_MAX, SOCKET_BUFFER_BYTES};
pub use tx_batch::{TX_BATCH, TX_SLOT};

use noise::{IndexMap, Matcher};
use output::Output;
use peer_table::PeerTable;
use socket::UdpSocket;

/// A peer's stable identity: slot | generation << 16 (`peer_table.rs`).
/// The config's peer i is id i.
pub type PeerId = u32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    pub public_key: [u8; 32],
    /// None: learnt from the first authenticated packet the peer sends.
    pub endpoint: Option<SocketAddr>,
    /// The peer's inner address (its gretap local, our gretap remote).
    pub inner: IpAddr,
    /// Seconds; None or 0 turns it off.
    pub persistent_keepalive: Option<u16>,
}

/// Wipes its copy of the private key when dropped (see `impl Drop`).
#[derive(Clone)]
pub struct TunnelConfig {
    pub private_key: [u8; 32],
    /// 0 lets the kernel choose (tests); see `Tunnels::local_port`.
    pub listen_port: u16,
    /// Our inner address (the gretap local address); same family as every
    /// peer's `inner`.
    pub local_inner: IpAddr,
    pub peers: Vec<PeerSpec>,
    /// MTU of the underlay path (`node.underlay_mtu`, 1500 by default): no
    /// datagram we send is longer than fits it; longer inner packets go as
    /// inner IP fragments, and the socket forbids underlay fragmentation.
    pub underlay_mtu: u16,
}

impl Drop for TunnelConfig {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.private_key);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelError {
    UnknownPeer(PeerId),
    /// Shorter than an Ethernet header.
    FrameTooShort(usize),
    /// Longer than MAX_FRAME_LEN.
    FrameTooLong(usize),
    /// The peer has no configured endpoint and has not contacted us yet.
    NoEndpoint(PeerId),
    /// A send failed (WouldBlock: the socket buffer is full). send_frame
    /// no longer returns it: sends happen at flush time and their failures
    /// are counted (tx_would_block, tx_socket_errors).
    Socket(io::ErrorKind),
    /// boringtun refused to encrypt.
    Noise,
}

impl fmt::Display for TunnelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunnelError::UnknownPeer(p) => write!(f, "no peer {p}"),
            TunnelError::FrameTooShort(n) => {
                write!(f, "frame of {n} bytes is shorter than an Ethernet header")
            }
            TunnelError::FrameTooLong(n) => write!(f, "frame of {n} bytes exceeds {MAX_FRAME_LEN}"),
            TunnelError::NoEndpoint(p) => write!(f, "peer {p} has no known endpoint"),
            TunnelError::Socket(k) => write!(f, "send failed: {k}"),
            TunnelError::Noise => f.write_str("WireGuard encapsulation failed"),
        }
    }
}

impl std::error::Error for TunnelError {}

/// Why [`Tunnels::add_peer`] refused a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddPeerError {
    /// Its inner address is not of our inner address's family.
    InnerFamily,
    /// Its public key is already that of this peer.
    DuplicateKey(PeerId),
    /// Every one of the MAX_PEERS slots holds a peer.
    Full,
}

impl fmt::Display for AddPeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddPeerError::InnerFamily => f.write_str("inner address family differs from ours"),
            AddPeerError::DuplicateKey(p) => write!(f, "public key already that of peer {p}"),
            AddPeerError::Full => write!(f, "{MAX_PEERS} peers already, the most a node has"),
        }
    }
}

impl std::error::Error for AddPeerError {}

pub struct Tunnels {
    core: Arc<TunnelCore>,
    /// The first socket's path, used by the `Tunnels` methods below (one
    /// thread: tests, timers under the node lock).
    io: TunnelIo,
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // Without the kernel's random source the indices are merely predictable,
    // which WireGuard tolerates (they are not secrets).
    let _ = getrandom::getrandom(&mut b);
    u32::from_ne_bytes(b)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl Tunnels {
    /// Checks the config and binds the socket.
    pub fn new(cfg: TunnelConfig) -> io::Result<Tunnels> {
        Tunnels::with_reuse_port(cfg, false)
    }

    /// Like `new`; with `reuse_port` the socket opens an SO_REUSEPORT group
    /// that `new_io` adds further workers' sockets to.
    pub fn with_reuse_port(cfg: TunnelConfig, reuse_port: bool) -> io::Result<Tunnels> {
        if cfg.peers.len() > MAX_PEERS {
            return Err(invalid(format!(
                "{} peers, at most {MAX_PEERS}",
                cfg.peers.len()
            )));
        }
        if usize::from(cfg.underlay_mtu) < MIN_UNDERLAY_MTU {
            return Err(invalid(format!(
                "underlay MTU {} is below {MIN_UNDERLAY_MTU}",
                cfg.underlay_mtu
            )));
        }
        let mut by_key = HashMap::with_capacity(cfg.peers.len());
        for (i, p) in cfg.peers.iter().enumerate() {
            if p.inner.is_ipv4() != cfg.local_inner.is_ipv4() {
                return Err(invalid(format!(
                    "peer {i}: inner address family differs from ours"
                )));
            }
            if by_key.insert(p.public_key, i as PeerId).is_some() {
                return Err(invalid(format!("peer {i}: public key listed twice")));
            }
        }
        let socket = UdpSocket::bind_shared(cfg.listen_port, reuse_port)?;
        let secret = StaticSecret::from(cfg.private_key); // wiped on drop
        let matcher = Matcher::new(secret, by_key);
        let peers = PeerTable::new(MAX_PEERS);
        let index = IndexMap::new(random_u32(), peers.capacity());
        let core = TunnelCore {
            peers,
            local_inner: cfg.local_inner,
            index,
            matcher,
            underlay_mtu: usize::from(cfg.underlay_mtu),
        };
        for (i, spec) in cfg.peers.iter().enumerate() {
            // Empty table, slots in order: config peer i is id i.
            let id = core.peers.insert(|id| core.new_peer(spec, id));
            debug_assert_eq!(id, Some(i as PeerId));
        }
        Ok(Tunnels {
            core: Arc::new(core),
            io: TunnelIo::new(Output::new(socket)),
        })
    }

    /// Adds a peer while the workers run; returns its id (the first free
    /// slot, in its next generation if it held a peer before). The
    /// reuseport steering needs nothing: it reads the id from the receiver
    /// index, so the new peer's data reaches worker `id mod workers`.
    /// boringtun fixes a peer's keys and persistent keepalive when its
    /// `Tunn` is made: changing either is `remove_peer` + `add_peer`.
    pub fn add_peer(&self, spec: &PeerSpec) -> Result<PeerId, AddPeerError> {
        if spec.inner.is_ipv4() != self.core.local_inner.is_ipv4() {
            return Err(AddPeerError::InnerFamily);
        }
        let mut keys = self.core.matcher.keys_mut();
        if let Some(&id) = keys.get(&spec.public_key) {
            return Err(AddPeerError::DuplicateKey(id));
        }
        let id = self
            .core
            .peers
            .insert(|id| self.core.new_peer(spec, id))
            .ok_or(AddPeerError::Full)?;
        keys.insert(spec.public_key, id);
        Ok(id)
    }

    /// Removes a peer: its sessions and the frames waiting for a handshake
    /// end with it, datagrams with its receiver indices are counted
    /// (`rx_unknown_index`) and dropped, frames for its id are refused
    /// (`UnknownPeer`). False when `id` names no peer (any more).
    pub fn remove_peer(&self, id: PeerId) -> bool {
        let mut keys = self.core.matcher.keys_mut();
        let Some(peer) = self.core.peers.remove(id) else {
            return false;
        };
        keys.remove(&peer.public_key);
        drop(keys);
        // The Tunn and its queue are freed here, outside every lock.
        drop(peer);
        true
    }

    /// The state the workers share.
    pub fn core(&self) -> &Arc<TunnelCore> {
        &self.core
    }

    /// A worker's underlay path. The first worker (`join_group` false)
    /// gets a second handle on the first socket, so no datagram lands on a
    /// socket nobody polls; each further worker binds a new member of the
    /// port's SO_REUSEPORT group (the Tunnels must have been made
    /// `with_reuse_port`).
    pub fn new_io(&self, join_group: bool) -> io::Result<TunnelIo> {
        let socket = if join_group {
            let mut s = UdpSocket::bind_shared(self.local_port()?, true)?;
            s.set_gro(self.io.net.socket.gro);
            s
        } else {
            self.io.net.socket.try_clone()?
        };
        let mut net = Output::new(socket);
        net.batching = self.io.net.batching;
        Ok(TunnelIo::new(net))
    }

    /// Deals peers out over the `workers` sockets of the port's reuseport
    /// group (the first socket and those `new_io(true)` bound, in that
    /// order): peer `id`'s data reaches worker `id mod workers`. See
    /// `steer.rs`; without it the kernel's 4-tuple hash decides.
    pub fn steer_peers(&self, workers: usize) -> io::Result<()> {
        steer::attach(
            self.io.net.socket.fd(),
            self.core.index.base(),
            workers.min(u32::MAX as usize) as u32,
        )
    }

    /// The UDP port actually bound (useful with listen_port 0).
    pub fn local_port(&self) -> io::Result<u16> {
        self.io.net.socket.local_port()
    }

    /// Moves to a new socket on `port` (`wg set listen-port`); the fds
    /// change, so re-register them. Peers learn the new port from our next
    /// authenticated packet.
    pub fn rebind(&mut self, port: u16) -> io::Result<()> {
        let mut socket = UdpSocket::bind(port)?;
        // Whatever is queued leaves by the old socket, then it closes.
        self.io.flush();
        socket.set_gro(self.io.net.batching);
        self.io.net.socket = socket;
        Ok(())
    }

    /// The receive buffer the kernel granted (it reports double the request).
    pub fn socket_rcvbuf(&self) -> io::Result<usize> {
        self.io.net.socket.rcvbuf()
    }

    /// True when one AF_INET6 socket serves both IPv4 and IPv6 peers.
    pub fn dual_stack(&self) -> bool {
        self.io.net.socket.is_dual_stack()
    }

    /// The underlay MTU datagrams are sized for.
    pub fn underlay_mtu(&self) -> usize {
        self.core.underlay_mtu
    }

    /// Inner datagrams in reassembly from `peer`, and the bytes they hold.
    pub fn reassembly_in_progress(&self, peer: PeerId) -> (usize, usize) {
        self.core
            .peer(peer)
            .map_or((0, 0), |p| (p.reasm.in_progress(), p.reasm.held_bytes()))
    }

    pub fn peer_count(&self) -> usize {
        self.core.peers.len()
    }

    /// The id of the peer with this public key, if it is one of ours.
    pub fn peer_id_of(&self, public_key: &[u8; 32]) -> Option<PeerId> {
        self.core.matcher.id_of(public_key)
    }

    /// The ids of the peers, in slot order.
    pub fn peer_ids(&self) -> Vec<PeerId> {
        self.core.peers.ids()
    }

    /// Encapsulates and encrypts one Ethernet frame to the peer into the
    /// send batch; `flush` (or a full batch, or the next `receive`/`tick`)
    /// sends it. With no session yet, boringtun queues it (at most 256 per
    /// peer, oldest kept) and a handshake starts. Socket errors show up in
    /// the counters at flush time, not here. For this one path only:
    /// where other threads send on the same core, `send_frames` (which
    /// keeps the peer's wire order across them) is the call.
    pub fn send_frame(&mut self, peer: PeerId, eth_frame: &[u8]) -> Result<(), TunnelError> {
        self.core
            .send_frame_unflushed(&mut self.io, peer, eth_frame)
    }

    /// `send_frame` for a batch, sent before it returns, in each peer's
    /// wire order across threads (see `TunnelCore::send_frames`); returns
    /// the refusals.
    pub fn send_frames<'f>(&mut self, frames: impl Iterator<Item = (PeerId, &'f [u8])>) -> usize {
        self.core.send_frames(&mut self.io, frames)
    }

    /// Sends everything queued: one sendmmsg, with UDP GSO for runs of
    /// equal-sized datagrams to one endpoint. Call once per event-loop
    /// iteration, after the frames of that iteration were sent.
    pub fn flush(&mut self) {
        self.io.flush();
    }

    /// Datagrams waiting for `flush`.
    pub fn queued(&self) -> usize {
        self.io.queued()
    }

    /// On (the default): batched send and receive, UDP GSO/GRO where the
    /// kernel has them. Off: one system call per datagram each way, no
    /// offloads, every message sent at once (for comparison and debugging).
    pub fn set_batching(&mut self, on: bool) {
        self.io.flush();
        self.io.net.batching = on;
        self.io.net.socket.set_gro(on);
    }

    pub fn batching(&self) -> bool {
        self.io.net.batching
    }

    /// UDP GSO is in use: the kernel has it and has not refused it.
    pub fn gso_active(&self) -> bool {
        self.io.net.batching && self.io.net.socket.gso
    }

    /// UDP GRO is on for the socket.
    pub fn gro_active(&self) -> bool {
        self.io.net.socket.gro
    }

    /// Drains the socket (at most MAX_BATCHES_PER_CALL recvmmsg calls of
    /// RX_BATCH entries, GRO trains split, none after
    /// MAX_DATAGRAMS_PER_CALL datagrams) and calls `deliver(peer, frame)`
    /// for every gretap frame that passed; flushes the send batch before
    /// and after. Returns the datagrams read; if the last recvmmsg came back
    /// full, more may be waiting (matters with edge-triggered epoll;
    /// level-triggered just wakes again).
    pub fn receive(&mut self, deliver: &mut dyn FnMut(PeerId, &[u8])) -> usize {
        self.core.receive_inner(&mut self.io, deliver)
    }

    /// Runs every peer's timers and flushes. Call every 100-250 ms.
    pub fn tick(&mut self) {
        self.core.tick_inner(&mut self.io)
    }

    /// Overrides a peer's endpoint (`wg set peer endpoint`); the workers
    /// may run meanwhile.
    pub fn set_endpoint(&self, peer: PeerId, endpoint: SocketAddr) -> Result<(), TunnelError> {
        self.core.peer(peer)?.endpoint = Some(socket::normalise(endpoint));
        Ok(())
    }

    pub fn endpoint(&self, peer: PeerId) -> Option<SocketAddr> {
        self.core.peer(peer).ok().and_then(|p| p.endpoint)
    }

    pub fn peer_stats(&self) -> Vec<PeerStats> {
        self.core
            .peers
            .ids()
            .into_iter()
            .filter_map(|id| self.core.peers.lock(id).map(|p| p.snapshot(id)))
            .collect()
    }

    /// What the first socket's path counted (workers count on their own
    /// `TunnelIo`; the dataplane adds them up).
    pub fn counters(&self) -> &TunnelCounters {
        &self.io.counters
    }

    /// When the peer last authenticated a packet (any kind).
    pub fn last_rx(&self, peer: PeerId) -> Option<Instant> {
        self.core.peer(peer).ok().and_then(|p| p.stats.last_rx)
    }

    /// Handshake initiations sent since the peer was last heard from.
    pub fn handshake_attempts(&self, peer: PeerId) -> u32 {
        self.core
            .peer(peer)
            .map_or(0, |p| p.stats.handshake_attempts)
    }

    /// Heard from within `window` (e.g. a few keepalive intervals).
    pub fn peer_alive(&self, peer: PeerId, window: Duration) -> bool {
        self.core.peer(peer).is_ok_and(|p| p.alive_within(window))
    }

    pub fn session_up(&self, peer: PeerId) -> bool {
        self.core.peer(peer).is_ok_and(|p| p.session_up())
    }
}
