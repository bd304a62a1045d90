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

/// Peers whose locks one `send_frames` call holds at once.
const MAX_HELD: usize = 8;

/// Sends what `io` queued, then lets go of the held peers (in that order:
/// see `TunnelCore::send_frames`).
fn release(io: &mut TunnelIo, held: &mut [Option<(PeerId, PeerGuard<'_>)>], n: &mut usize) {
    io.flush();
    held.iter_mut().for_each(|h| *h = None);
    *n = 0;
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

    /// `send_frame` on a worker's path (see [`Tunnels::send_frame`]),
    /// sent at once, in the peer's wire order (`send_frames`).
    pub fn send_frame(
        &self,
        io: &mut TunnelIo,
        peer: PeerId,
        frame: &[u8],
    ) -> Result<(), TunnelError> {
        let mut p = self.peer(peer)?;
        let r = self.send_frame_inner(io, &mut p, peer, frame);
        io.flush();
        r
    }

    /// The single-path `Tunnels::send_frame`: sealed into the batch, sent
    /// at the next flush. Not for a core other paths send on at the same
    /// time (the lock is gone before the flush).
    pub(super) fn send_frame_unflushed(
        &self,
        io: &mut TunnelIo,
        peer: PeerId,
        frame: &[u8],
    ) -> Result<(), TunnelError> {
        let mut p = self.peer(peer)?;
        self.send_frame_inner(io, &mut p, peer, frame)
    }

    /// Sends the frames a worker collected and returns the refusals.
    ///
    /// Per-peer wire order (see `output.rs`): the lock of every peer
    /// sealed for is held until the batch is sent, so no other worker
    /// sends past messages of ours that wait in it. A call therefore ends
    /// with a flush (one sendmmsg per call, not per frame: the workers
    /// call this once per round of pending frames). Locks are held for
    /// up to MAX_HELD peers at once and only ever taken without waiting
    /// while others are held: a busy peer (another worker sealing or
    /// sending for it) makes us send and release what we hold first and
    /// then wait for it alone, so two workers never wait for each other.
    pub fn send_frames<'f>(
        &self,
        io: &mut TunnelIo,
        frames: impl Iterator<Item = (PeerId, &'f [u8])>,
    ) -> usize {
        let mut held: [Option<(PeerId, PeerGuard<'_>)>; MAX_HELD] = Default::default();
        let mut n = 0;
        let mut cur = 0;
        let mut refused = 0;
        for (id, frame) in frames {
            let is = |h: &Option<(PeerId, PeerGuard<'_>)>| h.as_ref().is_some_and(|h| h.0 == id);
            if !is(&held[cur]) {
                match held[..n].iter().position(is) {
                    Some(i) => cur = i,
                    None => {
                        if n == MAX_HELD {
                            release(io, &mut held, &mut n);
                        }
                        let guard = match self.peers.try_lock(id) {
                            Ok(g) => g,
                            Err(()) => {
                                super::test_hook::at(super::test_hook::Point::PeerBusy);
                                release(io, &mut held, &mut n);
                                self.peers.lock(id)
                            }
                        };
                        let Some(g) = guard else {
                            refused += 1;
                            continue;
                        };
                        held[n] = Some((id, g));
                        cur = n;
                        n += 1;
                    }
                }
            }
            if let Some((_, p)) = held[cur].as_mut() {
                if self.send_frame_inner(io, p, id, frame).is_err() {
                    refused += 1;
                }
            }
        }
        release(io, &mut held, &mut n);
        refused
    }

    /// Decrypts what the worker's `TunnelIo::recv` read (see
    /// [`Tunnels::receive`] for `deliver`). Replies and released frames
    /// join the worker's send batch, which is sent before the lock of the
    /// peer they were sealed for is let go (wire order, see `output.rs`);
    /// cookie replies (no peer) wait for the worker's next flush.
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
