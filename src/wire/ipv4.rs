//! IPv4 header (RFC 791), the inner header of a gretap-over-WireGuard packet.
//!
//! `Packet::new_checked` guarantees: at least 20 bytes, version 4, IHL >= 5,
//! the header (with options) and the total length both fit in the buffer.
//! After that no accessor can panic. Bytes past the total length (WireGuard
//! padding, Ethernet trailer) are not part of `payload()`.

use super::bytes::be16;
use std::net::Ipv4Addr;

use super::checksum;
use super::{WireError, WireResult};

pub mod field {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// The fixed header, without options.
pub const HEADER_LEN: usize = 20;
/// IP protocol number of GRE.
pub const PROTO_GRE: u8 = 47;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A zero-copy view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps without checks: only for buffers the caller just sized itself.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> WireResult<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Every length the accessors rely on, and the version.
    pub fn check_len(&self) -> WireResult<()> {
        let b = self.buffer.as_ref();
        let first = *b.first().ok_or(WireError::Truncated)?;
        if first >> 4 != 4 {
            return Err(WireError::Malformed);
        }
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hl = usize::from(first & 0x0f) * 4;
        if hl < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        let total = usize::from(self.total_len());
        if total < hl {
            return Err(WireError::Malformed);
        }
        if hl > b.len() || total > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The former TOS byte: DSCP and ECN.
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT.start)
    }

    pub fn dont_frag(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF.start) & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF.start) & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buffer.as_ref(), field::FLG_OFF.start) & FRAG_OFFSET_MASK) << 3
    }

    /// True for any piece of a fragmented datagram (MF set or offset != 0).
    pub fn is_fragment(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF.start) & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[12], b[13], b[14], b[15])
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = self.buffer.as_ref();
        Ipv4Addr::new(b[16], b[17], b[18], b[19])
    }

    /// Header checksum over the whole header, options included.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(&self.buffer.as_ref()[..self.header_len()])
    }

    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The payload up to the total length (trailing padding excluded).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_be16(&mut self, r: std::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    /// Version 4 and a header length in bytes (a multiple of 4, 20..=60).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    pub fn set_tos(&mut self, v: u8) {
        self.buffer.as_mut()[field::TOS] = v;
    }

    pub fn set_total_len(&mut self, v: u16) {
        self.set_be16(field::LENGTH, v);
    }

    pub fn set_ident(&mut self, v: u16) {
        self.set_be16(field::IDENT, v);
    }

    /// Flags and fragment offset for an unfragmented datagram.
    pub fn set_unfragmented(&mut self, dont_frag: bool) {
        self.set_be16(field::FLG_OFF, if dont_frag { FLAG_DF } else { 0 });
    }

    /// Flags and offset of a fragment we cut: DF clear (a fragment may not
    /// forbid what made it), MF on all but the last, `offset` in bytes (a
    /// multiple of 8; the low bits are dropped).
    pub fn set_fragment(&mut self, more_frags: bool, offset: u16) {
        let mf = if more_frags { FLAG_MF } else { 0 };
        self.set_be16(field::FLG_OFF, mf | ((offset >> 3) & FRAG_OFFSET_MASK));
    }

    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.set_be16(field::CHECKSUM, v);
    }

    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&a.octets());
    }

    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&a.octets());
    }

    /// Computes and stores the header checksum (call after every other field).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = checksum::checksum(&self.buffer.as_ref()[..hl]);
        self.set_checksum(c);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[start..end]
    }
}

/// The fields of an option-less, unfragmented header we originate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: u8,
    pub payload_len: usize,
    pub ttl: u8,
    pub tos: u8,
    pub ident: u16,
    pub dont_frag: bool,
}

impl Repr {
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 20-byte header into the front of `buf`, checksum included.
    /// `Truncated` if `buf` is shorter than 20 bytes, `Malformed` if the
    /// payload length does not fit the 16-bit total length.
    pub fn emit(&self, buf: &mut [u8]) -> WireResult<()> {
        let total =
            u16::try_from(HEADER_LEN + self.payload_len).map_err(|_| WireError::Malformed)?;
        let hdr = buf.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
        let mut p = Packet::new_unchecked(hdr);
        p.set_version_and_header_len(HEADER_LEN);
        p.set_tos(self.tos);
        p.set_total_len(total);
        p.set_ident(self.ident);
        p.set_unfragmented(self.dont_frag);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        p.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::captures;

    #[test]
    fn kernel_ogm_header() {
        let p = Packet::new_checked(&captures::OGM[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.tos(), 0);
        assert_eq!(p.total_len(), 90);
        assert_eq!(p.ident(), 0xe330);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), PROTO_GRE);
        assert_eq!(p.checksum(), 0xcb1a);
        assert!(p.verify_checksum());
        assert_eq!(p.src_addr(), Ipv4Addr::new(198, 19, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(198, 19, 0, 2));
        assert_eq!(p.payload().len(), 70);
        assert_eq!(&p.payload()[..4], &[0x00, 0x00, 0x65, 0x58]);
    }

    /// Every captured inner header verifies, and re-emitting it from its
    /// fields gives the kernel's bytes exactly (checksum included).
    #[test]
    fn emit_reproduces_every_kernel_header() {
        for cap in captures::ALL {
            let p = Packet::new_checked(cap).unwrap();
            assert!(p.verify_checksum());
            let r = Repr {
                src_addr: p.src_addr(),
                dst_addr: p.dst_addr(),
                protocol: p.protocol(),
                payload_len: p.payload().len(),
                ttl: p.ttl(),
                tos: p.tos(),
                ident: p.ident(),
                dont_frag: p.dont_frag(),
            };
            let mut out = [0u8; HEADER_LEN];
            r.emit(&mut out).unwrap();
            assert_eq!(&out[..], &cap[..HEADER_LEN]);
        }
    }

    #[test]
    fn trailing_padding_is_not_payload() {
        let mut v = captures::BATMAN_ICMP.to_vec();
        v.extend_from_slice(&[0; 6]); // WireGuard pads to 16 bytes
        let p = Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.payload().len(), 58 - 20);
    }

    #[test]
    fn rejects_bad_lengths_and_version() {
        let ogm = &captures::OGM[..];
        for n in 0..ogm.len() {
            assert!(Packet::new_checked(&ogm[..n]).is_err(), "len {n}");
        }
        let mut v = ogm.to_vec();
        v[0] = 0x65;
        assert_eq!(
            Packet::new_checked(&v[..]).err(),
            Some(WireError::Malformed)
        );
        v[0] = 0x44; // IHL 4 < 5
        assert_eq!(
            Packet::new_checked(&v[..]).err(),
            Some(WireError::Malformed)
        );
        v[0] = 0x4f; // 60-byte header inside a 90-byte packet: fine
        assert!(Packet::new_checked(&v[..]).is_ok());
        v[0] = 0x45;
        v[2] = 0;
        v[3] = 19; // total length shorter than the header
        assert_eq!(
            Packet::new_checked(&v[..]).err(),
            Some(WireError::Malformed)
        );
        v[3] = 91; // one past the buffer
        assert_eq!(
            Packet::new_checked(&v[..]).err(),
            Some(WireError::Truncated)
        );
    }

    #[test]
    fn options_are_skipped() {
        // 24-byte header with one 4-byte option (NOP x4), 4 bytes of payload.
        let mut b = [0u8; 28];
        b[0] = 0x46;
        b[3] = 28;
        b[20..24].copy_from_slice(&[1, 1, 1, 1]);
        b[24..].copy_from_slice(&[9, 8, 7, 6]);
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.options(), &[1, 1, 1, 1]);
        assert_eq!(p.payload(), &[9, 8, 7, 6]);
    }

    /// Deterministic hostile input: 120k random buffers shaped to reach deep
    /// into the checks, plus every truncation and byte flip of the kernel
    /// captures, through the IPv4, IPv6 and GRE views. Nothing may panic,
    /// and whatever a view accepts must lie inside the buffer.
    #[test]
    fn hostile_buffers_never_panic() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut buf = [0u8; 128];
        let mut accepted = 0usize;
        for i in 0..120_000usize {
            let len = (rnd() % 129) as usize;
            for b in buf.iter_mut() {
                *b = rnd() as u8;
            }
            // Bias towards plausible headers so length checks get exercised.
            buf[0] = [0x45, 0x46, 0x4f, 0x60, 0x41, buf[0]][i % 6];
            if i % 3 == 0 {
                buf[2] = 0;
                buf[3] = (rnd() % 130) as u8;
                buf[4] = 0;
                buf[5] = (rnd() % 90) as u8;
                buf[9] = PROTO_GRE;
            }
            accepted += usize::from(exercise(&buf[..len]));
        }
        assert!(
            accepted > 1000,
            "only {accepted} accepted: the fuzz is too shallow"
        );
        for cap in crate::tunnel::captures::ALL {
            for n in 0..=cap.len() {
                exercise(&cap[..n]);
                exercise(&cap[n..]);
            }
            let mut v = cap.to_vec();
            for at in 0..v.len().min(80) {
                for flip in [0x01u8, 0x0f, 0x80, 0xff] {
                    v[at] ^= flip;
                    exercise(&v);
                    v[at] ^= flip;
                }
            }
        }
    }

    /// Runs every accessor of every view that accepts `b`.
    fn exercise(b: &[u8]) -> bool {
        use crate::wire::{gre, ipv6};
        let mut ok = false;
        if let Ok(p) = Packet::new_checked(b) {
            ok = true;
            let _ = (
                p.version(),
                p.tos(),
                p.ident(),
                p.dont_frag(),
                p.more_frags(),
            );
            let _ = (
                p.frag_offset(),
                p.ttl(),
                p.protocol(),
                p.checksum(),
                p.is_fragment(),
            );
            let _ = (
                p.src_addr(),
                p.dst_addr(),
                p.verify_checksum(),
                p.options().len(),
            );
            assert!(p.header_len() + p.payload().len() <= b.len());
            let _ = gre::Packet::new_checked(p.payload()).map(|g| gre_all(&g));
        }
        if let Ok(p) = ipv6::Packet::new_checked(b) {
            ok = true;
            let _ = (
                p.version(),
                p.traffic_class(),
                p.flow_label(),
                p.next_header(),
            );
            let _ = (p.hop_limit(), p.src_addr(), p.dst_addr());
            assert!(ipv6::HEADER_LEN + p.payload().len() <= b.len());
            let _ = gre::Packet::new_checked(p.payload()).map(|g| gre_all(&g));
        }
        if let Ok(g) = gre::Packet::new_checked(b) {
            gre_all(&g);
        }
        ok
    }

    fn gre_all(g: &crate::wire::gre::Packet<&[u8]>) {
        let _ = (
            g.flags_version(),
            g.version(),
            g.protocol_type(),
            g.checksum(),
        );
        let _ = (g.key(), g.seq(), g.verify_checksum(), g.payload().len());
    }

    #[test]
    fn fragment_fields_roundtrip() {
        let mut v = captures::OGM.to_vec();
        let mut p = Packet::new_checked(&mut v[..]).unwrap();
        p.set_fragment(true, 1416);
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert!(!p.dont_frag() && p.more_frags() && p.is_fragment());
        assert_eq!(p.frag_offset(), 1416);
        p.set_fragment(false, 0xfff8 + 7);
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0xfff8);
        p.set_fragment(false, 0);
        assert!(!p.is_fragment());
    }

    #[test]
    fn fragments_are_recognised() {
        let mut v = captures::OGM.to_vec();
        v[6] = 0x20; // MF
        assert!(Packet::new_checked(&v[..]).unwrap().is_fragment());
        v[6] = 0x00;
        v[7] = 0x01; // offset 8
        let p = Packet::new_checked(&v[..]).unwrap();
        assert!(p.is_fragment());
        assert_eq!(p.frag_offset(), 8);
    }
}
