//! A hostile but authenticated peer: a real WireGuard endpoint (boringtun's
//! `Tunn` over a UDP socket inside its own hypervisor namespace) that the
//! honest nodes list as a `[[peer]]`, so everything it sends decrypts and
//! reaches their batman layer. It behaves like a plain batman neighbour on
//! its own (its OGMs, echoes of theirs, so they route to it) and sends
//! whatever crafted batman packet the test builds on top.
//!
//! It is a hypervisor of the topology that runs no daemon: its namespace,
//! underlay address, inner address and key come from `Topology`.

use std::fs::File;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use meshwire::keys;
use meshwire::tunnel::gretap;
use meshwire::wire::batman::ogm::{self, flags, OgmIter};
use meshwire::wire::batman::tvlv::{tt_flags, tvlv_type, TvlvIter};
use meshwire::wire::batman::unicast::UnicastTvlvPacket;
use meshwire::wire::batman::{packet_type, ETHERTYPE_BATADV};
use meshwire::wire::MacAddr;

use super::Topology;

/// One honest node the liar holds a WireGuard session with.
struct Link {
    hv: usize,
    tunn: Tunn,
    endpoint: SocketAddr,
    gre: gretap::Link,
    /// Our hard interface MAC on this link (what the node pins).
    mac: MacAddr,
    /// The node's hard interface MAC on this link.
    peer_mac: MacAddr,
    ident: u16,
    sec_seqno: u32,
}

struct State {
    sock: UdpSocket,
    links: Vec<Link>,
    originator: MacAddr,
    ogm_seqno: u32,
    /// Whether it still speaks batman honestly in the background.
    honest_ogms: bool,
    /// TT responses (unicast TVLV, RESPONSE flag) each node sent us.
    tt_responses: Vec<(usize, u64)>,
}

pub struct Liar {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub originator: MacAddr,
}

const BUF: usize = 65_600;

impl Liar {
    /// Hypervisor `me` of `t` (planned, never started) becomes a WireGuard
    /// peer of `peers` (whose configs list it: `Opts::links`).
    pub fn start(t: &Topology, me: usize, peers: &[usize], ogm_every: Duration) -> Liar {
        let key = |hv: usize| keys::decode_key(&t.hvs[hv - 1].public_key).unwrap();
        let private = keys::decode_key(&t.hvs[me - 1].private_key).unwrap();
        let own = key(me);
        let links = peers
            .iter()
            .enumerate()
            .map(|(i, &hv)| Link {
                hv,
                tunn: Tunn::new(
                    StaticSecret::from(private),
                    PublicKey::from(key(hv)),
                    None,
                    Some(25),
                    0x4000 + i as u32,
                    None,
                ),
                endpoint: t.endpoint(hv).parse().unwrap(),
                gre: gretap::Link {
                    local: t.inner(me).parse().unwrap(),
                    remote: t.inner(hv).parse().unwrap(),
                },
                mac: keys::hardif_mac(&own, &key(hv)),
                peer_mac: keys::hardif_mac(&key(hv), &own),
                ident: 0,
                sec_seqno: 1,
            })
            .collect();
        let ns = t.hvs[me - 1].ns.clone();
        let bind: SocketAddr = t.endpoint(me).parse().unwrap();
        let sock = std::thread::spawn(move || {
            let f = File::open(format!("/var/run/netns/{ns}")).expect("open netns");
            meshwire::sys::ns::setns_net(&f).unwrap_or_else(|e| panic!("setns {ns}: {e}"));
            UdpSocket::bind(bind).unwrap_or_else(|e| panic!("bind {bind} in {ns}: {e}"))
        })
        .join()
        .expect("liar socket thread");
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let originator = keys::originator_mac(&own);
        let state = Arc::new(Mutex::new(State {
            sock,
            links,
            originator,
            ogm_seqno: 1,
            honest_ogms: true,
            tt_responses: peers.iter().map(|&hv| (hv, 0)).collect(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&state), Arc::clone(&stop));
        let thread = std::thread::spawn(move || run(&s, &st, ogm_every));
        Liar {
            state,
            stop,
            thread: Some(thread),
            originator,
        }
    }

    /// Whether every link has a WireGuard session (a handshake completed).
    pub fn established(&self) -> bool {
        let s = self.state.lock().unwrap();
        s.links.iter().all(|l| l.tunn.stats().0.is_some())
    }

    /// Our hard interface MAC towards `hv`.
    pub fn mac_towards(&self, hv: usize) -> MacAddr {
        self.with_link(hv, |_, l| l.mac)
    }

    /// The node's hard interface MAC on its link with us.
    pub fn peer_mac(&self, hv: usize) -> MacAddr {
        self.with_link(hv, |_, l| l.peer_mac)
    }

    pub fn tt_responses_from(&self, hv: usize) -> u64 {
        let s = self.state.lock().unwrap();
        s.tt_responses
            .iter()
            .find(|(h, _)| *h == hv)
            .map_or(0, |x| x.1)
    }

    /// Sends a batman packet to `hv`, Ethernet source `src` (None: our own
    /// hard interface MAC on that link), destination `dst`.
    pub fn send(&self, hv: usize, src: Option<MacAddr>, dst: MacAddr, batman: &[u8]) {
        let mut s = self.state.lock().unwrap();
        let State { sock, links, .. } = &mut *s;
        let l = links.iter_mut().find(|l| l.hv == hv).expect("no such link");
        let src = src.unwrap_or(l.mac);
        send_frame(sock, l, src, dst, batman);
    }

    fn with_link<R>(&self, hv: usize, f: impl FnOnce(&State, &Link) -> R) -> R {
        let s = self.state.lock().unwrap();
        let l = s.links.iter().find(|l| l.hv == hv).expect("no such link");
        f(&s, l)
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Ethernet + batman, inner IPv4 + GRE/TEB, then WireGuard to the node.
fn send_frame(sock: &UdpSocket, l: &mut Link, src: MacAddr, dst: MacAddr, batman: &[u8]) {
    let hl = gretap::header_len(false);
    let mut inner = vec![0u8; hl];
    inner.extend_from_slice(dst.as_bytes());
    inner.extend_from_slice(src.as_bytes());
    inner.extend_from_slice(&ETHERTYPE_BATADV.to_be_bytes());
    inner.extend_from_slice(batman);
    l.ident = l.ident.wrapping_add(1);
    let frame_len = inner.len() - hl;
    gretap::encap_headers(&mut inner, l.gre, frame_len, l.ident).expect("encap");
    let mut out = vec![0u8; inner.len() + 200];
    if let TunnResult::WriteToNetwork(p) = l.tunn.encapsulate(&inner, &mut out) {
        let _ = sock.send_to(p, l.endpoint);
    }
}

fn run(state: &Mutex<State>, stop: &AtomicBool, ogm_every: Duration) {
    let mut buf = vec![0u8; BUF];
    let mut out = vec![0u8; BUF];
    let mut next_ogm = Instant::now();
    // A handshake at once, so the test need not wait for a data packet.
    {
        let mut s = state.lock().unwrap();
        let State { sock, links, .. } = &mut *s;
        for l in links.iter_mut() {
            if let TunnResult::WriteToNetwork(p) =
                l.tunn.format_handshake_initiation(&mut out, false)
            {
                let _ = sock.send_to(p, l.endpoint);
            }
        }
    }
    // The socket has a read timeout: a clone reads without the lock, so
    // the test's sends are not held up by a blocked read.
    let rx = state.lock().unwrap().sock.try_clone().unwrap();
    while !stop.load(Ordering::Relaxed) {
        if let Ok((n, from)) = rx.recv_from(&mut buf) {
            let mut s = state.lock().unwrap();
            receive(&mut s, from, &buf[..n], &mut out);
        }
        let mut s = state.lock().unwrap();
        let State { sock, links, .. } = &mut *s;
        for l in links.iter_mut() {
            if let TunnResult::WriteToNetwork(p) = l.tunn.update_timers(&mut out) {
                let _ = sock.send_to(p, l.endpoint);
            }
        }
        if Instant::now() >= next_ogm && s.honest_ogms {
            next_ogm = Instant::now() + ogm_every;
            send_own_ogms(&mut s);
        }
    }
}

/// Our primary OGM (TTL 50) and, aggregated, the link's secondary one
/// (TTL 2), as meshwire and the kernel send them.
fn send_own_ogms(s: &mut State) {
    let State {
        sock,
        links,
        originator,
        ogm_seqno,
        ..
    } = s;
    for l in links.iter_mut() {
        let mut p = Vec::new();
        ogm::emit(
            &mut p,
            50,
            0,
            *ogm_seqno,
            *originator,
            *originator,
            255,
            &[],
        );
        ogm::emit(&mut p, 2, 0, l.sec_seqno, l.mac, l.mac, 255, &[]);
        l.sec_seqno = l.sec_seqno.wrapping_add(1);
        let mac = l.mac;
        send_frame(sock, l, mac, MacAddr::BROADCAST, &p);
    }
    *ogm_seqno = ogm_seqno.wrapping_add(1);
}

fn receive(s: &mut State, from: SocketAddr, datagram: &[u8], out: &mut [u8]) {
    let Some(i) = s.links.iter().position(|l| l.endpoint == from) else {
        return;
    };
    let ip: IpAddr = from.ip();
    let mut inner = None;
    match s.links[i].tunn.decapsulate(Some(ip), datagram, out) {
        TunnResult::WriteToNetwork(p) => {
            let _ = s.sock.send_to(p, from);
            // Queued packets after a handshake: drain them.
            let mut more = vec![0u8; BUF];
            while let TunnResult::WriteToNetwork(p) =
                s.links[i].tunn.decapsulate(None, &[], &mut more)
            {
                let _ = s.sock.send_to(p, from);
            }
        }
        TunnResult::WriteToTunnelV4(p, _) => inner = Some(p.to_vec()),
        _ => {}
    }
    let Some(inner) = inner else { return };
    let State {
        sock,
        links,
        tt_responses,
        ..
    } = s;
    let l = &mut links[i];
    let Ok(frame) = gretap::decap(&inner, l.gre) else {
        return;
    };
    if frame.len() < 15 || frame[12..14] != ETHERTYPE_BATADV.to_be_bytes() {
        return;
    }
    let batman = &frame[14..];
    match batman[0] {
        packet_type::IV_OGM => {
            // Echo the node's secondary OGM back (DIRECTLINK): its link
            // quality towards us, so it routes to our originator.
            let echoes: Vec<Vec<u8>> = OgmIter::new(batman)
                .flatten()
                .filter(|o| o.orig() == l.peer_mac && o.ttl() > 1)
                .map(|o| {
                    let mut p = Vec::new();
                    let (seq, orig, tq) = (o.seqno(), o.orig(), o.tq());
                    ogm::emit(
                        &mut p,
                        o.ttl() - 1,
                        flags::DIRECTLINK,
                        seq,
                        orig,
                        orig,
                        tq,
                        &[],
                    );
                    p
                })
                .collect();
            let mac = l.mac;
            for e in echoes {
                send_frame(sock, l, mac, MacAddr::BROADCAST, &e);
            }
        }
        packet_type::UNICAST_TVLV => {
            let p = UnicastTvlvPacket::new_unchecked(batman);
            if p.check_len().is_err() {
                return;
            }
            let response = TvlvIter::new(p.tvlv()).flatten().any(|t| {
                t.tvlv_type == tvlv_type::TT
                    && t.value.first().is_some_and(|f| f & tt_flags::RESPONSE != 0)
            });
            if response {
                if let Some(c) = tt_responses.iter_mut().find(|(h, _)| *h == l.hv) {
                    c.1 += 1;
                }
            }
        }
        _ => {}
    }
}
