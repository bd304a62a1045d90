//! Our own batman ICMP probes, for `meshwire ctl ping` and `traceroute`
//! (batctl ping / batctl tr): an echo request to an originator with a
//! chosen TTL; the echo reply, or the TTL-exceeded answer of the node
//! where the TTL ran out, comes back addressed to us and is kept (a few,
//! the newest) until the control client asks for it. Kernel nodes answer
//! these, and so does meshwire (`routing.rs`).
//!
//! The packet is `batadv_icmp_packet`: type, version, TTL, message type,
//! destination, origin, uid, reserved, sequence number (20 bytes).

use std::collections::VecDeque;
use std::time::Instant;

use super::{Mesh, MeshOutput};
use crate::wire::batman::{packet_type, IcmpPacket, COMPAT_VERSION};
use crate::wire::MacAddr;

/// `enum batadv_icmp_packettype` values we send and act on.
pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_TTL_EXCEEDED: u8 = 11;

/// Probes and answers kept at once: a client polls within a second.
const MAX_KEPT: usize = 64;

/// An answer to one of our probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct IcmpAnswer {
    pub msg_type: u8,
    /// Who answered: the destination, or the node where the TTL ran out.
    pub from: MacAddr,
    pub rtt_us: u64,
}

#[derive(Debug, Default)]
pub(super) struct Probes {
    /// (uid, seqno, when sent, the answer once it came).
    sent: VecDeque<(u8, u16, Instant, Option<IcmpAnswer>)>,
}

impl Mesh {
    /// Sends an echo request to originator `dest` with `ttl`; false when
    /// there is no route to it.
    pub fn icmp_probe(
        &mut self,
        now: Instant,
        dest: MacAddr,
        ttl: u8,
        uid: u8,
        seqno: u16,
        out: &mut Vec<MeshOutput>,
    ) -> bool {
        let Some((next_hop, hardif)) = self.origs.route(&dest) else {
            return false;
        };
        let mut p = [0u8; IcmpPacket::<&[u8]>::HEADER_LEN];
        p[0] = packet_type::ICMP;
        p[1] = COMPAT_VERSION;
        p[2] = ttl;
        p[3] = ICMP_ECHO_REQUEST;
        p[4..10].copy_from_slice(&dest.0);
        p[10..16].copy_from_slice(&self.cfg.originator.0);
        p[16] = uid;
        p[18..20].copy_from_slice(&seqno.to_be_bytes());
        let probes = &mut self.probes.sent;
        if probes.len() >= MAX_KEPT {
            probes.pop_front();
        }
        probes.retain(|e| (e.0, e.1) != (uid, seqno));
        probes.push_back((uid, seqno, now, None));
        out.push(MeshOutput::Transmit {
            hardif,
            dst: next_hop,
            packet: p.to_vec(),
        });
        self.counters.icmp_probes_sent += 1;
        true
    }

    /// The answer to probe (uid, seqno), once it came (taken: asked once).
    pub fn icmp_answer(&mut self, uid: u8, seqno: u16) -> Option<IcmpAnswer> {
        let i =
            (self.probes.sent.iter()).position(|e| (e.0, e.1) == (uid, seqno) && e.3.is_some())?;
        self.probes.sent.remove(i).and_then(|e| e.3)
    }

    /// An echo reply, TTL exceeded or unreachable addressed to us: the
    /// answer to a probe of ours, or nothing (counted, dropped).
    pub(super) fn icmp_answered(&mut self, p: &IcmpPacket<&[u8]>) {
        let now = self.now.unwrap_or_else(Instant::now);
        let (uid, seqno) = (p.uid(), p.seqno());
        let waiting =
            (self.probes.sent.iter_mut()).find(|e| (e.0, e.1) == (uid, seqno) && e.3.is_none());
        match waiting {
            Some(e) => {
                let rtt = now.saturating_duration_since(e.2);
                e.3 = Some(IcmpAnswer {
                    msg_type: p.msg_type(),
                    from: p.orig(),
                    rtt_us: u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX),
                });
                self.counters.icmp_answers_received += 1;
            }
            None => self.counters.icmp_dropped += 1,
        }
    }
}
