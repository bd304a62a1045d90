//! The two halves the dataplane workers use: [`TunnelCore`], the peers
//! every worker shares (each behind its own lock), and [`TunnelIo`], one
//! worker's own socket, batches, scratch buffers and counters.

use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;

use super::counters::TunnelCounters;
use super::noise::{IndexMap, Matcher};
use super::output::Output;
use super::peer_table::{PeerGuard, PeerTable};
use super::rx_batch::{RxBatch, RX_BATCH};
use super::{codec, PeerId, TunnelError};

/// One dataplane worker's own path to the underlay: its socket (a member
/// of the port's SO_REUSEPORT group, or a dup of the first socket), its send
/// and receive batches, its scratch buffers and its counters. Everything a
/// worker does with the tunnels, receive, decrypt, encrypt, send, runs on
/// its `TunnelIo` and the shared [`TunnelCore`], under the lock of one peer
/// at a time and no other.
pub struct TunnelIo {
    pub(super) net: Output,
    pub(super) rx: RxBatch,
    /// Reusable plaintext (inner headers + frame + padding) and ciphertext
    /// buffers: the per-packet path allocates nothing.
    pub(super) plain: Box<[u8]>,
    pub(super) out: Box<[u8]>,
    /// Scratch for one inner fragment at a time.
    pub(super) frag: Box<[u8]>,
    pub(super) counters: TunnelCounters,
}

impl TunnelIo {
    pub(super) fn new(net: Output) -> TunnelIo {
        TunnelIo {
            net,
            rx: RxBatch::new(),
            plain: vec![0u8; codec::PLAIN_BUF].into_boxed_slice(),
            out: vec![0u8; codec::OUT_BUF].into_boxed_slice(),
            frag: vec![0u8; codec::PLAIN_BUF].into_boxed_slice(),
            counters: TunnelCounters::default(),
        }
    }

    pub fn fd(&self) -> RawFd {
        self.net.socket.raw_fd()
    }

    /// One recvmmsg (RX_BATCH entries, GRO trains) into the receive batch,
    /// replacing what it held. Ok(0): nothing was waiting.
    pub fn recv(&mut self) -> io::Result<usize> {
        let r = self.net.socket.recv_batch(&mut self.rx, RX_BATCH);
        if r.as_ref()
            .is_err_and(|e| e.kind() != io::ErrorKind::Interrupted)
        {
            self.counters.rx_socket_errors += 1;
        }
        r
    }

    /// Hands the send batch to the kernel (one sendmmsg, GSO runs).
    pub fn flush(&mut self) {
        self.net.flush(&mut self.counters);
    }

    /// Datagrams waiting for `flush`.
    pub fn queued(&self) -> usize {
        self.net.queued()
    }

    /// What this path counted.
    pub fn counters(&self) -> &TunnelCounters {
        &self.counters
    }
}

/// What every worker shares: the peers, each behind its own lock (its
/// boringtun `Tunn` takes `&mut self` for every message), and what never
/// changes after start (indices, the handshake matcher, the MTU).
pub struct TunnelCore {
    pub(super) peers: PeerTable,
    /// Our inner (gretap local) address, for peers added at runtime.
    pub(super) local_inner: IpAddr,
    pub(super) index: IndexMap,
    pub(super) matcher: Matcher,
    pub(super) underlay_mtu: usize,
}

impl TunnelCore {
    /// A peer's WireGuard state, with the receiver index its id gives.
    pub(super) fn new_peer(&self, spec: &super::PeerSpec, id: PeerId) -> super::peer::Peer {
        super::peer::Peer::new(
            self.matcher.secret(),
            spec,
            self.local_inner,
            self.index.index_of(id),
            &self.matcher.rate_limiter,
            super::random_u32() as u16,
        )
    }

    pub(super) fn peer(&self, id: PeerId) -> Result<PeerGuard<'_>, TunnelError> {
        self.peers.lock(id).ok_or(TunnelError::UnknownPeer(id))
    }

    /// `send_frame` on a worker's path (see [`Tunnels::send_frame`]).
    pub fn send_frame(
        &self,
        io: &mut TunnelIo,
        peer: PeerId,
        frame: &[u8],
    ) -> Result<(), TunnelError> {
        let mut p = self.peer(peer)?;
        self.send_frame_inner(io, &mut p, peer, frame)
    }

    /// Sends the frames a worker collected, holding each peer's lock for a
    /// run of frames to it rather than per frame. Returns the refusals.
    pub fn send_frames<'f>(
        &self,
        io: &mut TunnelIo,
        frames: impl Iterator<Item = (PeerId, &'f [u8])>,
    ) -> usize {
        let mut held: Option<(PeerId, PeerGuard<'_>)> = None;
        let mut refused = 0;
        for (id, frame) in frames {
            if held.as_ref().map(|h| h.0) != Some(id) {
                held = None;
                match self.peer(id) {
                    Ok(g) => held = Some((id, g)),
                    Err(_) => {
                        refused += 1;
                        continue;
                    }
                }
            }
            if let Some((_, p)) = held.as_mut() {
                if self.send_frame_inner(io, p, id, frame).is_err() {
                    refused += 1;
                }
            }
        }
        refused
    }

    /// Decrypts what the worker's `TunnelIo::recv` read (see
    /// [`Tunnels::receive`] for `deliver`). Replies and released frames
    /// join the worker's send batch; nothing is flushed.
    pub fn process_received(
        &self,
        io: &mut TunnelIo,
        deliver: &mut dyn FnMut(PeerId, &[u8]),
    ) -> usize {
        self.process_received_inner(io, deliver)
    }

    /// Runs every peer's timers into `io`'s send batch and flushes it.
    pub fn tick(&self, io: &mut TunnelIo) {
        self.tick_inner(io)
    }
}
