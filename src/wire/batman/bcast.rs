//! Broadcast packet (`struct batadv_bcast_packet`, 14 bytes + the client frame).

use super::{
    be32_at, mac_at, packet_type, set_be32_at, set_mac_at, set_u8_at, u8_at, COMPAT_VERSION,
};
use crate::wire::{MacAddr, WireError, WireResult};

mod field {
    pub const PACKET_TYPE: usize = 0;
    pub const VERSION: usize = 1;
    pub const TTL: usize = 2;
    pub const RESERVED: usize = 3;
    pub const SEQNO: usize = 4;
    pub const ORIG: usize = 8;
    pub const PAYLOAD: usize = 14;
}

pub const HEADER_LEN: usize = field::PAYLOAD;

#[derive(Debug, Clone)]
pub struct BcastPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> BcastPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        BcastPacket { buffer }
    }
    pub fn new_checked(buffer: T) -> WireResult<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    pub fn check_len(&self) -> WireResult<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.packet_type() != packet_type::BCAST {
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
    pub fn seqno(&self) -> u32 {
        be32_at(self.buffer.as_ref(), field::SEQNO)
    }
    pub fn orig(&self) -> MacAddr {
        mac_at(self.buffer.as_ref(), field::ORIG)
    }
    /// The client's Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(field::PAYLOAD..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> BcastPacket<T> {
    pub fn set_ttl(&mut self, v: u8) {
        set_u8_at(self.buffer.as_mut(), field::TTL, v)
    }
    pub fn set_seqno(&mut self, v: u32) {
        set_be32_at(self.buffer.as_mut(), field::SEQNO, v)
    }
    pub fn set_orig(&mut self, v: MacAddr) {
        set_mac_at(self.buffer.as_mut(), field::ORIG, v)
    }
    /// Fills type, version and the reserved byte.
    pub fn init_header(&mut self) {
        let b = self.buffer.as_mut();
        set_u8_at(b, field::PACKET_TYPE, packet_type::BCAST);
        set_u8_at(b, field::VERSION, COMPAT_VERSION);
        set_u8_at(b, field::RESERVED, 0);
    }
}
