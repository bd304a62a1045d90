//! Inner fragmentation on send: an inner packet (IP + GRE + frame) longer
//! than what one WireGuard datagram may carry over the underlay is cut into
//! IP fragments, each encrypted as its own data message. This is what a
//! kernel `gretap` over `wg0` does when the gretap packet exceeds wg0's MTU
//! (the IP layer fragments it below the tunnel device, then wg encrypts the
//! pieces one by one), so a kernel peer reassembles ours natively and the
//! underlay never sees an IP fragment.
//!
//! IPv4: the original 20-byte header in every piece, DF clear, MF on all but
//! the last, the same identification. IPv6: the fixed header then a
//! fragment header (next header 47, a 32-bit identification per datagram).
//! Every piece but the last carries the same amount of data, so the
//! datagrams of one frame are equal-sized except the last: one GSO run.

use crate::wire::{ipv4, ipv6};

/// Cuts one inner packet into fragments that each fit `mtu` bytes.
pub(super) struct Fragmenter<'p> {
    packet: &'p [u8],
    /// The IP header copied into every piece (20 or 40 bytes).
    header_len: usize,
    v6: bool,
    /// Data bytes per piece (a multiple of 8).
    chunk: usize,
    /// IPv6 fragment identification (IPv4 keeps the header's own).
    ident6: u32,
    /// Offset of the next piece's data in the IP payload.
    next: usize,
}

impl<'p> Fragmenter<'p> {
    /// `packet` is a whole inner packet as `gretap::encap_headers` wrote
    /// it (no IPv4 options, no IPv6 extension headers). None if it is not
    /// one, or `mtu` leaves no room for 8 bytes of data per piece.
    pub(super) fn new(packet: &'p [u8], mtu: usize, ident6: u32) -> Option<Fragmenter<'p>> {
        let v6 = match packet.first()? >> 4 {
            4 => false,
            6 => true,
            _ => return None,
        };
        let (header_len, per_piece) = if v6 {
            let ip = ipv6::Packet::new_checked(packet).ok()?;
            if ip.next_header() == ipv6::PROTO_FRAGMENT {
                return None;
            }
            (ipv6::HEADER_LEN, ipv6::HEADER_LEN + ipv6::FRAG_HEADER_LEN)
        } else {
            let ip = ipv4::Packet::new_checked(packet).ok()?;
            if ip.header_len() != ipv4::HEADER_LEN || ip.is_fragment() {
                return None;
            }
            (ipv4::HEADER_LEN, ipv4::HEADER_LEN)
        };
        let chunk = mtu.checked_sub(per_piece)? & !7;
        if chunk == 0 {
            return None;
        }
        Some(Fragmenter {
            packet,
            header_len,
            v6,
            chunk,
            ident6,
            next: 0,
        })
    }

    /// Writes the next piece into the front of `buf` and returns its
    /// length; None when done (or `buf` is too small, which the caller
    /// sizes so that it never is).
    pub(super) fn next_into(&mut self, buf: &mut [u8]) -> Option<usize> {
        let payload = self.packet.get(self.header_len..)?;
        let rest = payload.len().checked_sub(self.next).filter(|&r| r > 0)?;
        let n = rest.min(self.chunk);
        let more = n < rest;
        let offset = u16::try_from(self.next).ok()?;
        let data = payload.get(self.next..self.next + n)?;
        let len = if self.v6 {
            self.write_v6(buf, offset, more, data)?
        } else {
            self.write_v4(buf, offset, more, data)?
        };
        self.next += n;
        Some(len)
    }

    fn write_v4(&self, buf: &mut [u8], offset: u16, more: bool, data: &[u8]) -> Option<usize> {
        let len = ipv4::HEADER_LEN + data.len();
        let out = buf.get_mut(..len)?;
        let (hdr, body) = out.split_at_mut(ipv4::HEADER_LEN);
        hdr.copy_from_slice(self.packet.get(..ipv4::HEADER_LEN)?);
        body.copy_from_slice(data);
        let mut ip = ipv4::Packet::new_unchecked(hdr);
        ip.set_total_len(u16::try_from(len).ok()?);
        ip.set_fragment(more, offset);
        ip.fill_checksum();
        Some(len)
    }

    fn write_v6(&self, buf: &mut [u8], offset: u16, more: bool, data: &[u8]) -> Option<usize> {
        let fh = ipv6::HEADER_LEN + ipv6::FRAG_HEADER_LEN;
        let len = fh + data.len();
        let out = buf.get_mut(..len)?;
        let (hdr, body) = out.split_at_mut(fh);
        let (fixed, frag) = hdr.split_at_mut(ipv6::HEADER_LEN);
        fixed.copy_from_slice(self.packet.get(..ipv6::HEADER_LEN)?);
        body.copy_from_slice(data);
        let mut ip = ipv6::Packet::new_unchecked(fixed);
        let inner_proto = ip.next_header();
        ip.set_next_header(ipv6::PROTO_FRAGMENT);
        ip.set_payload_len(u16::try_from(len - ipv6::HEADER_LEN).ok()?);
        ipv6::FragHeader::new_unchecked(frag).emit(inner_proto, offset, more, self.ident6);
        Some(len)
    }
}
