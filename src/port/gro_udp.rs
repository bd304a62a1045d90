//! Coalescing toward a TAP with USO: consecutive datagrams of one UDP flow
//! become one super-frame (gso_type UDP_L4), written with one syscall; the
//! kernel cuts it back into the same datagrams. For small datagrams this
//! turns 64 writes into one.
//!
//! What the kernel expects of such a frame (virtio_net_hdr_to_skb in
//! include/linux/virtio_net.h, __udp_gso_segment in net/ipv4/udp_offload.c):
//! NEEDS_CSUM with csum_start at the UDP header and csum_offset 6; more
//! payload than one gso_size (else it is no GSO frame) and at most
//! UDP_MAX_SEGMENTS of them; IP and UDP lengths of the whole super-frame;
//! the UDP checksum field holding the folded pseudo-header sum over that
//! whole length, from which each segment's sum is derived by swapping the
//! length. Every segment gets the super-frame's headers with its own
//! lengths and checksums and, on IPv4, the first ID plus its index.
//!
//! Hence the rules, close to the kernel's own UDP GRO
//! (udp_gro_receive_segment): identical Ethernet/IP/UDP headers except
//! lengths, IPv4 ID and checksums; IPv4 IDs consecutive unless DF is set
//! (the ID of an atomic datagram means nothing, RFC 6864), so that the
//! kernel gives back the very IDs we merged; every datagram `gso_size`
//! long but the last, which may be shorter and closes the super-frame; no
//! empty datagram; each datagram's checksum verified first and never 0,
//! since the kernel trusts NEEDS_CSUM and would give a checksum to a
//! datagram sent without one (or hide a corrupted one).

use super::gro::{l3_offset, same_flow_key, same_ip_and_ports, GRO_BUF, MAX_IP_LEN};
use crate::wire::ethernet::{ethertype, HEADER_LEN as ETH_LEN};
use crate::wire::vnet::{self, gso};
use crate::wire::{checksum, ipv4, ipv6, udp};

/// Datagrams per super-frame: UDP_MAX_SEGMENTS of kernels before 6.x
/// (newer ones take 128); virtio_net_hdr_to_skb refuses more.
pub const MAX_SEGMENTS: usize = 64;

/// Shortest Ethernet frame without FCS: a shorter IP packet is padded up
/// to it, and only such padding is accepted after the IP packet.
const MIN_FRAME: usize = 60;

/// Where a coalescable datagram keeps its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpSeg {
    v4: bool,
    l3: usize,
    l4: usize,
    /// End of the IP packet; bytes after it are Ethernet padding.
    end: usize,
    ident: u16,
    /// No IPv4 ID to preserve: DF set, or IPv6.
    atomic: bool,
}

impl UdpSeg {
    /// Ethernet, IP and UDP headers together.
    pub fn header_len(&self) -> usize {
        self.l4 + udp::HEADER_LEN
    }

    /// The datagram's payload length.
    pub fn payload_len(&self) -> usize {
        self.end - self.header_len()
    }

    /// The datagram's payload within `frame` (the frame it was classified
    /// from).
    pub fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        frame.get(self.header_len()..self.end).unwrap_or(&[])
    }
}

/// A UDP datagram we may coalesce: IPv4 (unfragmented, header checksum
/// right) or IPv6 without extension headers, UDP length equal to the IP
/// payload, some payload, a checksum that is not 0 and verifies, and no
/// bytes after the IP packet but minimum-frame padding.
pub fn classify(frame: &[u8]) -> Option<UdpSeg> {
    let (l3, et) = l3_offset(frame)?;
    let ip = frame.get(l3..)?;
    let (v4, l4, end, ident, atomic, src_dst) = match et {
        ethertype::IPV4 => {
            let p = ipv4::Packet::new_checked(ip).ok()?;
            if p.is_fragment() || p.protocol() != udp::PROTOCOL || !p.verify_checksum() {
                return None;
            }
            let ps = checksum::pseudo_header_v4(p.src_addr(), p.dst_addr(), udp::PROTOCOL, 0);
            let end = l3 + usize::from(p.total_len());
            (true, l3 + p.header_len(), end, p.ident(), p.dont_frag(), ps)
        }
        ethertype::IPV6 => {
            let p = ipv6::Packet::new_checked(ip).ok()?;
            if p.next_header() != udp::PROTOCOL {
                return None;
            }
            let ps = checksum::pseudo_header_v6(p.src_addr(), p.dst_addr(), udp::PROTOCOL, 0);
            let end = l3 + ipv6::HEADER_LEN + usize::from(p.payload_len());
            (false, l3 + ipv6::HEADER_LEN, end, 0, true, ps)
        }
        _ => return None,
    };
    // Trailing bytes are only tolerated as padding up to the minimum frame
    // (60 bytes, plus the tag on a tagged frame); they are not copied.
    if end != frame.len() && frame.len() > MIN_FRAME + (l3 - ETH_LEN) {
        return None;
    }
    let body = frame.get(l4..end)?;
    let u = udp::Packet::new_checked(body).ok()?;
    if usize::from(u.length()) != body.len() || body.len() <= udp::HEADER_LEN || u.checksum() == 0 {
        return None;
    }
    // The pseudo-header length is the UDP length (< 2^16 here).
    let sum = checksum::combine(&[src_dst, body.len() as u16, checksum::sum(body)]);
    if sum != 0xffff {
        return None;
    }
    Some(UdpSeg {
        v4,
        l3,
        l4,
        end,
        ident,
        atomic,
    })
}

/// Header bytes that must be equal for two datagrams to merge: everything
/// but IP lengths, IPv4 ID and header checksum, UDP length and checksum.
fn same_headers(a: &[u8], b: &[u8], s: &UdpSeg) -> bool {
    same_ip_and_ports(a, b, s.v4, s.l3, s.l4)
}

/// One pending UDP super-frame.
#[derive(Debug)]
pub struct UdpGro {
    /// Virtio header, then the frame.
    buf: Box<[u8]>,
    /// Frame bytes in `buf` after the header; 0 when nothing is pending.
    len: usize,
    seg: UdpSeg,
    gso_size: usize,
    segs: usize,
    /// The IPv4 ID the next datagram must carry (unless atomic).
    next_id: u16,
    /// A short datagram ended it: the next one starts a new frame.
    closed: bool,
}

impl Default for UdpGro {
    fn default() -> UdpGro {
        UdpGro::new()
    }
}

impl UdpGro {
    pub fn new() -> UdpGro {
        UdpGro::with_buf(vec![0u8; GRO_BUF].into_boxed_slice())
    }

    /// A coalescer on a buffer given up by another one, so the pool
    /// changes a slot's protocol without allocating. A buffer shorter than
    /// [`GRO_BUF`] only refuses the longer frames.
    pub(crate) fn with_buf(buf: Box<[u8]>) -> UdpGro {
        UdpGro {
            buf,
            len: 0,
            seg: UdpSeg {
                v4: true,
                l3: 0,
                l4: 0,
                end: 0,
                ident: 0,
                atomic: true,
            },
            gso_size: 0,
            segs: 0,
            next_id: 0,
            closed: true,
        }
    }

    /// Gives up the buffer; whatever was pending is forgotten.
    pub(crate) fn take_buf(&mut self) -> Box<[u8]> {
        self.len = 0;
        self.segs = 0;
        self.closed = true;
        std::mem::take(&mut self.buf)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Segments merged in the pending frame.
    pub fn segments(&self) -> usize {
        self.segs
    }

    /// Adds `frame`: merged into the pending super-frame, or starting one
    /// when none is pending. False when it is not a coalescable datagram or
    /// does not continue the pending one: take that first.
    pub fn push(&mut self, frame: &[u8]) -> bool {
        let Some(s) = classify(frame) else {
            return false;
        };
        if self.append(frame, &s) {
            return true;
        }
        self.is_empty() && self.start(frame, &s)
    }

    /// The pending frame's bytes (after the virtio header).
    fn head(&self) -> &[u8] {
        self.buf
            .get(vnet::HEADER_LEN..vnet::HEADER_LEN + self.len)
            .unwrap_or(&[])
    }

    /// True when `frame` belongs to the pending super-frame's flow: same
    /// Ethernet header (and tag), IP addresses and UDP ports.
    pub fn same_flow(&self, frame: &[u8], s: &UdpSeg) -> bool {
        let p = &self.seg;
        if self.len == 0 || s.v4 != p.v4 || s.l3 != p.l3 || s.l4 != p.l4 {
            return false;
        }
        same_flow_key(self.head(), frame, s.v4, s.l3, s.l4)
    }

    /// Appends `frame` (classified as `s`) when it continues the pending
    /// super-frame; false when it does not (nothing changed).
    pub fn append(&mut self, frame: &[u8], s: &UdpSeg) -> bool {
        let p = &self.seg;
        let plen = s.payload_len();
        if self.len == 0
            || self.closed
            || s.v4 != p.v4
            || s.l3 != p.l3
            || s.l4 != p.l4
            || plen == 0
            || plen > self.gso_size
            || self.segs >= MAX_SEGMENTS
            || self.len + plen - p.l3 > MAX_IP_LEN
            || (!s.atomic && s.ident != self.next_id)
        {
            return false;
        }
        let at = vnet::HEADER_LEN + self.len;
        let (Some(src), true) = (
            frame.get(s.header_len()..s.end),
            at + plen <= self.buf.len(),
        ) else {
            return false;
        };
        if !same_headers(self.head(), frame, s) {
            return false;
        }
        self.buf[at..at + plen].copy_from_slice(src);
        self.len += plen;
        self.segs += 1;
        self.next_id = self.next_id.wrapping_add(1);
        if plen < self.gso_size || self.segs == MAX_SEGMENTS {
            self.closed = true;
        }
        true
    }

    /// Starts a new super-frame with `frame` (whatever was pending is
    /// forgotten: take it first). Padding after the IP packet is dropped.
    /// False when the datagram cannot start one (no payload, or longer than
    /// the buffer).
    pub fn start(&mut self, frame: &[u8], s: &UdpSeg) -> bool {
        let plen = s.payload_len();
        let (Some(src), Some(dst)) = (
            frame.get(..s.end),
            self.buf.get_mut(vnet::HEADER_LEN..vnet::HEADER_LEN + s.end),
        ) else {
            return false;
        };
        if plen == 0 {
            return false;
        }
        dst.copy_from_slice(src);
        self.len = s.end;
        self.seg = *s;
        self.gso_size = plen;
        self.segs = 1;
        self.next_id = s.ident.wrapping_add(1);
        self.closed = false;
        true
    }

    /// Finalises the pending frame and returns virtio header + frame, ready
    /// for one write; it is forgotten (the buffer stays). One datagram goes
    /// out as it came, with a zero header.
    pub fn take(&mut self) -> &[u8] {
        let (s, segs, gso_size) = (self.seg, self.segs, self.gso_size);
        let total = vnet::HEADER_LEN + self.len;
        self.len = 0;
        self.segs = 0;
        self.closed = true;
        let Some(out) = self.buf.get_mut(..total) else {
            return &[];
        };
        let (hdr, frame) = out.split_at_mut(vnet::HEADER_LEN);
        let mut h = vnet::Header::new_unchecked(&mut *hdr);
        h.clear();
        if segs > 1 {
            finish_super_frame(frame, &s);
            h.set_flags(vnet::F_NEEDS_CSUM);
            h.set_gso_type(gso::UDP_L4);
            h.set_hdr_len(s.header_len() as u16);
            h.set_gso_size(gso_size as u16);
            h.set_csum_start(s.l4 as u16);
            h.set_csum_offset(udp::field::CHECKSUM.start as u16);
        }
        &self.buf[..total]
    }
}

/// Lengths of the whole super-frame in the IP and UDP headers, the IPv4
/// header checksum, and the UDP checksum field as CHECKSUM_PARTIAL wants
/// it: the folded (not complemented) pseudo-header sum with the whole UDP
/// length, which __udp_gso_segment adjusts per segment.
fn finish_super_frame(frame: &mut [u8], s: &UdpSeg) {
    let ip_len = frame.len() - s.l3;
    let l4_len = frame.len() - s.l4;
    let pseudo = if s.v4 {
        let mut p = ipv4::Packet::new_unchecked(&mut frame[s.l3..]);
        p.set_total_len(ip_len as u16);
        p.fill_checksum();
        checksum::pseudo_header_v4(p.src_addr(), p.dst_addr(), udp::PROTOCOL, l4_len as u32)
    } else {
        let mut p = ipv6::Packet::new_unchecked(&mut frame[s.l3..]);
        p.set_payload_len((ip_len - ipv6::HEADER_LEN) as u16);
        checksum::pseudo_header_v6(p.src_addr(), p.dst_addr(), udp::PROTOCOL, l4_len as u32)
    };
    let mut u = udp::Packet::new_unchecked(&mut frame[s.l4..]);
    u.set_len(l4_len as u16);
    u.set_checksum(pseudo);
}
