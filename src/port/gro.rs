//! Coalescing (GRO) toward a TAP with TSO: consecutive in-order segments of
//! one TCP flow become one super-frame, written with one syscall and taken
//! by the kernel as one packet (virtio header with gso_type, gso_size and
//! NEEDS_CSUM).
//!
//! The rules follow what makes the kernel's own GRO safe: identical
//! Ethernet/IP/TCP headers except lengths, IPv4 ID and checksums; only ACK
//! (PSH allowed on the last segment, which closes the super-frame); the
//! sequence number continues exactly; every segment but the last is
//! `gso_size` long; the TCP checksum of every segment is verified first,
//! because the kernel will trust NEEDS_CSUM and check nothing.
//!
//! A `Gro` builds one flow's super-frame; the pool in `tx.rs` holds several
//! (TCP and UDP, all ports) and keeps order within each flow and for
//! anything that cannot be coalesced.

use crate::wire::ethernet::{ethertype, HEADER_LEN as ETH_LEN, VLAN_TAG_LEN};
use crate::wire::vnet::{self, gso};
use crate::wire::{checksum, ipv4, ipv6, tcp};

/// Largest coalesced IP packet: the 16-bit IPv4 total length / IPv6
/// payload length.
pub(crate) const MAX_IP_LEN: usize = 65_535;

/// Buffer of one pending super-frame: header, Ethernet with a tag, IP.
pub const GRO_BUF: usize =
    vnet::HEADER_LEN + ETH_LEN + VLAN_TAG_LEN + MAX_IP_LEN + ipv6::HEADER_LEN;

/// Where a coalescable TCP segment keeps its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSeg {
    v4: bool,
    l3: usize,
    l4: usize,
    hdr_end: usize,
    seq: u32,
    flags: u8,
}

impl TcpSeg {
    /// Ethernet, IP and TCP headers together.
    pub fn header_len(&self) -> usize {
        self.hdr_end
    }

    fn payload_len(&self, frame_len: usize) -> usize {
        frame_len - self.hdr_end
    }
}

pub(crate) use crate::wire::ethernet::l3_offset;

/// A TCP segment we may coalesce: IPv4 (unfragmented) or IPv6 without
/// extension headers, lengths exact (no Ethernet padding), payload, only
/// ACK or ACK|PSH, and correct IPv4 and TCP checksums.
pub fn classify(frame: &[u8]) -> Option<TcpSeg> {
    let (l3, et) = l3_offset(frame)?;
    let ip = frame.get(l3..)?;
    let (v4, l4, pseudo) = match et {
        ethertype::IPV4 => {
            let p = ipv4::Packet::new_checked(ip).ok()?;
            if usize::from(p.total_len()) != ip.len()
                || p.is_fragment()
                || p.protocol() != tcp::PROTOCOL
                || !p.verify_checksum()
            {
                return None;
            }
            let len = (ip.len() - p.header_len()) as u32;
            let ps = checksum::pseudo_header_v4(p.src_addr(), p.dst_addr(), tcp::PROTOCOL, len);
            (true, l3 + p.header_len(), ps)
        }
        ethertype::IPV6 => {
            let p = ipv6::Packet::new_checked(ip).ok()?;
            if usize::from(p.payload_len()) + ipv6::HEADER_LEN != ip.len()
                || p.next_header() != tcp::PROTOCOL
            {
                return None;
            }
            let len = u32::from(p.payload_len());
            let ps = checksum::pseudo_header_v6(p.src_addr(), p.dst_addr(), tcp::PROTOCOL, len);
            (false, l3 + ipv6::HEADER_LEN, ps)
        }
        _ => return None,
    };
    let t = tcp::Packet::new_checked(frame.get(l4..)?).ok()?;
    let f = t.flags();
    if f & !tcp::flags::PSH != tcp::flags::ACK || t.payload().is_empty() {
        return None;
    }
    let body = frame.get(l4..)?;
    if checksum::combine(&[pseudo, checksum::sum(body)]) != 0xffff {
        return None;
    }
    Some(TcpSeg {
        v4,
        l3,
        l4,
        hdr_end: l4 + t.header_len(),
        seq: t.seq_number(),
        flags: f,
    })
}

/// One pending super-frame of a port.
#[derive(Debug)]
pub struct Gro {
    /// Virtio header, then the frame.
    buf: Box<[u8]>,
    /// Frame bytes in `buf` after the header; 0 when nothing is pending.
    len: usize,
    seg: TcpSeg,
    gso_size: usize,
    segs: usize,
    next_seq: u32,
    /// A short segment or PSH ended it: the next one starts a new frame.
    closed: bool,
}

/// Header bytes that must be equal for two segments to merge, as ranges
/// relative to (l3, l4): everything but lengths, IPv4 ID, checksums, the
/// TCP sequence number and flags.
fn same_headers(a: &[u8], b: &[u8], s: &TcpSeg) -> bool {
    let eq = |r: std::ops::Range<usize>| same_range(a, b, r);
    let (l4, end) = (s.l4, s.hdr_end);
    same_ip_and_ports(a, b, s.v4, s.l3, l4)
        && eq(l4 + 8..l4 + 13)
        && eq(l4 + 14..l4 + 16)
        && eq(l4 + 18..end)
}

/// `a` and `b` both hold `r`, with the same bytes.
fn same_range(a: &[u8], b: &[u8], r: std::ops::Range<usize>) -> bool {
    a.get(r.clone()).is_some() && a.get(r.clone()) == b.get(r)
}

/// Ethernet (and tag) and IP headers alike but for what coalescing
/// rewrites (lengths, IPv4 ID and checksum), and the same L4 ports: the
/// header rule TCP and UDP coalescing share.
pub(crate) fn same_ip_and_ports(a: &[u8], b: &[u8], v4: bool, l3: usize, l4: usize) -> bool {
    let eq = |r: std::ops::Range<usize>| same_range(a, b, r);
    let ip_ok = if v4 {
        eq(0..l3 + 2) && eq(l3 + 6..l3 + 10) && eq(l3 + 12..l4)
    } else {
        eq(0..l3 + 4) && eq(l3 + 6..l4)
    };
    ip_ok && eq(l4..l4 + 4)
}

/// The flow key of two frames laid out alike (`l3`, `l4`): Ethernet header
/// (and tag), IP addresses, L4 ports. Shared by TCP and UDP coalescing.
pub(crate) fn same_flow_key(a: &[u8], b: &[u8], v4: bool, l3: usize, l4: usize) -> bool {
    let eq = |r: std::ops::Range<usize>| same_range(a, b, r);
    let addrs = if v4 {
        l3 + 12..l3 + 20
    } else {
        l3 + 8..l3 + 40
    };
    eq(0..l3) && eq(addrs) && eq(l4..l4 + 4)
}

impl Default for Gro {
    fn default() -> Gro {
        Gro::new()
    }
}

impl Gro {
    pub fn new() -> Gro {
        Gro::with_buf(vec![0u8; GRO_BUF].into_boxed_slice())
    }

    /// No buffer (an empty boxed slice does not allocate).
    fn empty() -> Gro {
        Gro {
            buf: Box::default(),
            len: 0,
            seg: TcpSeg {
                v4: true,
                l3: 0,
                l4: 0,
                hdr_end: 0,
                seq: 0,
                flags: 0,
            },
            gso_size: 0,
            segs: 0,
            next_seq: 0,
            closed: true,
        }
    }

    /// A coalescer on a buffer given up by another one ([`Gro::take_buf`]),
    /// so the pool changes a slot's protocol without allocating.
    pub(crate) fn with_buf(buf: Box<[u8]>) -> Gro {
        Gro {
            buf,
            ..Gro::empty()
        }
    }

    /// Gives up the buffer; whatever was pending is forgotten and this
    /// coalescer must not be used again.
    pub(crate) fn take_buf(&mut self) -> Box<[u8]> {
        self.len = 0;
        self.segs = 0;
        self.closed = true;
        std::mem::take(&mut self.buf)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `frame`: merged into the pending super-frame, or starting one
    /// when none is pending. False when it is not a coalescable segment or
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

    /// True when `frame` belongs to the pending super-frame's flow: same
    /// Ethernet header, IP addresses and TCP ports.
    pub fn same_flow(&self, frame: &[u8], s: &TcpSeg) -> bool {
        let p = &self.seg;
        if self.len == 0 || s.v4 != p.v4 || s.l3 != p.l3 || s.l4 != p.l4 {
            return false;
        }
        let head = &self.buf[vnet::HEADER_LEN..vnet::HEADER_LEN + self.len];
        same_flow_key(head, frame, s.v4, s.l3, s.l4)
    }

    /// Appends `frame` (classified as `s`) when it continues the pending
    /// super-frame; false when it does not (nothing changed).
    pub fn append(&mut self, frame: &[u8], s: &TcpSeg) -> bool {
        let p = &self.seg;
        let plen = s.payload_len(frame.len());
        if self.len == 0
            || self.closed
            || s.hdr_end != p.hdr_end
            || s.l3 != p.l3
            || s.l4 != p.l4
            || s.v4 != p.v4
            || s.seq != self.next_seq
            || plen > self.gso_size
            || self.len + plen - p.l3 > MAX_IP_LEN
        {
            return false;
        }
        let head = &self.buf[vnet::HEADER_LEN..vnet::HEADER_LEN + self.len];
        if !same_headers(head, frame, s) {
            return false;
        }
        let at = vnet::HEADER_LEN + self.len;
        self.buf[at..at + plen].copy_from_slice(&frame[s.hdr_end..]);
        self.len += plen;
        self.segs += 1;
        self.next_seq = self.next_seq.wrapping_add(plen as u32);
        if s.flags & tcp::flags::PSH != 0 {
            // The kernel merges PSH into the head too (tcp_gro_receive).
            let f = vnet::HEADER_LEN + p.l4 + tcp::field::FLAGS;
            self.buf[f] |= tcp::flags::PSH;
            self.closed = true;
        }
        if plen < self.gso_size {
            self.closed = true;
        }
        true
    }

    /// Starts a new super-frame with `frame` (whatever was pending is
    /// forgotten: take it first). False when the frame is too long to be
    /// one (longer than an IP packet can be).
    pub fn start(&mut self, frame: &[u8], s: &TcpSeg) -> bool {
        let plen = s.payload_len(frame.len());
        let Some(dst) = self
            .buf
            .get_mut(vnet::HEADER_LEN..vnet::HEADER_LEN + frame.len())
        else {
            return false;
        };
        dst.copy_from_slice(frame);
        self.len = frame.len();
        self.seg = *s;
        self.gso_size = plen;
        self.segs = 1;
        self.next_seq = s.seq.wrapping_add(plen as u32);
        self.closed = s.flags & tcp::flags::PSH != 0;
        true
    }

    /// Segments merged in the pending frame.
    pub fn segments(&self) -> usize {
        self.segs
    }

    /// Finalises the pending frame and returns virtio header + frame, ready
    /// for one write; it is forgotten (the buffer stays).
    pub fn take(&mut self) -> &[u8] {
        let s = self.seg;
        let total = vnet::HEADER_LEN + self.len;
        if self.buf.len() < total {
            // Only after take_buf: nothing is pending, nothing to write.
            return &[];
        }
        let (hdr, frame) = self.buf[..total].split_at_mut(vnet::HEADER_LEN);
        let mut h = vnet::Header::new_unchecked(&mut *hdr);
        h.clear();
        if self.segs > 1 {
            let ip_len = frame.len() - s.l3;
            let l4_len = (frame.len() - s.l4) as u32;
            let pseudo = if s.v4 {
                let mut p = ipv4::Packet::new_unchecked(&mut frame[s.l3..]);
                p.set_total_len(ip_len as u16);
                p.fill_checksum();
                checksum::pseudo_header_v4(p.src_addr(), p.dst_addr(), tcp::PROTOCOL, l4_len)
            } else {
                let mut p = ipv6::Packet::new_unchecked(&mut frame[s.l3..]);
                p.set_payload_len((ip_len - ipv6::HEADER_LEN) as u16);
                checksum::pseudo_header_v6(p.src_addr(), p.dst_addr(), tcp::PROTOCOL, l4_len)
            };
            // CHECKSUM_PARTIAL convention: the field holds the folded
            // pseudo-header sum; the kernel adds the rest if it must.
            tcp::Packet::new_unchecked(&mut frame[s.l4..]).set_checksum(pseudo);
            h.set_flags(vnet::F_NEEDS_CSUM);
            h.set_gso_type(if s.v4 { gso::TCPV4 } else { gso::TCPV6 });
            h.set_hdr_len(s.hdr_end as u16);
            h.set_gso_size(self.gso_size as u16);
            h.set_csum_start(s.l4 as u16);
            h.set_csum_offset(tcp::field::CHECKSUM.start as u16);
        }
        self.len = 0;
        self.segs = 0;
        self.closed = true;
        &self.buf[..total]
    }
}
