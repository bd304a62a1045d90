//! Ethernet-aware segmentation of the GSO super-frames a TAP with
//! IFF_VNET_HDR hands over (TSO4/6, USO4/6), and completion of partial
//! checksums (NEEDS_CSUM).
//!
//! The kernel hands over one up to 64 KB TCP (or UDP) packet plus a virtio
//! header saying "cut me into `gso_size` pieces". Everything past the port
//! must see ordinary MTU-sized frames with complete checksums: they cross
//! the mesh to kernels that know nothing of our offloads. [`prepare`]
//! validates the headers against the buffer once (hostile input is refused,
//! never trusted); after that [`finish_segment`] cannot fail or panic for
//! the validated geometry.
//!
//! A segment is a copy of the headers followed by its slice of the payload.
//! Callers either copy both into their own buffer ([`write_segment`]) or
//! write the header copy in place just before the slice, over bytes of the
//! previous segment that were already handed out (see `rx.rs`): no payload
//! copy at all.

use crate::wire::ethernet::ethertype;
use crate::wire::vnet::{self, gso};
use crate::wire::{checksum, ipv4, ipv6, tcp, udp};

/// Longest header block we segment: two VLAN tags, IPv4 with options and
/// TCP with options is 18 + 4 + 60 + 60 = 142.
pub const MAX_HEADERS: usize = 160;

/// Why a frame from the kernel was refused. Each is counted per port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxError {
    /// Flags other than NEEDS_CSUM/DATA_VALID, or GSO without NEEDS_CSUM.
    BadVnet,
    /// The ECN bit: we never enable TUN_F_TSO_ECN, so the kernel must not.
    Ecn,
    /// UFO or an unknown gso_type.
    Unsupported,
    /// gso_size 0, or hdr_len past the frame.
    BadGso,
    /// Ethernet/IP/L4 headers disagree with the gso_type or the lengths.
    BadHeaders,
    /// csum_start/csum_offset outside the frame or not at the L4 checksum.
    BadCsum,
    /// A resulting frame would be longer than the port's MTU allows.
    Oversize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L4 {
    Tcp,
    Udp,
}

/// A validated GSO super-frame: where everything is and what each segment
/// inherits from the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    l4: L4,
    v4: bool,
    /// Offsets in the frame: IP header, L4 header, end of all headers.
    l3: usize,
    l4_off: usize,
    hdr_end: usize,
    gso_size: usize,
    payload: usize,
    /// Pseudo-header partial sum without the length.
    pseudo: u16,
    seq0: u32,
    id0: u16,
    flags0: u8,
}

impl Gso {
    /// Bytes of headers copied in front of each segment's payload.
    pub fn header_len(&self) -> usize {
        self.hdr_end
    }

    pub fn segments(&self) -> usize {
        self.payload.div_ceil(self.gso_size)
    }

    /// Where segment `i`'s payload starts in the super-frame, and its length.
    pub fn payload_range(&self, i: usize) -> std::ops::Range<usize> {
        let start = self.hdr_end + i * self.gso_size;
        let end = (start + self.gso_size).min(self.hdr_end + self.payload);
        start..end
    }

    /// Total bytes of all segments (for counters).
    pub fn total_bytes(&self) -> usize {
        self.payload + self.segments() * self.hdr_end
    }
}

/// What a frame read from a vnet TAP turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// One ordinary frame (its checksum completed if it was partial).
    Plain { csum_completed: bool },
    /// A super-frame to be cut into `Gso::segments()` frames.
    Gso(Gso),
}

use crate::wire::ethernet::l3_offset;

/// Validates a frame read from a vnet TAP (`hdr` is its virtio header) and
/// completes a partial checksum in place. `max_frame` bounds every frame
/// that will come out.
pub fn prepare(hdr: &[u8], frame: &mut [u8], max_frame: usize) -> Result<Prepared, RxError> {
    let h = vnet::Header::new_checked(hdr).map_err(|_| RxError::BadVnet)?;
    if h.flags() & !(vnet::F_NEEDS_CSUM | vnet::F_DATA_VALID) != 0 {
        return Err(RxError::BadVnet);
    }
    let t = h.gso_type();
    if t & gso::ECN != 0 {
        return Err(RxError::Ecn);
    }
    if t == gso::NONE {
        if frame.len() > max_frame {
            return Err(RxError::Oversize);
        }
        if !h.needs_csum() {
            return Ok(Prepared::Plain {
                csum_completed: false,
            });
        }
        let start = usize::from(h.csum_start());
        let at = start + usize::from(h.csum_offset());
        complete_csum(frame, start, at)?;
        return Ok(Prepared::Plain {
            csum_completed: true,
        });
    }
    let (want_l4, want_v4) = match t {
        gso::TCPV4 => (L4::Tcp, Some(true)),
        gso::TCPV6 => (L4::Tcp, Some(false)),
        gso::UDP_L4 => (L4::Udp, None),
        _ => return Err(RxError::Unsupported),
    };
    if !h.needs_csum() {
        return Err(RxError::BadVnet);
    }
    if h.gso_size() == 0 || usize::from(h.hdr_len()) > frame.len() {
        return Err(RxError::BadGso);
    }
    let g = parse_gso(frame, want_l4, want_v4, usize::from(h.gso_size()))?;
    if usize::from(h.csum_start()) != g.l4_off || usize::from(h.csum_offset()) != csum_field(g.l4) {
        return Err(RxError::BadCsum);
    }
    if g.hdr_end + g.gso_size.min(g.payload) > max_frame {
        return Err(RxError::Oversize);
    }
    Ok(Prepared::Gso(g))
}

fn csum_field(l4: L4) -> usize {
    match l4 {
        L4::Tcp => tcp::field::CHECKSUM.start,
        L4::Udp => udp::field::CHECKSUM.start,
    }
}

/// The checksum device work: one's complement of everything from `start`
/// to the end (the field holds the pseudo-header sum already), stored at
/// `at`. 0 goes out as 0xffff, as the kernel's skb_checksum_help does.
fn complete_csum(frame: &mut [u8], start: usize, at: usize) -> Result<(), RxError> {
    if start >= frame.len() || at + 2 > frame.len() || at < start {
        return Err(RxError::BadCsum);
    }
    let c = checksum::finish(checksum::sum(&frame[start..]));
    let c = if c == 0 { 0xffff } else { c };
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// Parses Ethernet, IP and L4 headers of a super-frame and checks every
/// length against the buffer.
fn parse_gso(frame: &[u8], l4: L4, want_v4: Option<bool>, gso_size: usize) -> Result<Gso, RxError> {
    let bad = |_| RxError::BadHeaders;
    let (l3, et) = l3_offset(frame).ok_or(RxError::BadHeaders)?;
    let v4 = match et {
        ethertype::IPV4 => true,
        ethertype::IPV6 => false,
        _ => return Err(RxError::BadHeaders),
    };
    if want_v4.is_some_and(|w| w != v4) {
        return Err(RxError::BadHeaders);
    }
    let ip = &frame[l3..];
    let proto = match l4 {
        L4::Tcp => tcp::PROTOCOL,
        L4::Udp => udp::PROTOCOL,
    };
    let (l4_off, pseudo, id0) = if v4 {
        let p = ipv4::Packet::new_checked(ip).map_err(bad)?;
        if usize::from(p.total_len()) != ip.len() || p.is_fragment() || p.protocol() != proto {
            return Err(RxError::BadHeaders);
        }
        let ps = checksum::pseudo_header_v4(p.src_addr(), p.dst_addr(), proto, 0);
        (l3 + p.header_len(), ps, p.ident())
    } else {
        let p = ipv6::Packet::new_checked(ip).map_err(bad)?;
        // Extension headers are not segmented here (Linux TSO does not
        // emit them for plain TCP); the L4 header must follow directly.
        if usize::from(p.payload_len()) + ipv6::HEADER_LEN != ip.len() || p.next_header() != proto {
            return Err(RxError::BadHeaders);
        }
        let ps = checksum::pseudo_header_v6(p.src_addr(), p.dst_addr(), proto, 0);
        (l3 + ipv6::HEADER_LEN, ps, 0)
    };
    let seg = &frame[l4_off..];
    let (hdr_end, seq0, flags0) = match l4 {
        L4::Tcp => {
            let t = tcp::Packet::new_checked(seg).map_err(bad)?;
            (l4_off + t.header_len(), t.seq_number(), t.flags())
        }
        L4::Udp => {
            let u = udp::Packet::new_checked(seg).map_err(bad)?;
            if usize::from(u.length()) != seg.len() {
                return Err(RxError::BadHeaders);
            }
            (l4_off + udp::HEADER_LEN, 0, 0)
        }
    };
    if hdr_end >= frame.len() || hdr_end > MAX_HEADERS {
        return Err(RxError::BadHeaders);
    }
    Ok(Gso {
        l4,
        v4,
        l3,
        l4_off,
        hdr_end,
        gso_size,
        payload: frame.len() - hdr_end,
        pseudo,
        seq0,
        id0,
        flags0,
    })
}

/// Turns `seg` (the super-frame's headers followed by segment `i`'s
/// payload) into a valid frame: lengths, IPv4 ID and checksum, TCP
/// sequence number and flags, L4 checksum. `seg` must be
/// `g.header_len() + g.payload_range(i).len()` long.
pub fn finish_segment(g: &Gso, seg: &mut [u8], i: usize) {
    let last = i + 1 == g.segments();
    let ip_len = seg.len() - g.l3;
    if g.v4 {
        let mut p = ipv4::Packet::new_unchecked(&mut seg[g.l3..]);
        p.set_total_len(ip_len as u16);
        p.set_ident(g.id0.wrapping_add(i as u16));
        p.fill_checksum();
    } else {
        let mut p = ipv6::Packet::new_unchecked(&mut seg[g.l3..]);
        p.set_payload_len((ip_len - ipv6::HEADER_LEN) as u16);
    }
    let l4_len = seg.len() - g.l4_off;
    let l4 = &mut seg[g.l4_off..];
    let at = csum_field(g.l4);
    match g.l4 {
        L4::Tcp => {
            let mut t = tcp::Packet::new_unchecked(&mut *l4);
            t.set_seq_number(g.seq0.wrapping_add((i * g.gso_size) as u32));
            let mut f = g.flags0;
            if !last {
                f &= !(tcp::flags::FIN | tcp::flags::PSH);
            }
            if i != 0 {
                f &= !tcp::flags::CWR;
            }
            t.set_flags(f);
        }
        L4::Udp => udp::Packet::new_unchecked(&mut *l4).set_len(l4_len as u16),
    }
    l4[at..at + 2].fill(0);
    let c = checksum::finish(checksum::combine(&[
        g.pseudo,
        l4_len as u16,
        checksum::sum(l4),
    ]));
    let c = if c == 0 && g.l4 == L4::Udp { 0xffff } else { c };
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Copies segment `i` of `frame` into `out` and finishes it; returns its
/// length, or None when `out` is too short.
pub fn write_segment(g: &Gso, frame: &[u8], i: usize, out: &mut [u8]) -> Option<usize> {
    let r = g.payload_range(i);
    let len = g.hdr_end + r.len();
    let dst = out.get_mut(..len)?;
    dst[..g.hdr_end].copy_from_slice(frame.get(..g.hdr_end)?);
    dst[g.hdr_end..].copy_from_slice(frame.get(r)?);
    finish_segment(g, dst, i);
    Some(len)
}
