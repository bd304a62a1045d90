//! Unicast-class packets (0x40..0x44): UNICAST, UNICAST_4ADDR, UNICAST_FRAG,
//! ICMP and UNICAST_TVLV. All start with type, version, ttl; the first four
//! carry the destination originator at offset 4.

use super::{
    be16_at, mac_at, packet_type, set_be16_at, set_mac_at, set_u8_at, u8_at, COMPAT_VERSION,
};
use crate::wire::{MacAddr, WireError, WireResult};

/// Shared check: minimum length, expected type, compat version.
fn check(buf: &[u8], min: usize, ptype: u8) -> WireResult<()> {
    if buf.len() < min {
        return Err(WireError::Truncated);
    }
    if u8_at(buf, 0) != ptype {
        return Err(WireError::Malformed);
    }
    if u8_at(buf, 1) != COMPAT_VERSION {
        return Err(WireError::Unsupported);
    }
    Ok(())
}

/// Writes type and version, the bytes every header starts with.
fn init(buf: &mut [u8], ptype: u8) {
    set_u8_at(buf, 0, ptype);
    set_u8_at(buf, 1, COMPAT_VERSION);
}

macro_rules! view {
    ($name:ident, $len:expr, $ptype:expr) => {
        #[derive(Debug, Clone)]
        pub struct $name<T: AsRef<[u8]>> {
            buffer: T,
        }
        impl<T: AsRef<[u8]>> $name<T> {
            pub const HEADER_LEN: usize = $len;
            pub fn new_unchecked(buffer: T) -> Self {
                $name { buffer }
            }
            pub fn new_checked(buffer: T) -> WireResult<Self> {
                let p = Self::new_unchecked(buffer);
                p.check_len()?;
                Ok(p)
            }
            pub fn into_inner(self) -> T {
                self.buffer
            }
            pub fn ttl(&self) -> u8 {
                u8_at(self.buffer.as_ref(), 2)
            }
            /// Destination originator (offset 4 in every unicast-class header).
            pub fn dest(&self) -> MacAddr {
                mac_at(self.buffer.as_ref(), 4)
            }
        }
        impl<T: AsRef<[u8]> + AsMut<[u8]>> $name<T> {
            pub fn init_header(&mut self) {
                init(self.buffer.as_mut(), $ptype)
            }
            pub fn set_ttl(&mut self, v: u8) {
                set_u8_at(self.buffer.as_mut(), 2, v)
            }
            pub fn set_dest(&mut self, v: MacAddr) {
                set_mac_at(self.buffer.as_mut(), 4, v)
            }
        }
    };
}

view!(UnicastPacket, 10, packet_type::UNICAST);
view!(Unicast4AddrPacket, 18, packet_type::UNICAST_4ADDR);
view!(FragPacket, 20, packet_type::UNICAST_FRAG);
view!(IcmpPacket, 20, packet_type::ICMP);
view!(UnicastTvlvPacket, 20, packet_type::UNICAST_TVLV);

impl<T: AsRef<[u8]>> UnicastPacket<T> {
    pub fn check_len(&self) -> WireResult<()> {
        check(self.buffer.as_ref(), Self::HEADER_LEN, packet_type::UNICAST)
    }
    /// TT version of the destination as the sender knew it.
    pub fn ttvn(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 3)
    }
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(Self::HEADER_LEN..).unwrap_or(&[])
    }
}
impl<T: AsRef<[u8]> + AsMut<[u8]>> UnicastPacket<T> {
    pub fn set_ttvn(&mut self, v: u8) {
        set_u8_at(self.buffer.as_mut(), 3, v)
    }
}

impl<T: AsRef<[u8]>> Unicast4AddrPacket<T> {
    pub fn check_len(&self) -> WireResult<()> {
        check(
            self.buffer.as_ref(),
            Self::HEADER_LEN,
            packet_type::UNICAST_4ADDR,
        )
    }
    pub fn ttvn(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 3)
    }
    /// Originator that sent it.
    pub fn src(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), 10)
    }
    pub fn subtype(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 16)
    }
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(Self::HEADER_LEN..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]>> FragPacket<T> {
    pub fn check_len(&self) -> WireResult<()> {
        check(
            self.buffer.as_ref(),
            Self::HEADER_LEN,
            packet_type::UNICAST_FRAG,
        )
    }
    /// Fragment number: the high nibble of byte 3 (kernel bitfield
    /// `reserved:1, priority:3, no:4` on little-endian, i.e. LSB first).
    pub fn no(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 3) >> 4
    }
    pub fn priority(&self) -> u8 {
        (u8_at(self.buffer.as_ref(), 3) >> 1) & 0x07
    }
    pub fn orig(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), 10)
    }
    pub fn seqno(&self) -> u16 {
        be16_at(self.buffer.as_ref(), 16)
    }
    /// Size of the reassembled unicast packet.
    pub fn total_size(&self) -> u16 {
        be16_at(self.buffer.as_ref(), 18)
    }
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(Self::HEADER_LEN..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    pub fn check_len(&self) -> WireResult<()> {
        check(self.buffer.as_ref(), Self::HEADER_LEN, packet_type::ICMP)
    }
    pub fn msg_type(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 3)
    }
    pub fn orig(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), 10)
    }
    pub fn uid(&self) -> u8 {
        u8_at(self.buffer.as_ref(), 16)
    }
    pub fn seqno(&self) -> u16 {
        be16_at(self.buffer.as_ref(), 18)
    }
}

impl<T: AsRef<[u8]>> UnicastTvlvPacket<T> {
    /// The header and the announced TVLV region must fit.
    pub fn check_len(&self) -> WireResult<()> {
        check(
            self.buffer.as_ref(),
            Self::HEADER_LEN,
            packet_type::UNICAST_TVLV,
        )?;
        if self.buffer.as_ref().len() < Self::HEADER_LEN + usize::from(self.tvlv_len()) {
            return Err(WireError::Truncated);
        }
        Ok(())
    }
    pub fn src(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), 10)
    }
    pub fn tvlv_len(&self) -> u16 {
        be16_at(self.buffer.as_ref(), 16)
    }
    pub fn tvlv(&self) -> &[u8] {
        let end = Self::HEADER_LEN + usize::from(self.tvlv_len());
        self.buffer
            .as_ref()
            .get(Self::HEADER_LEN..end)
            .unwrap_or(&[])
    }
}
impl<T: AsRef<[u8]> + AsMut<[u8]>> UnicastTvlvPacket<T> {
    pub fn set_src(&mut self, v: MacAddr) {
        set_mac_at(self.buffer.as_mut(), 10, v)
    }
    /// Also zeroes `reserved` and `align`.
    pub fn set_tvlv_len(&mut self, v: u16) {
        let b = self.buffer.as_mut();
        set_u8_at(b, 3, 0);
        set_be16_at(b, 16, v);
        set_be16_at(b, 18, 0);
    }
}
