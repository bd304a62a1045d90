//! TCP header (RFC 9293): just what segmentation and coalescing touch.
//!
//! `Packet::new_checked` guarantees 20 bytes, a data offset >= 5 and the
//! whole header (with options) in the buffer; after it no accessor panics.

use super::bytes::{be16, be32};
use super::{WireError, WireResult};

pub mod field {
    use std::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    /// Data offset in the high nibble.
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// The header without options.
pub const HEADER_LEN: usize = 20;
/// Longest header: data offset 15.
pub const MAX_HEADER_LEN: usize = 60;
/// IP protocol number.
pub const PROTOCOL: u8 = 6;

pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> WireResult<Packet<T>> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    pub fn check_len(&self) -> WireResult<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if hl > b.len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ_NUM.start)
    }

    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK_NUM.start)
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    pub fn window(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WINDOW.start)
    }

    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The options (empty without).
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_seq_number(&mut self, v: u32) {
        self.buffer.as_mut()[field::SEQ_NUM].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN with MSS and window-scale options, as Linux sends one.
    #[test]
    fn parses_header_with_options() {
        let mut b = [0u8; 32];
        b[0..2].copy_from_slice(&40000u16.to_be_bytes());
        b[2..4].copy_from_slice(&5201u16.to_be_bytes());
        b[4..8].copy_from_slice(&0x0102_0304u32.to_be_bytes());
        b[12] = 8 << 4;
        b[13] = flags::SYN;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.dst_port(), 5201);
        assert_eq!(p.seq_number(), 0x0102_0304);
        assert_eq!(p.header_len(), 32);
        assert_eq!(p.options().len(), 12);
        assert!(p.payload().is_empty());
        p.set_seq_number(7);
        p.set_flags(flags::ACK);
        assert_eq!(p.seq_number(), 7);
        assert_eq!(p.flags(), flags::ACK);
    }

    #[test]
    fn refuses_bad_offsets() {
        let mut b = [0u8; 24];
        b[12] = 4 << 4;
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            WireError::Malformed
        );
        b[12] = 7 << 4;
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            Packet::new_checked(&b[..10]).unwrap_err(),
            WireError::Truncated
        );
        b[12] = 6 << 4;
        assert!(Packet::new_checked(&b[..]).is_ok());
    }
}
