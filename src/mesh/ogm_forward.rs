//! OGM rebroadcast (`batadv_iv_ogm_forward`): which links a received OGM
//! goes out on again (the kernel's rules, or scoped relaying between
//! meshwire nodes, `scope.rs`), and the per-link aggregation of what is
//! forwarded.

use std::time::Duration;

use super::bat_iv::{hop_penalty, MAX_AGGREGATION_BYTES};
use super::{HardifId, Mesh, MeshOutput};
use crate::wire::batman::ogm::{flags, OgmPacket};
use crate::wire::MacAddr;

/// How long a rebroadcast OGM may wait for others to share its packet
/// (the kernel delays forwards by 0..`BATADV_JITTER`/2 ms and aggregates).
/// In a full mesh of N peers this cuts OGM packets per interval from about
/// N*N towards N.
pub(crate) const FWD_AGGREGATION_DELAY: Duration = Duration::from_millis(10);

/// OGMs to rebroadcast, aggregated per outgoing hardif. Bounded: a buffer
/// leaves as soon as the next OGM would take it past 512 bytes.
#[derive(Default)]
pub(crate) struct FwdQueue {
    bufs: Vec<(HardifId, Vec<u8>)>,
}

impl FwdQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// Takes the queued OGMs for `hardif`, if any.
    pub(crate) fn take(&mut self, hardif: HardifId) -> Option<Vec<u8>> {
        let i = self.bufs.iter().position(|(h, _)| *h == hardif)?;
        Some(self.bufs.swap_remove(i).1)
    }

    fn push(&mut self, hardif: HardifId, ogm_bytes: &[u8], out: &mut Vec<MeshOutput>) {
        let i = match self.bufs.iter().position(|(h, _)| *h == hardif) {
            Some(i) => i,
            None => {
                self.bufs.push((hardif, Vec::new()));
                self.bufs.len() - 1
            }
        };
        let buf = &mut self.bufs[i].1;
        if !buf.is_empty() && buf.len() + ogm_bytes.len() > MAX_AGGREGATION_BYTES {
            out.push(MeshOutput::Transmit {
                hardif,
                dst: MacAddr::BROADCAST,
                packet: std::mem::take(buf),
            });
        }
        buf.extend_from_slice(ogm_bytes);
    }

    pub(crate) fn flush(&mut self, out: &mut Vec<MeshOutput>) {
        for (hardif, packet) in self.bufs.drain(..) {
            if !packet.is_empty() {
                out.push(MeshOutput::Transmit {
                    hardif,
                    dst: MacAddr::BROADCAST,
                    packet,
                });
            }
        }
    }
}

impl Mesh {
    /// Whether a forwarded OGM of `orig` goes out on `id` (scope.rs): the
    /// echo on the incoming link stays where it counts (a single-hop OGM,
    /// flagged DIRECTLINK) or the neighbour is a kernel node.
    fn ogm_relay_to(&self, id: HardifId, if_in: HardifId, orig: MacAddr, single_hop: bool) -> bool {
        if id == if_in {
            return single_hop
                || !self.scope_peer(id)
                || self.cfg.relay == super::RelayMode::EchoOnly;
        }
        self.scope_relay(id, if_in, orig)
    }

    /// `batadv_iv_ogm_forward`, for every hardif (the kernel queues one
    /// copy per outgoing interface, including the incoming one: that copy,
    /// flagged DIRECTLINK, is the echo the neighbour counts).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn iv_ogm_forward(
        &mut self,
        p: &OgmPacket<&[u8]>,
        eth_src: MacAddr,
        tq: u8,
        single_hop: bool,
        is_from_best: bool,
        if_in: HardifId,
        fwd: &mut FwdQueue,
        out: &mut Vec<MeshOutput>,
    ) {
        if p.ttl() <= 1 {
            self.counters.ttl_exceeded += 1;
            return;
        }
        let mut fl = p.flags();
        if !is_from_best {
            if single_hop {
                fl |= flags::NOT_BEST_NEXT_HOP;
            } else {
                return;
            }
        }
        let mut bytes = p.as_bytes().to_vec();
        let new_tq = hop_penalty(tq, self.cfg.hop_penalty);
        let ids: Vec<HardifId> = self.hardifs.keys().copied().collect();
        for id in ids {
            // secondary OGMs (TTL 2) of a neighbour go back on their own link only
            if single_hop && p.ttl() <= 2 && id != if_in {
                continue;
            }
            if !self.ogm_relay_to(id, if_in, p.orig(), single_hop) {
                self.counters.ogm_relay_scoped += 1;
                continue;
            }
            let direct = single_hop && id == if_in;
            let f = if direct {
                fl | flags::DIRECTLINK
            } else {
                fl & !flags::DIRECTLINK
            };
            {
                let mut o = OgmPacket::new_unchecked(&mut bytes[..]);
                o.set_ttl(p.ttl() - 1);
                o.set_prev_sender(eth_src);
                o.set_tq(new_tq);
                o.set_flags(f);
            }
            fwd.push(id, &bytes, out);
            self.counters.ogm_forwarded += 1;
        }
    }
}
