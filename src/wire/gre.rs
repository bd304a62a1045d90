//! GRE header (RFC 2784 with the key and sequence extensions of RFC 2890).
//!
//! What a Linux gretap sends by default is the bare 4-byte header, flags and
//! version 0x0000, protocol 0x6558 (transparent Ethernet bridging). We accept
//! the optional checksum, key and sequence fields by skipping them (the
//! checksum can be verified), and refuse what Linux `gre_parse_header`
//! refuses: a version other than 0 and the RFC 1701 routing bit.

use super::bytes::{be16, be32};
use super::checksum;
use super::{WireError, WireResult};

pub mod field {
    use std::ops::Range;
    pub const FLAGS_VERSION: Range<usize> = 0..2;
    pub const PROTOCOL: Range<usize> = 2..4;
}

/// The base header without optional fields.
pub const HEADER_LEN: usize = 4;
/// Protocol type of transparent Ethernet bridging (what gretap carries).
pub const PROTO_TEB: u16 = 0x6558;

const FLAG_CSUM: u16 = 0x8000;
const FLAG_ROUTING: u16 = 0x4000;
const FLAG_KEY: u16 = 0x2000;
const FLAG_SEQ: u16 = 0x1000;
const VERSION_MASK: u16 = 0x0007;

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

    /// Base header present, version 0, no routing, optional fields present.
    pub fn check_len(&self) -> WireResult<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if self.version() != 0 {
            return Err(WireError::Malformed);
        }
        if self.flags_version() & FLAG_ROUTING != 0 {
            return Err(WireError::Unsupported);
        }
        if b.len() < self.header_len() {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn flags_version(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLAGS_VERSION.start)
    }

    pub fn version(&self) -> u8 {
        (self.flags_version() & VERSION_MASK) as u8
    }

    pub fn checksum_present(&self) -> bool {
        self.flags_version() & FLAG_CSUM != 0
    }

    pub fn key_present(&self) -> bool {
        self.flags_version() & FLAG_KEY != 0
    }

    pub fn seq_present(&self) -> bool {
        self.flags_version() & FLAG_SEQ != 0
    }

    pub fn protocol_type(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PROTOCOL.start)
    }

    /// 4 bytes, plus 4 for each of checksum(+reserved1), key, sequence.
    pub fn header_len(&self) -> usize {
        HEADER_LEN
            + 4 * usize::from(self.checksum_present())
            + 4 * usize::from(self.key_present())
            + 4 * usize::from(self.seq_present())
    }

    /// The stored checksum, when the C bit is set.
    pub fn checksum(&self) -> Option<u16> {
        self.checksum_present()
            .then(|| be16(self.buffer.as_ref(), HEADER_LEN))
    }

    pub fn key(&self) -> Option<u32> {
        let at = HEADER_LEN + 4 * usize::from(self.checksum_present());
        self.key_present().then(|| be32(self.buffer.as_ref(), at))
    }

    pub fn seq(&self) -> Option<u32> {
        let at = HEADER_LEN
            + 4 * usize::from(self.checksum_present())
            + 4 * usize::from(self.key_present());
        self.seq_present().then(|| be32(self.buffer.as_ref(), at))
    }

    /// True without a checksum field; with one, the checksum over the GRE
    /// header and payload (RFC 2784 section 2.5) must add up.
    pub fn verify_checksum(&self) -> bool {
        !self.checksum_present() || checksum::verify(self.buffer.as_ref())
    }

    /// Everything after the header and its optional fields (the buffer is the
    /// GRE packet: the IP payload, so its length is already exact).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_flags_version(&mut self, v: u16) {
        self.buffer.as_mut()[field::FLAGS_VERSION].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_protocol_type(&mut self, v: u16) {
        self.buffer.as_mut()[field::PROTOCOL].copy_from_slice(&v.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }
}

/// Writes the header a kernel gretap sends (no optional fields) into the
/// front of `buf`.
pub fn emit_plain(buf: &mut [u8], protocol: u16) -> WireResult<()> {
    let hdr = buf.get_mut(..HEADER_LEN).ok_or(WireError::Truncated)?;
    let mut p = Packet::new_unchecked(hdr);
    p.set_flags_version(0);
    p.set_protocol_type(protocol);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::captures;

    #[test]
    fn kernel_gretap_header() {
        for cap in captures::ALL {
            // Every capture: IPv4 header of 20 bytes, then GRE.
            let p = Packet::new_checked(&cap[20..]).unwrap();
            assert_eq!(p.flags_version(), 0);
            assert_eq!(p.protocol_type(), PROTO_TEB);
            assert_eq!(p.header_len(), 4);
            assert!(p.verify_checksum());
            assert_eq!(p.checksum(), None);
            assert_eq!(p.key(), None);
            assert_eq!(p.seq(), None);
            assert_eq!(p.payload().len(), cap.len() - 24);
            // The inner Ethernet frame carries batman-adv (0x4305).
            assert_eq!(&p.payload()[12..14], &[0x43, 0x05]);
        }
        let mut b = [0xffu8; 4];
        emit_plain(&mut b, PROTO_TEB).unwrap();
        assert_eq!(&b, &captures::OGM[20..24]);
    }

    #[test]
    fn optional_fields_are_skipped() {
        // C + K + S: checksum 4, key 4, seq 4, then a 3-byte payload.
        let mut b = vec![
            0xb0, 0x00, 0x65, 0x58, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 1, 0, 1, 2, 3,
        ];
        let c = checksum::checksum(&b);
        b[4..6].copy_from_slice(&c.to_be_bytes());
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.header_len(), 16);
        assert_eq!(p.checksum(), Some(c));
        assert_eq!(p.key(), Some(7));
        assert_eq!(p.seq(), Some(256));
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &[1, 2, 3]);
        b[18] ^= 0xff;
        assert!(!Packet::new_checked(&b[..]).unwrap().verify_checksum());
        // Key only.
        let k = [0x20, 0x00, 0x65, 0x58, 0, 0, 0, 9];
        let p = Packet::new_checked(&k[..]).unwrap();
        assert_eq!(p.key(), Some(9));
        assert!(p.payload().is_empty());
        assert_eq!(
            Packet::new_checked(&k[..7]).err(),
            Some(WireError::Truncated)
        );
    }

    #[test]
    fn rejects_version_and_routing() {
        assert_eq!(
            Packet::new_checked(&[0x00, 0x01, 0x88, 0x0b][..]).err(),
            Some(WireError::Malformed)
        );
        assert_eq!(
            Packet::new_checked(&[0x40, 0x00, 0x65, 0x58, 0, 0, 0, 0][..]).err(),
            Some(WireError::Unsupported)
        );
        for n in 0..4 {
            assert_eq!(
                Packet::new_checked(&[0u8, 0, 0x65, 0x58][..n]).err(),
                Some(WireError::Truncated)
            );
        }
    }
}
