//! UDP header (RFC 768): what USO segmentation touches.

use super::bytes::be16;
use super::{WireError, WireResult};

pub mod field {
    use std::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

pub const HEADER_LEN: usize = 8;
/// IP protocol number.
pub const PROTOCOL: u8 = 17;

#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Checks the 8-byte header only; the length field is for the caller to
    /// compare with what carries it (IP length, GSO total).
    pub fn new_checked(buffer: T) -> WireResult<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        if p.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(p)
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// The length field: header plus payload.
    pub fn length(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_len(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let mut b = [0, 53, 0x13, 0x88, 0, 12, 0xab, 0xcd, 1, 2, 3, 4];
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.length()), (53, 5000, 12));
        assert_eq!(p.checksum(), 0xabcd);
        p.set_len(9);
        p.set_checksum(1);
        assert_eq!((p.length(), p.checksum()), (9, 1));
        assert!(Packet::new_checked(&b[..7]).is_err());
    }
}
