//! Reassembly of UNICAST_FRAG packets addressed to us (`fragmentation.c`).
//! A kernel whose hard interface MTU is below 1524 splits every larger
//! unicast into fragments; it cuts them from the tail, so fragment N-1
//! holds the head and merging goes from the highest number down.
//!
//! We never fragment ourselves yet (our sends must fit the hardif MTU).

use std::time::{Duration, Instant};

use crate::wire::batman::FragPacket;
use crate::wire::MacAddr;

/// `BATADV_FRAG_MAX_FRAGMENTS`.
pub(crate) const MAX_FRAGMENTS: usize = 16;
/// `BATADV_FRAG_MAX_FRAG_SIZE`.
pub(crate) const MAX_FRAG_SIZE: usize = 1280;
/// `batadv_frag_size_limit`: largest packet a chain may grow to.
const SIZE_LIMIT: usize = (MAX_FRAG_SIZE - 20) * MAX_FRAGMENTS;
/// `BATADV_FRAG_TIMEOUT`.
const FRAG_TIMEOUT: Duration = Duration::from_millis(10_000);
/// Chains kept at once over all originators (the kernel keeps
/// `BATADV_FRAG_BUFFER_COUNT` = 8 per originator); the oldest is evicted.
const MAX_CHAINS: usize = 64;

struct Chain {
    orig: MacAddr,
    seqno: u16,
    total_size: usize,
    size: usize,
    started: Instant,
    /// (fragment number, payload), any order.
    parts: Vec<(u8, Vec<u8>)>,
}

/// Outcome of adding a fragment.
pub(crate) enum FragResult {
    /// Kept, waiting for the rest.
    Pending,
    /// The whole unicast packet (its own batman header first).
    Complete(Vec<u8>),
    /// Inconsistent with its chain (size, count, duplicate): chain dropped.
    Invalid,
}

#[derive(Default)]
pub(crate) struct FragTable {
    chains: Vec<Chain>,
}

impl FragTable {
    pub(crate) fn add(&mut self, now: Instant, f: &FragPacket<&[u8]>) -> FragResult {
        let (orig, seqno, no) = (f.orig(), f.seqno(), f.no());
        let total = usize::from(f.total_size());
        let data = f.payload();
        let i = match self
            .chains
            .iter()
            .position(|c| c.orig == orig && c.seqno == seqno)
        {
            Some(i) => i,
            None => {
                if self.chains.len() >= MAX_CHAINS {
                    if let Some(oldest) =
                        (0..self.chains.len()).min_by_key(|&i| self.chains[i].started)
                    {
                        self.chains.swap_remove(oldest);
                    }
                }
                self.chains.push(Chain {
                    orig,
                    seqno,
                    total_size: total,
                    size: 0,
                    started: now,
                    parts: Vec::new(),
                });
                self.chains.len() - 1
            }
        };
        let c = &mut self.chains[i];
        let dup = c.parts.iter().any(|(n, _)| *n == no);
        c.size += data.len();
        if dup
            || c.total_size != total
            || total > SIZE_LIMIT
            || c.size > total
            || c.parts.len() >= MAX_FRAGMENTS
            || data.is_empty()
        {
            self.chains.swap_remove(i);
            return FragResult::Invalid;
        }
        c.parts.push((no, data.to_vec()));
        if c.size < total {
            return FragResult::Pending;
        }
        let mut c = self.chains.swap_remove(i);
        c.parts.sort_by_key(|p| std::cmp::Reverse(p.0));
        let mut out = Vec::with_capacity(total);
        for (_, p) in c.parts {
            out.extend_from_slice(&p);
        }
        FragResult::Complete(out)
    }

    /// Drops chains older than `BATADV_FRAG_TIMEOUT`; returns how many.
    pub(crate) fn purge(&mut self, now: Instant) -> usize {
        let before = self.chains.len();
        self.chains
            .retain(|c| now.saturating_duration_since(c.started) <= FRAG_TIMEOUT);
        before - self.chains.len()
    }
}

/// Splits a unicast-class `packet` for a link of `mtu` bytes the way
/// `batadv_frag_send_packet` does: equal-sized fragments of at most
/// min(mtu, 1280) - 20 bytes, eaten from the tail, numbered from 0, so the
/// last one carries the head. `None` if it would need more than 16.
pub(crate) fn frag_split(
    packet: &[u8],
    mtu: usize,
    dest: MacAddr,
    orig: MacAddr,
    seqno: u16,
) -> Option<Vec<Vec<u8>>> {
    let hlen = FragPacket::<&[u8]>::HEADER_LEN;
    let max = mtu
        .min(MAX_FRAG_SIZE)
        .checked_sub(hlen)
        .filter(|m| *m > 0)?;
    let total = u16::try_from(packet.len()).ok()?;
    if packet.is_empty() {
        return None;
    }
    let num = (packet.len() - 1) / max + 1;
    if num > MAX_FRAGMENTS {
        return None;
    }
    let size = (packet.len() - 1) / num + 1;
    let mut rest = packet;
    let mut out = Vec::with_capacity(num);
    let mut no = 0u8;
    while !rest.is_empty() {
        let cut = rest.len().saturating_sub(size);
        let (head, tail) = rest.split_at(cut);
        let mut f = Vec::with_capacity(hlen + tail.len());
        f.extend_from_slice(&[
            crate::wire::batman::packet_type::UNICAST_FRAG,
            crate::wire::batman::COMPAT_VERSION,
        ]);
        f.push(super::TTL);
        f.push(no << 4); // no:4 priority:3 reserved:1 (LSB first), priority 0
        f.extend_from_slice(&dest.0);
        f.extend_from_slice(&orig.0);
        f.extend_from_slice(&seqno.to_be_bytes());
        f.extend_from_slice(&total.to_be_bytes());
        f.extend_from_slice(tail);
        out.push(f);
        rest = head;
        no += 1;
    }
    Some(out)
}
