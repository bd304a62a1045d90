//! One WireGuard peer: its noise state machine (boringtun `Tunn`), where it
//! is (endpoint), which inner address it may source (its gretap remote), and
//! what we know about its liveness.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::Tunn;
use boringtun::x25519::{PublicKey, StaticSecret};
use serde::Serialize;

use super::gretap::Link;
use super::reassembly::Reassembly;
use super::PeerId;

/// One reading of both clocks, shared by a batch of packets: two vDSO
/// calls per packet were 2% of the receive path.
#[derive(Debug, Clone, Copy)]
pub(super) struct Now {
    pub(super) mono: Instant,
    pub(super) wall: SystemTime,
}

impl Now {
    pub(super) fn read() -> Now {
        Now {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

pub(super) struct Peer {
    pub(super) tunn: Tunn,
    pub(super) public_key: [u8; 32],
    /// Where datagrams go; the source of the last authenticated packet wins.
    pub(super) endpoint: Option<SocketAddr>,
    pub(super) link: Link,
    pub(super) persistent_keepalive: Option<u16>,
    /// IPv4 identification of the next inner header (the kernel counts up
    /// per destination even with DF set; we do the same from a random start).
    pub(super) ip_ident: u16,
    /// IPv6 fragment identification of the next fragmented frame.
    pub(super) frag_ident: u32,
    /// Inner IP fragments from this peer being put back together.
    pub(super) reasm: Reassembly,
    pub(super) stats: PeerCounters,
}

/// Byte counts are whole WireGuard messages (UDP payload) of every kind,
/// handshakes and keepalives included, as `wg show ... transfer` counts them.
#[derive(Debug, Default, Clone)]
pub(super) struct PeerCounters {
    pub(super) rx_bytes: u64,
    pub(super) tx_bytes: u64,
    pub(super) rx_frames: u64,
    pub(super) tx_frames: u64,
    pub(super) handshakes: u64,
    /// Initiations sent since the last authenticated packet from the peer.
    pub(super) handshake_attempts: u32,
    pub(super) last_handshake: Option<SystemTime>,
    pub(super) last_rx: Option<Instant>,
    pub(super) last_rx_wall: Option<SystemTime>,
}

impl Peer {
    pub(super) fn new(
        secret: &StaticSecret,
        spec: &super::PeerSpec,
        local_inner: IpAddr,
        index: u32,
        rate_limiter: &Arc<RateLimiter>,
        ip_ident: u16,
    ) -> Peer {
        let tunn = Tunn::new(
            secret.clone(),
            PublicKey::from(spec.public_key),
            None,
            spec.persistent_keepalive.filter(|&k| k > 0),
            index,
            Some(Arc::clone(rate_limiter)),
        );
        Peer {
            tunn,
            public_key: spec.public_key,
            endpoint: spec.endpoint.map(super::socket::normalise),
            link: Link {
                local: local_inner,
                remote: spec.inner,
            },
            persistent_keepalive: spec.persistent_keepalive.filter(|&k| k > 0),
            ip_ident,
            frag_ident: u32::from(ip_ident) << 16 | u32::from(ip_ident),
            reasm: Reassembly::default(),
            stats: PeerCounters::default(),
        }
    }

    /// A packet from `from` passed authentication: WireGuard's roaming rule
    /// makes its source our endpoint. Returns true if the endpoint changed.
    /// `now` is the time of the receive batch the packet came in.
    pub(super) fn authenticated(&mut self, from: SocketAddr, bytes: usize, now: Now) -> bool {
        self.stats.rx_bytes += bytes as u64;
        self.stats.last_rx = Some(now.mono);
        self.stats.last_rx_wall = Some(now.wall);
        self.stats.handshake_attempts = 0;
        let changed = self.endpoint != Some(from);
        self.endpoint = Some(from);
        changed
    }

    pub(super) fn handshake_completed(&mut self) {
        self.stats.handshakes += 1;
        self.stats.last_handshake = Some(SystemTime::now());
    }

    pub(super) fn next_ident(&mut self) -> u16 {
        let id = self.ip_ident;
        self.ip_ident = id.wrapping_add(1);
        id
    }

    pub(super) fn next_frag_ident(&mut self) -> u32 {
        let id = self.frag_ident;
        self.frag_ident = id.wrapping_add(1);
        id
    }

    pub(super) fn session_up(&self) -> bool {
        self.tunn.time_since_last_handshake().is_some()
    }

    pub(super) fn snapshot(&self, id: PeerId) -> PeerStats {
        PeerStats {
            peer: id,
            public_key: crate::keys::encode_key(&self.public_key),
            endpoint: self.endpoint,
            inner: self.link.remote,
            last_handshake: self.stats.last_handshake.and_then(unix_secs),
            last_rx: self.stats.last_rx_wall.and_then(unix_secs),
            rx_bytes: self.stats.rx_bytes,
            tx_bytes: self.stats.tx_bytes,
            rx_frames: self.stats.rx_frames,
            tx_frames: self.stats.tx_frames,
            handshakes: self.stats.handshakes,
            handshake_attempts: self.stats.handshake_attempts,
            session_up: self.session_up(),
            persistent_keepalive: self.persistent_keepalive,
        }
    }

    pub(super) fn alive_within(&self, window: Duration) -> bool {
        self.stats.last_rx.is_some_and(|t| t.elapsed() <= window)
    }
}

fn unix_secs(t: SystemTime) -> Option<u64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// One peer as `meshwire ctl` shows it (cf. `wg show`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PeerStats {
    pub peer: PeerId,
    /// Standard base64, as `wg` prints it.
    pub public_key: String,
    pub endpoint: Option<SocketAddr>,
    /// The peer's inner (gretap remote) address.
    pub inner: IpAddr,
    /// Unix seconds of the last completed handshake, null if none.
    pub last_handshake: Option<u64>,
    /// Unix seconds of the last authenticated packet, null if none.
    pub last_rx: Option<u64>,
    /// WireGuard message bytes (UDP payload, handshakes and keepalives
    /// included) received authenticated / sent: `wg show` "transfer".
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Ethernet frames delivered / encrypted and sent.
    pub rx_frames: u64,
    pub tx_frames: u64,
    /// Handshakes completed since start (as initiator or responder).
    pub handshakes: u64,
    /// Initiations sent since the peer last authenticated a packet: grows
    /// while the peer is unreachable.
    pub handshake_attempts: u32,
    /// A current session exists (less than 180 s old).
    pub session_up: bool,
    pub persistent_keepalive: Option<u16>,
}
