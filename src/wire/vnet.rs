//! `struct virtio_net_hdr_v1` (virtio 1.x, section 5.1.6), the 12-byte
//! header a TAP with IFF_VNET_HDR and TUNSETVNETHDRSZ 12 puts before every
//! frame. Little-endian (virtio 1.x; the TAP is set to LE explicitly).
//!
//! Reading it tells whether the kernel handed over a GSO super-frame
//! (`gso_type`, `gso_size`) and whether the L4 checksum is still to be
//! completed (`NEEDS_CSUM` at `csum_start` + `csum_offset`). Writing one lets
//! us hand the kernel a coalesced super-frame.

use super::{WireError, WireResult};

pub mod field {
    use std::ops::Range;
    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: Range<usize> = 2..4;
    pub const GSO_SIZE: Range<usize> = 4..6;
    pub const CSUM_START: Range<usize> = 6..8;
    pub const CSUM_OFFSET: Range<usize> = 8..10;
    pub const NUM_BUFFERS: Range<usize> = 10..12;
}

/// The v1 header with `num_buffers`; what TUNSETVNETHDRSZ is set to.
pub const HEADER_LEN: usize = 12;

/// `flags`.
pub const F_NEEDS_CSUM: u8 = 1;
pub const F_DATA_VALID: u8 = 2;

/// `gso_type`.
pub mod gso {
    pub const NONE: u8 = 0;
    pub const TCPV4: u8 = 1;
    /// UFO (IP fragmentation of UDP): never enabled here.
    pub const UDP: u8 = 3;
    pub const TCPV6: u8 = 4;
    /// USO (UDP segmentation, kernel >= 6.2).
    pub const UDP_L4: u8 = 5;
    /// Or-ed into the type when the super-frame has CWR and needs TSO_ECN.
    pub const ECN: u8 = 0x80;
}

#[derive(Debug, Clone)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    pub const fn new_unchecked(buffer: T) -> Header<T> {
        Header { buffer }
    }

    pub fn new_checked(buffer: T) -> WireResult<Header<T>> {
        let h = Self::new_unchecked(buffer);
        if h.buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(h)
    }

    fn le16(&self, r: std::ops::Range<usize>) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_le_bytes([b[r.start], b[r.start + 1]])
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    pub fn needs_csum(&self) -> bool {
        self.flags() & F_NEEDS_CSUM != 0
    }

    pub fn gso_type(&self) -> u8 {
        self.buffer.as_ref()[field::GSO_TYPE]
    }

    pub fn hdr_len(&self) -> u16 {
        self.le16(field::HDR_LEN)
    }

    pub fn gso_size(&self) -> u16 {
        self.le16(field::GSO_SIZE)
    }

    pub fn csum_start(&self) -> u16 {
        self.le16(field::CSUM_START)
    }

    pub fn csum_offset(&self) -> u16 {
        self.le16(field::CSUM_OFFSET)
    }

    pub fn num_buffers(&self) -> u16 {
        self.le16(field::NUM_BUFFERS)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    fn set_le16(&mut self, r: std::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_le_bytes());
    }

    /// All zero: a plain frame whose checksums are complete.
    pub fn clear(&mut self) {
        self.buffer.as_mut()[..HEADER_LEN].fill(0);
    }

    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }

    pub fn set_gso_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::GSO_TYPE] = v;
    }

    pub fn set_hdr_len(&mut self, v: u16) {
        self.set_le16(field::HDR_LEN, v);
    }

    pub fn set_gso_size(&mut self, v: u16) {
        self.set_le16(field::GSO_SIZE, v);
    }

    pub fn set_csum_start(&mut self, v: u16) {
        self.set_le16(field::CSUM_START, v);
    }

    pub fn set_csum_offset(&mut self, v: u16) {
        self.set_le16(field::CSUM_OFFSET, v);
    }

    pub fn set_num_buffers(&mut self, v: u16) {
        self.set_le16(field::NUM_BUFFERS, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Field order and byte order as in include/uapi/linux/virtio_net.h.
    #[test]
    fn layout_is_little_endian_v1() {
        let mut b = [0u8; HEADER_LEN];
        let mut h = Header::new_checked(&mut b[..]).unwrap();
        h.set_flags(F_NEEDS_CSUM);
        h.set_gso_type(gso::TCPV4);
        h.set_hdr_len(66);
        h.set_gso_size(1448);
        h.set_csum_start(34);
        h.set_csum_offset(16);
        h.set_num_buffers(1);
        assert_eq!(b, [1, 1, 66, 0, 0xa8, 0x05, 34, 0, 16, 0, 1, 0]);
        let h = Header::new_checked(&b[..]).unwrap();
        assert!(h.needs_csum());
        assert_eq!(
            (h.gso_size(), h.csum_start(), h.num_buffers()),
            (1448, 34, 1)
        );
        assert!(Header::new_checked(&b[..11]).is_err());
    }
}
