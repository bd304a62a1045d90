//! A batch of frames tagged with a peer, in one growing buffer: what a
//! worker decrypted before it takes the node lock, and what the node asked
//! to send while the worker held it (encrypted after the lock is released,
//! so WireGuard crypto never runs under the node lock on the worker path).
//!
//! Both buffers keep their capacity between batches: no allocation per
//! frame once a worker has seen its largest batch.

use crate::tunnel::PeerId;

#[derive(Debug, Default)]
pub struct Frames {
    buf: Vec<u8>,
    /// (peer, start, end) into `buf`.
    spans: Vec<(PeerId, usize, usize)>,
}

impl Frames {
    /// Appends one frame given in parts (a header and a client frame need
    /// not be joined first).
    pub fn push(&mut self, peer: PeerId, parts: &[&[u8]]) {
        let start = self.buf.len();
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        self.spans.push((peer, start, self.buf.len()));
    }

    pub fn iter(&self) -> impl Iterator<Item = (PeerId, &[u8])> + '_ {
        self.spans
            .iter()
            .map(|&(p, a, b)| (p, self.buf.get(a..b).unwrap_or_default()))
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.spans.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_keep_order_peer_and_bytes() {
        let mut f = Frames::default();
        f.push(3, &[b"ab", b"cd"]);
        f.push(1, &[b""]);
        f.push(3, &[b"xyz"]);
        let v: Vec<(PeerId, Vec<u8>)> = f.iter().map(|(p, b)| (p, b.to_vec())).collect();
        assert_eq!(
            v,
            vec![(3, b"abcd".to_vec()), (1, vec![]), (3, b"xyz".to_vec())]
        );
        assert_eq!((f.iter().count(), f.bytes()), (3, 7));
        let cap = f.buf.capacity();
        f.clear();
        assert!(f.is_empty());
        assert_eq!(f.buf.capacity(), cap);
    }
}
