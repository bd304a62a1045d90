//! WireGuard's message framing, as far as meshwire needs to read it
//! without decrypting (the cryptography is boringtun's): which message a
//! datagram is, its receiver index, and the sizes around a data message.
//! The layouts are the protocol's (whitepaper §5.4): a 4-byte little-endian
//! type word (type in the first byte, three reserved zero bytes).

use super::{WireError, WireResult};

/// The first byte of every message.
pub mod message_type {
    pub const HANDSHAKE_INITIATION: u8 = 1;
    pub const HANDSHAKE_RESPONSE: u8 = 2;
    pub const COOKIE_REPLY: u8 = 3;
    pub const TRANSPORT_DATA: u8 = 4;
}

/// Message lengths (fixed for the handshake messages).
pub const HANDSHAKE_INITIATION_LEN: usize = 148;
pub const HANDSHAKE_RESPONSE_LEN: usize = 92;
pub const COOKIE_REPLY_LEN: usize = 64;
/// A data message's header: type word, receiver index, 8-byte counter.
pub const DATA_HEADER_LEN: usize = 16;
/// The Poly1305 tag after the encrypted payload.
pub const TAG_LEN: usize = 16;
/// Header and tag around every data message's plaintext.
pub const DATA_OVERHEAD: usize = DATA_HEADER_LEN + TAG_LEN;
/// Data plaintext is padded to a multiple of this (never past the MTU).
pub const PADDING_MULTIPLE: usize = 16;

/// A view of a message's first bytes: its type and, for the messages that
/// carry one, our receiver index.
#[derive(Debug, Clone, Copy)]
pub struct Message<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Message<T> {
    /// A buffer long enough for its type's fixed part (a data message: its
    /// header and tag), with the three reserved bytes zero.
    pub fn new_checked(buffer: T) -> WireResult<Message<T>> {
        let b = buffer.as_ref();
        let min = match b.first().copied() {
            Some(message_type::HANDSHAKE_INITIATION) => HANDSHAKE_INITIATION_LEN,
            Some(message_type::HANDSHAKE_RESPONSE) => HANDSHAKE_RESPONSE_LEN,
            Some(message_type::COOKIE_REPLY) => COOKIE_REPLY_LEN,
            Some(message_type::TRANSPORT_DATA) => DATA_OVERHEAD,
            Some(_) => return Err(WireError::Unsupported),
            None => return Err(WireError::Truncated),
        };
        if b.len() < min {
            return Err(WireError::Truncated);
        }
        if b.get(1..4) != Some(&[0, 0, 0]) {
            return Err(WireError::Malformed);
        }
        Ok(Message { buffer })
    }

    pub fn message_type(&self) -> u8 {
        self.buffer.as_ref().first().copied().unwrap_or(0)
    }

    /// The index the receiver chose (response, cookie reply, data); the
    /// initiation carries the sender's index instead.
    pub fn receiver_index(&self) -> Option<u32> {
        let at = match self.message_type() {
            message_type::HANDSHAKE_RESPONSE => 8,
            message_type::COOKIE_REPLY | message_type::TRANSPORT_DATA => 4,
            _ => return None,
        };
        let b = self.buffer.as_ref().get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_lengths_and_indices() {
        let mut data = vec![4, 0, 0, 0, 0x78, 0x56, 0x34, 0x12];
        data.resize(DATA_OVERHEAD, 0);
        let m = Message::new_checked(&data[..]).unwrap();
        assert_eq!(m.message_type(), message_type::TRANSPORT_DATA);
        assert_eq!(m.receiver_index(), Some(0x1234_5678));
        assert_eq!(
            Message::new_checked(&data[..DATA_OVERHEAD - 1]).unwrap_err(),
            WireError::Truncated
        );
        let mut resp = [2u8; HANDSHAKE_RESPONSE_LEN];
        resp[1..4].copy_from_slice(&[0, 0, 0]);
        resp[8..12].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(
            Message::new_checked(&resp[..]).unwrap().receiver_index(),
            Some(7)
        );
        let mut init = [0u8; HANDSHAKE_INITIATION_LEN];
        init[0] = 1;
        assert_eq!(
            Message::new_checked(&init[..]).unwrap().receiver_index(),
            None
        );
        data[2] = 1;
        assert_eq!(
            Message::new_checked(&data[..]).unwrap_err(),
            WireError::Malformed
        );
        assert_eq!(
            Message::new_checked(&[9u8; 64][..]).unwrap_err(),
            WireError::Unsupported
        );
        assert_eq!(
            Message::new_checked(&[][..]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn no_input_panics() {
        for len in 0..200usize {
            for t in 0..6u8 {
                let mut b = vec![0u8; len];
                if let Some(x) = b.first_mut() {
                    *x = t;
                }
                if let Ok(m) = Message::new_checked(&b[..]) {
                    let _ = m.receiver_index();
                }
            }
        }
    }
}
