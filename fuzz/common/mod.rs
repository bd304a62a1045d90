//! What the bridge and mesh fuzz targets share: a sink for the bridge's
//! output, and the input read as records `[kind, arg, len, bytes...]`.

#![allow(dead_code)] // each target uses what it needs

use meshwire::bridge::Egress;

/// Counts what the bridge hands out (and looks at it, as I/O would).
#[derive(Default)]
pub struct Sink {
    pub bytes: usize,
}

impl Egress for Sink {
    fn to_port(&mut self, _port: u32, frame: &[u8]) {
        self.bytes += frame.len();
    }
    fn to_peer(&mut self, _peer: u32, parts: &[&[u8]]) {
        self.bytes += parts.iter().map(|p| p.len()).sum::<usize>();
    }
}

/// The input as records: a kind, an argument, then `len * scale` bytes
/// (cut to what is left); a tail shorter than a record header is ignored.
pub fn records(data: &[u8], scale: usize) -> impl Iterator<Item = (u8, u8, &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < 3 {
            return None;
        }
        let (kind, arg) = (rest[0], rest[1]);
        let len = (rest[2] as usize * scale).min(rest.len() - 3);
        let body = &rest[3..3 + len];
        rest = &rest[3 + len..];
        Some((kind, arg, body))
    })
}
