//! BATMAN IV originator message (`struct batadv_ogm_packet`, 24 bytes plus
//! `tvlv_len` bytes of TVLV containers). The kernel aggregates several OGMs
//! back to back into one Ethernet payload; [`OgmIter`] walks such a run.

use super::{
    be16_at, be32_at, mac_at, packet_type, set_be16_at, set_be32_at, set_mac_at, set_u8_at, u8_at,
    COMPAT_VERSION,
};
use crate::wire::{MacAddr, WireError, WireResult};

mod field {
    pub const PACKET_TYPE: usize = 0;
    pub const VERSION: usize = 1;
    pub const TTL: usize = 2;
    pub const FLAGS: usize = 3;
    pub const SEQNO: usize = 4;
    pub const ORIG: usize = 8;
    pub const PREV_SENDER: usize = 14;
    pub const RESERVED: usize = 20;
    pub const TQ: usize = 21;
    pub const TVLV_LEN: usize = 22;
    pub const TVLV: usize = 24;
}

/// `enum batadv_iv_flags`.
pub mod flags {
    pub const NOT_BEST_NEXT_HOP: u8 = 1 << 0;
    pub const PRIMARIES_FIRST_HOP: u8 = 1 << 1;
    pub const DIRECTLINK: u8 = 1 << 2;
}

/// `BATADV_OGM_HLEN`.
pub const HEADER_LEN: usize = field::TVLV;

/// A view of one OGM at the start of `buffer` (which may hold more OGMs after it).
#[derive(Debug, Clone)]
pub struct OgmPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> OgmPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        OgmPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> WireResult<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The fixed header and the TVLV region it announces must fit; type and
    /// version must be IV_OGM / 15.
    pub fn check_len(&self) -> WireResult<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN || b.len() < self.total_len() {
            return Err(WireError::Truncated);
        }
        if self.packet_type() != packet_type::IV_OGM {
            return Err(WireError::Malformed);
        }
        if self.version() != COMPAT_VERSION {
            return Err(WireError::Unsupported);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
    pub fn packet_type(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::PACKET_TYPE)
    }
    pub fn version(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::VERSION)
    }
    pub fn ttl(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::TTL)
    }
    pub fn flags(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::FLAGS)
    }
    pub fn seqno(&self) -> u32 {
        be32_at(self.buffer.as_ref(), field::SEQNO)
    }
    pub fn orig(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), field::ORIG)
    }
    pub fn prev_sender(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), field::PREV_SENDER)
    }
    pub fn tq(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::TQ)
    }
    pub fn tvlv_len(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::TVLV_LEN)
    }
    /// Header plus TVLVs: where the next aggregated OGM starts.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.tvlv_len())
    }
    /// The TVLV region (empty if the buffer is shorter than announced).
    pub fn tvlv(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(field::TVLV..self.total_len())
            .unwrap_or(&[])
    }
    /// This OGM alone, without what follows it in an aggregate.
    pub fn as_bytes(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        b.get(..self.total_len()).unwrap_or(b)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> OgmPacket<T> {
    pub fn set_packet_type(&mut self, v: u8) {
        set_u8_at(self.buffer.as_mut(), field::PACKET_TYPE, v)
    }
    pub fn set_version(&mut self, v: u8) {
        set_u8_at(self.buffer.as_mut(), field::VERSION, v)
    }
    pub fn set_ttl(&mut self, v: u8) {
        set_u8_at(self.buffer.as_mut(), field::TTL, v)
    }
    pub fn set_flags(&mut self, v: u8) {
        set_u8_at(self.buffer.as_mut(), field::FLAGS, v)
    }
    pub fn set_seqno(&mut self, v: u32) {
        set_be32_at(self.buffer.as_mut(), field::SEQNO, v)
    }
    pub fn set_orig(&mut self, v: MacAddr) {
        set_mac_at(self.buffer.as_mut(), field::ORIG, v)
    }
    pub fn set_prev_sender(&mut self, v: MacAddr) {
        set_mac_at(self.buffer.as_mut(), field::PREV_SENDER, v)
    }
    pub fn set_reserved(&mut self, v: u8) {
        set_u8_at(self.buffer.as_mut(), field::RESERVED, v)
    }
    pub fn set_tq(&mut self, v: u8) {
        set_u8_at(self.buffer.as_mut(), field::TQ, v)
    }
    pub fn set_tvlv_len(&mut self, v: u16) {
        set_be16_at(self.buffer.as_mut(), field::TVLV_LEN, v)
    }
    pub fn tvlv_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        self.buffer
            .as_mut()
            .get_mut(field::TVLV..end)
            .unwrap_or(&mut [])
    }
}

/// Walks an aggregate of OGMs. Yields `Err` once and stops when the rest of
/// the buffer is not a valid OGM (the kernel's `batadv_iv_ogm_aggr_packet`
/// stops the same way: a trailing fragment is ignored, never read past).
pub struct OgmIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> OgmIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        OgmIter {
            rest: buf,
            failed: false,
        }
    }
}

impl<'a> Iterator for OgmIter<'a> {
    type Item = WireResult<OgmPacket<&'a [u8]>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        match OgmPacket::new_checked(self.rest) {
            Ok(p) => {
                let len = p.total_len();
                let (this, rest) = self.rest.split_at(len.min(self.rest.len()));
                self.rest = rest;
                Some(Ok(OgmPacket::new_unchecked(this)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Writes an OGM header with `tvlv` appended into a new buffer.
/// (Allocation is fine here: OGMs are control traffic, once per interval.)
#[allow(clippy::too_many_arguments)]
pub fn emit(
    out: &mut Vec<u8>,
    ttl: u8,
    flags: u8,
    seqno: u32,
    orig: MacAddr,
    prev_sender: MacAddr,
    tq: u8,
    tvlv: &[u8],
) {
    let start = out.len();
    out.resize(start + HEADER_LEN, 0);
    let tvlv_len = u16::try_from(tvlv.len()).unwrap_or(0);
    if let Some(hdr) = out.get_mut(start..) {
        let mut p = OgmPacket::new_unchecked(hdr);
        p.set_packet_type(packet_type::IV_OGM);
        p.set_version(COMPAT_VERSION);
        p.set_ttl(ttl);
        p.set_flags(flags);
        p.set_seqno(seqno);
        p.set_orig(orig);
        p.set_prev_sender(prev_sender);
        p.set_reserved(0);
        p.set_tq(tq);
        p.set_tvlv_len(tvlv_len);
    }
    out.extend_from_slice(tvlv.get(..usize::from(tvlv_len)).unwrap_or(&[]));
}
