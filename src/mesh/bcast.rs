//! Broadcasts (`routing.c: batadv_recv_bcast_packet`, `send.c`): our own
//! bcast seqno, the per-originator 64-entry seqno window that drops
//! duplicates, and the rebroadcast rule of `batadv_send_no_broadcast`.

use std::time::Instant;

use super::bitarray::{bit_get_packet, test_bit, window_protected, WINDOW_SIZE};
use super::{HardifId, Mesh, MeshOutput, TTL};
use crate::wire::batman::bcast::{self, BcastPacket};
use crate::wire::MacAddr;

/// Minimum client frame: an Ethernet header.
pub(crate) const ETH_HLEN: usize = 14;

impl Mesh {
    /// `batadv_send_no_broadcast`, inverted: send on `hardif` unless it has
    /// no neighbour, or its only neighbour is where the packet came from or
    /// the originator itself.
    fn bcast_should_send(&self, hardif: HardifId, src: MacAddr, orig: MacAddr) -> bool {
        let Some(h) = self.hardifs.get(&hardif) else {
            return false;
        };
        match h.neighs.as_slice() {
            [] => false,
            [(only, _)] => *only != src && *only != orig,
            _ => true,
        }
    }

    pub(crate) fn bcast_send(&mut self, frame: &[u8], out: &mut Vec<MeshOutput>) {
        if frame.len() < ETH_HLEN {
            self.counters.malformed += 1;
            return;
        }
        self.bcast_seqno = self.bcast_seqno.wrapping_add(1);
        let mut packet = vec![0u8; bcast::HEADER_LEN + frame.len()];
        {
            let mut p = BcastPacket::new_unchecked(&mut packet[..]);
            p.init_header();
            p.set_ttl(TTL);
            p.set_seqno(self.bcast_seqno);
            p.set_orig(self.cfg.originator);
        }
        packet[bcast::HEADER_LEN..].copy_from_slice(frame);
        self.bcast_out(&packet, MacAddr::ZERO, self.cfg.originator, None, out);
        self.counters.tx_bcast += 1;
    }

    /// Sends on every hardif that should get it; `if_in` is where a
    /// rebroadcast came from (None: our own broadcast, which goes to all).
    fn bcast_out(
        &mut self,
        packet: &[u8],
        src: MacAddr,
        orig: MacAddr,
        if_in: Option<HardifId>,
        out: &mut Vec<MeshOutput>,
    ) {
        let ids: Vec<HardifId> = self.hardifs.keys().copied().collect();
        for id in ids {
            if !self.bcast_should_send(id, src, orig) {
                continue;
            }
            // meshwire neighbours that have it anyway are skipped (scope.rs)
            let scoped = if_in.is_some_and(|i| {
                (i == id && self.scope_peer(id)) || (i != id && !self.scope_relay(id, i, orig))
            });
            if scoped {
                self.counters.bcast_relay_scoped += 1;
                continue;
            }
            self.counters.tx_bcast_packets += 1;
            out.push(MeshOutput::Transmit {
                hardif: id,
                dst: MacAddr::BROADCAST,
                packet: packet.to_vec(),
            });
        }
    }

    pub(crate) fn recv_bcast(
        &mut self,
        now: Instant,
        hardif: HardifId,
        eth_src: MacAddr,
        eth_dst: MacAddr,
        packet: &[u8],
        out: &mut Vec<MeshOutput>,
    ) {
        let Ok(p) = BcastPacket::new_checked(packet) else {
            self.counters.malformed += 1;
            return;
        };
        self.counters.rx_bcast += 1;
        if !eth_dst.is_broadcast() || eth_src.is_multicast() || p.payload().len() < ETH_HLEN {
            self.counters.malformed += 1;
            return;
        }
        let orig = p.orig();
        if self.is_own_address(eth_src) || self.is_own_address(orig) {
            self.counters.dup_bcast += 1; // our own broadcast coming back
            return;
        }
        if p.ttl() < 2 {
            self.counters.ttl_exceeded += 1;
            return;
        }
        // A peer sends its broadcasts on every link, so while its own link
        // is alive a copy "from" it over another link is a relay we do not
        // need or a forgery (the FDB learns the frame's source at `orig`).
        if let Some(&own) = self.owners.get(&orig) {
            if own != hardif && self.direct_alive(own, now) {
                self.counters.bcast_kept_direct += 1;
                return;
            }
        }
        let Some(o) = self.origs.get_mut(&orig) else {
            self.counters.bcast_unknown_orig += 1;
            return;
        };
        let seqno = p.seqno();
        let diff = seqno.wrapping_sub(o.last_bcast_seqno) as i32;
        if window_protected(diff, WINDOW_SIZE, &mut o.bcast_seqno_reset, now)
            || test_bit(o.bcast_bits, o.last_bcast_seqno, seqno)
        {
            self.counters.dup_bcast += 1;
            return;
        }
        if bit_get_packet(&mut o.bcast_bits, diff, true) {
            o.last_bcast_seqno = seqno;
        }
        let mut fwd = packet.to_vec();
        BcastPacket::new_unchecked(&mut fwd[..]).set_ttl(p.ttl() - 1);
        self.bcast_out(&fwd, eth_src, orig, Some(hardif), out);
        self.counters.bcast_forwarded += 1;
        out.push(MeshOutput::Deliver {
            frame: p.payload().to_vec(),
            source_orig: Some(orig),
            broadcast: true,
            ttl: p.ttl(),
        });
    }
}
