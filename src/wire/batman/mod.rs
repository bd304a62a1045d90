//! batman-adv packet formats, compat version 15, as laid out in the Linux
//! header `include/uapi/linux/batadv_packet.h` (all structs `pack(2)`,
//! multi-byte fields big endian).
//!
//! Every view follows the smoltcp `wire` pattern: `new_unchecked`,
//! `new_checked` (runs `check_len`), getters that cannot panic after a
//! successful check, setters for mutable buffers. Nothing here allocates.

pub mod bcast;
pub mod ogm;
pub mod tvlv;
pub mod unicast;

#[cfg(test)]
pub(crate) mod tests;

pub use bcast::BcastPacket;
pub use ogm::{OgmIter, OgmPacket};
pub use tvlv::{RoamAdv, TtChange, TtData, TvlvHdr, TvlvIter};
pub use unicast::{FragPacket, IcmpPacket, Unicast4AddrPacket, UnicastPacket, UnicastTvlvPacket};

use super::{MacAddr, WireError, WireResult};

/// Ethertype of batman-adv frames.
pub const ETHERTYPE_BATADV: u16 = 0x4305;
/// `BATADV_COMPAT_VERSION`: a kernel drops every other version.
pub const COMPAT_VERSION: u8 = 15;

/// `enum batadv_packettype`.
pub mod packet_type {
    pub const IV_OGM: u8 = 0x00;
    pub const BCAST: u8 = 0x01;
    pub const CODED: u8 = 0x02;
    pub const ELP: u8 = 0x03;
    pub const OGM2: u8 = 0x04;
    pub const MCAST: u8 = 0x05;
    pub const UNICAST: u8 = 0x40;
    pub const UNICAST_FRAG: u8 = 0x41;
    pub const UNICAST_4ADDR: u8 = 0x42;
    pub const ICMP: u8 = 0x43;
    pub const UNICAST_TVLV: u8 = 0x44;
}

/// `enum batadv_subtype` of UNICAST_4ADDR.
pub mod subtype {
    pub const DATA: u8 = 0x01;
    pub const DAT_DHT_GET: u8 = 0x02;
    pub const DAT_DHT_PUT: u8 = 0x03;
    pub const DAT_CACHE_REPLY: u8 = 0x04;
}

/// Header shared by every batman-adv packet except ELP: type, version, ttl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommonHeader {
    pub packet_type: u8,
    pub version: u8,
    pub ttl: u8,
}

impl CommonHeader {
    pub const LEN: usize = 3;

    /// Reads the common header; a version other than 15 is `Unsupported`
    /// (the kernel drops those too, `batadv_check_management_packet`).
    pub fn parse(buf: &[u8]) -> WireResult<CommonHeader> {
        match buf.get(..Self::LEN) {
            Some(&[packet_type, version, ttl]) => {
                if version != COMPAT_VERSION {
                    return Err(WireError::Unsupported);
                }
                Ok(CommonHeader {
                    packet_type,
                    version,
                    ttl,
                })
            }
            _ => Err(WireError::Truncated),
        }
    }
}

/// Reads a MAC at `off`; callers have checked the length already, so a
/// short buffer only yields the zero address instead of a panic.
pub(crate) fn mac_at(buf: &[u8], off: usize) -> MacAddr {
    buf.get(off..)
        .and_then(MacAddr::from_bytes)
        .unwrap_or_default()
}

pub(crate) fn set_mac_at(buf: &mut [u8], off: usize, mac: MacAddr) {
    if let Some(s) = buf.get_mut(off..off + 6) {
        s.copy_from_slice(mac.as_bytes());
    }
}

pub(crate) use crate::wire::bytes::{be16 as be16_at, be32 as be32_at};

pub(crate) fn u8_at(buf: &[u8], off: usize) -> u8 {
    buf.get(off).copied().unwrap_or(0)
}

pub(crate) fn set_u8_at(buf: &mut [u8], off: usize, v: u8) {
    if let Some(b) = buf.get_mut(off) {
        *b = v;
    }
}

pub(crate) fn set_be16_at(buf: &mut [u8], off: usize, v: u16) {
    if let Some(s) = buf.get_mut(off..off + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

pub(crate) fn set_be32_at(buf: &mut [u8], off: usize, v: u32) {
    if let Some(s) = buf.get_mut(off..off + 4) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}
