//! Unicast-class packets (`routing.c`): delivery to us, forwarding to the
//! best next hop with ttl-1 (multi-hop), and our own unicast sends.

use std::time::Instant;

use super::bcast::ETH_HLEN;
use super::fragmentation::{frag_split, FragResult};
use super::icmp::{ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_TTL_EXCEEDED};
use super::{HardifId, Mesh, MeshOutput, TTL};
use crate::wire::batman::{
    packet_type, subtype, FragPacket, IcmpPacket, Unicast4AddrPacket, UnicastPacket,
    UnicastTvlvPacket, COMPAT_VERSION,
};
use crate::wire::{ethernet, MacAddr};

/// Where a unicast to an originator goes, and the 10-byte header to put in
/// front of the client frame. This is the hook for a zero-copy send path:
/// the dataplane can write `header` into its own buffer's headroom and send
/// on `hardif` to `next_hop` without going through [`Mesh::send_unicast`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnicastRoute {
    pub hardif: HardifId,
    pub next_hop: MacAddr,
    pub header: [u8; 10],
}

impl Mesh {
    /// Route lookup plus header for `dest_orig` (no allocation).
    pub fn unicast_route(&self, dest_orig: MacAddr) -> Option<UnicastRoute> {
        let (next_hop, hardif) = self.origs.route(&dest_orig)?;
        let d = dest_orig.0;
        let ttvn = self.tt_orig_ttvn(&dest_orig);
        let header = [
            packet_type::UNICAST,
            COMPAT_VERSION,
            TTL,
            ttvn,
            d[0],
            d[1],
            d[2],
            d[3],
            d[4],
            d[5],
        ];
        Some(UnicastRoute {
            hardif,
            next_hop,
            header,
        })
    }

    /// Counts a unicast the dataplane built from [`Mesh::unicast_route`]
    /// and sent itself, so `tx_unicast` stays the whole truth.
    pub fn unicast_sent(&mut self) {
        self.counters.tx_unicast += 1;
    }

    pub(crate) fn unicast_send(
        &mut self,
        dest_orig: MacAddr,
        frame: &[u8],
        out: &mut Vec<MeshOutput>,
    ) -> bool {
        self.unicast_send_ttl(dest_orig, frame, TTL, out)
    }

    /// [`Mesh::unicast_send`] with the header's TTL set to `ttl`.
    pub(crate) fn unicast_send_ttl(
        &mut self,
        dest_orig: MacAddr,
        frame: &[u8],
        ttl: u8,
        out: &mut Vec<MeshOutput>,
    ) -> bool {
        let Some(mut r) = self.unicast_route(dest_orig) else {
            self.counters.no_route += 1;
            return false;
        };
        r.header[2] = ttl;
        let mut packet = Vec::with_capacity(r.header.len() + frame.len());
        packet.extend_from_slice(&r.header);
        packet.extend_from_slice(frame);
        self.counters.tx_unicast += 1;
        self.transmit_unicast(r.hardif, r.next_hop, dest_orig, packet, out)
    }

    /// Sends on `hardif`, fragmenting when the packet exceeds its MTU.
    pub(super) fn transmit_unicast(
        &mut self,
        hardif: HardifId,
        next_hop: MacAddr,
        dest: MacAddr,
        packet: Vec<u8>,
        out: &mut Vec<MeshOutput>,
    ) -> bool {
        let mtu = self.hardifs.get(&hardif).and_then(|h| h.mtu);
        match mtu {
            Some(mtu) if packet.len() > mtu => {
                self.frag_seqno = self.frag_seqno.wrapping_add(1);
                let Some(frags) =
                    frag_split(&packet, mtu, dest, self.cfg.originator, self.frag_seqno)
                else {
                    self.counters.frag_dropped += 1;
                    return false;
                };
                for f in frags {
                    self.counters.frag_sent += 1;
                    out.push(MeshOutput::Transmit {
                        hardif,
                        dst: next_hop,
                        packet: f,
                    });
                }
            }
            _ => out.push(MeshOutput::Transmit {
                hardif,
                dst: next_hop,
                packet,
            }),
        }
        true
    }

    /// Sends a TVLV region to `dst` in a UNICAST_TVLV from our originator.
    pub(crate) fn unicast_tvlv_send(
        &mut self,
        dst: MacAddr,
        tvlv: &[u8],
        out: &mut Vec<MeshOutput>,
    ) -> bool {
        let Some((next_hop, hardif)) = self.origs.route(&dst) else {
            self.counters.no_route += 1;
            return false;
        };
        let Ok(len) = u16::try_from(tvlv.len()) else {
            return false;
        };
        let hlen = UnicastTvlvPacket::<&[u8]>::HEADER_LEN;
        let mut packet = vec![0u8; hlen];
        {
            let mut p = UnicastTvlvPacket::new_unchecked(&mut packet[..]);
            p.init_header();
            p.set_ttl(TTL);
            p.set_dest(dst);
            p.set_src(self.cfg.originator);
            p.set_tvlv_len(len);
        }
        packet.extend_from_slice(tvlv);
        // A full-table TT_RESPONSE can be many kilobytes: fragmented like
        // any unicast that does not fit the link, as the kernel sends it.
        self.transmit_unicast(hardif, next_hop, dst, packet, out)
    }

    /// Whether a unicast to `dst` leaves on a link that fragments.
    pub(crate) fn route_fragments(&self, dst: &MacAddr) -> bool {
        self.origs
            .route(dst)
            .and_then(|(_, h)| self.hardifs.get(&h))
            .is_some_and(|h| h.mtu.is_some())
    }

    /// `batadv_check_unicast_packet` + dispatch by type.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn recv_unicast_class(
        &mut self,
        now: Instant,
        hardif: HardifId,
        eth_src: MacAddr,
        eth_dst: MacAddr,
        ptype: u8,
        packet: &[u8],
        out: &mut Vec<MeshOutput>,
    ) {
        if eth_dst.is_multicast() || eth_src.is_multicast() {
            self.counters.malformed += 1;
            return;
        }
        if !self.is_own_address(eth_dst) {
            self.counters.not_for_us += 1;
            return;
        }
        match ptype {
            packet_type::UNICAST => {
                let Ok(p) = UnicastPacket::new_checked(packet) else {
                    return self.count_malformed();
                };
                self.counters.rx_unicast += 1;
                if !self.is_own_address(p.dest()) {
                    self.forward(Some(hardif), packet, p.dest(), out);
                } else if let Some(new_dest) = self.reroute_target(p.payload(), p.ttvn()) {
                    self.reroute(packet, new_dest, out);
                } else {
                    self.deliver_unicast(p.payload(), p.ttl(), out);
                }
            }
            packet_type::UNICAST_4ADDR => {
                let Ok(p) = Unicast4AddrPacket::new_checked(packet) else {
                    return self.count_malformed();
                };
                self.counters.rx_unicast += 1;
                if !self.is_own_address(p.dest()) {
                    self.forward(Some(hardif), packet, p.dest(), out);
                } else if p.subtype() == subtype::DATA {
                    self.deliver_unicast(p.payload(), p.ttl(), out);
                } else {
                    self.dat_receive(p.subtype(), p.src(), p.payload(), p.ttl(), out);
                }
            }
            packet_type::UNICAST_FRAG => {
                let Ok(p) = FragPacket::new_checked(packet) else {
                    return self.count_malformed();
                };
                if self.is_own_address(p.dest()) {
                    self.recv_frag(now, hardif, eth_src, eth_dst, &p, out);
                } else {
                    self.forward(Some(hardif), packet, p.dest(), out);
                }
            }
            packet_type::ICMP => {
                let Ok(p) = IcmpPacket::new_checked(packet) else {
                    return self.count_malformed();
                };
                self.recv_icmp(hardif, &p, packet, out);
            }
            packet_type::UNICAST_TVLV => {
                let Ok(p) = UnicastTvlvPacket::new_checked(packet) else {
                    return self.count_malformed();
                };
                if self.is_own_address(p.dest()) {
                    self.tt_unicast_tvlv_receive(now, p.src(), p.tvlv(), out);
                } else {
                    self.forward(Some(hardif), packet, p.dest(), out);
                }
            }
            _ => self.counters.unknown_type += 1,
        }
    }

    /// Our fragment: reassemble, then handle the result like any unicast
    /// that arrived on the same link. A merged packet that is itself a
    /// fragment is refused, so this recursion is one level deep.
    fn recv_frag(
        &mut self,
        now: Instant,
        hardif: HardifId,
        eth_src: MacAddr,
        eth_dst: MacAddr,
        p: &FragPacket<&[u8]>,
        out: &mut Vec<MeshOutput>,
    ) {
        match self.frags.add(now, hardif, p) {
            FragResult::Pending => {}
            FragResult::Invalid => self.counters.frag_dropped += 1,
            FragResult::Complete(packet) => {
                let ptype = packet.first().copied().unwrap_or(0);
                // any unicast-class packet may have been fragmented (a big
                // TT_RESPONSE in a UNICAST_TVLV too), but not a fragment again
                if packet.get(1) != Some(&COMPAT_VERSION)
                    || !matches!(
                        ptype,
                        packet_type::UNICAST
                            | packet_type::UNICAST_4ADDR
                            | packet_type::ICMP
                            | packet_type::UNICAST_TVLV
                    )
                {
                    self.counters.frag_dropped += 1;
                    return;
                }
                self.counters.frag_reassembled += 1;
                self.recv_unicast_class(now, hardif, eth_src, eth_dst, ptype, &packet, out);
            }
        }
    }

    /// `batadv_check_unicast_ttvn` + `batadv_reroute_unicast_packet`: a
    /// frame for a client that roamed away from us (we are deleting it) or
    /// sent with an outdated TTVN for a client we do not serve goes to the
    /// originator that announces it now. Returns that originator. The TTVN
    /// test keeps two nodes with different views from bouncing a packet.
    fn reroute_target(&self, frame: &[u8], pkt_ttvn: u8) -> Option<MacAddr> {
        let dst = MacAddr::from_bytes(frame)?;
        if dst.is_multicast() {
            return None;
        }
        let vid = inner_vid(frame);
        if !self.tt.local_leaving(dst, vid) {
            let is_old_ttvn = (pkt_ttvn.wrapping_sub(self.tt.ttvn) as i8) < 0;
            if self.tt.local_serves(dst, vid) || !is_old_ttvn {
                return None;
            }
        }
        self.tt_global_lookup(dst, vid)
            .filter(|o| !self.is_own_address(*o))
    }

    /// Points a UNICAST (or UNICAST_4ADDR) at `dest` with its TTVN and routes it on.
    fn reroute(&mut self, packet: &[u8], dest: MacAddr, out: &mut Vec<MeshOutput>) {
        let mut p = packet.to_vec();
        let ttvn = self.tt_orig_ttvn(&dest);
        {
            let mut u = UnicastPacket::new_unchecked(&mut p[..]);
            u.set_dest(dest);
            u.set_ttvn(ttvn);
        }
        self.counters.unicast_rerouted += 1;
        self.forward(None, &p, dest, out);
    }

    fn count_malformed(&mut self) {
        self.counters.malformed += 1;
    }

    fn deliver_unicast(&mut self, frame: &[u8], ttl: u8, out: &mut Vec<MeshOutput>) {
        if frame.len() < ETH_HLEN {
            self.counters.malformed += 1;
            return;
        }
        self.counters.unicast_delivered += 1;
        out.push(MeshOutput::Deliver {
            frame: frame.to_vec(),
            source_orig: None,
            broadcast: false,
            ttl,
        });
    }

    /// `batadv_route_unicast_packet`: ttl-1 towards the best next hop. All
    /// unicast-class headers keep ttl at byte 2.
    ///
    /// Unlike the kernel, a packet is never sent back on the link it came
    /// in on (`from`): a hardif is one peer, so that would be a two-node
    /// loop, which is what stale routes make when an originator dies or
    /// restarts (each neighbour still has the other as a relay towards it,
    /// and the kernel bounces the packet until its TTL runs out). Dropped
    /// and counted as `unicast_bounce_dropped`.
    fn forward(
        &mut self,
        from: Option<HardifId>,
        packet: &[u8],
        dest: MacAddr,
        out: &mut Vec<MeshOutput>,
    ) {
        let ttl = packet.get(2).copied().unwrap_or(0);
        if ttl < 2 {
            self.counters.ttl_exceeded += 1;
            return;
        }
        let Some((next_hop, hardif)) = self.origs.route(&dest) else {
            self.counters.no_route += 1;
            return;
        };
        if from == Some(hardif) {
            self.counters.unicast_bounce_dropped += 1;
            return;
        }
        let mut fwd = packet.to_vec();
        if let Some(t) = fwd.get_mut(2) {
            *t = ttl - 1;
        }
        out.push(MeshOutput::Transmit {
            hardif,
            dst: next_hop,
            packet: fwd,
        });
        self.counters.unicast_forwarded += 1;
    }

    /// batctl ping/traceroute: answer echo requests for us and report TTL
    /// exceeded for probes that end here; forward the rest.
    fn recv_icmp(
        &mut self,
        hardif: HardifId,
        p: &IcmpPacket<&[u8]>,
        packet: &[u8],
        out: &mut Vec<MeshOutput>,
    ) {
        let for_us = self.is_own_address(p.dest());
        if !for_us && p.ttl() >= 2 {
            return self.forward(Some(hardif), packet, p.dest(), out);
        }
        if p.msg_type() != ICMP_ECHO_REQUEST {
            // An answer to one of our probes (`ctl ping`), or nothing.
            if for_us {
                self.icmp_answered(p);
            } else {
                self.counters.icmp_dropped += 1;
            }
            return;
        }
        let mut reply = packet.to_vec();
        let src = p.orig();
        {
            let mut r = IcmpPacket::new_unchecked(&mut reply[..]);
            r.set_ttl(TTL);
            r.set_dest(src);
        }
        let me = self.cfg.originator.0;
        if let Some(s) = reply.get_mut(10..16) {
            s.copy_from_slice(&me);
        }
        if let Some(m) = reply.get_mut(3) {
            *m = if for_us {
                ICMP_ECHO_REPLY
            } else {
                ICMP_TTL_EXCEEDED
            };
        }
        match self.origs.route(&src) {
            Some((next_hop, hardif)) => {
                out.push(MeshOutput::Transmit {
                    hardif,
                    dst: next_hop,
                    packet: reply,
                });
                self.counters.icmp_answered += 1;
            }
            None => self.counters.no_route += 1,
        }
    }
}

/// TT vid of a client frame: 0 untagged, 0x8000 | VLAN id when 802.1Q tagged
/// (`batadv_get_vid`: 0 too when the tag is cut short).
fn inner_vid(frame: &[u8]) -> u16 {
    ethernet::Frame::new_checked(frame).map_or(0, |f| f.batman_vid())
}

#[cfg(test)]
mod tests {
    use super::inner_vid;

    #[test]
    fn inner_vid_as_batadv_get_vid() {
        let mut f = vec![0u8; 60];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(inner_vid(&f), 0);
        f[12..16].copy_from_slice(&[0x81, 0x00, 0xa0, 0x2a]);
        assert_eq!(inner_vid(&f), 0x8000 | 42, "PCP bits dropped");
        assert_eq!(inner_vid(&f[..18]), 0x8000 | 42);
        // The kernel pulls the whole 18-byte tagged header or says 0.
        assert_eq!(inner_vid(&f[..17]), 0);
        assert_eq!(inner_vid(&f[..13]), 0);
    }
}
