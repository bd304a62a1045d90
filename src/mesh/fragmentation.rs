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
/// Chains one hardif (one peer) may hold at once: a peer that starts
/// chains it never finishes evicts its own, not the others' (issue 13).
const MAX_CHAINS_PER_HARDIF: usize = MAX_CHAINS / 4;
/// Chains one source originator may hold at once (the kernel's
/// `BATADV_FRAG_BUFFER_COUNT`).
const MAX_CHAINS_PER_ORIG: usize = 8;

struct Chain {
    orig: MacAddr,
    /// The hardif its first fragment came in on.
    via: u32,
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
    /// Adds a fragment that came in on hardif `via`.
    pub(crate) fn add(&mut self, now: Instant, via: u32, f: &FragPacket<&[u8]>) -> FragResult {
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
                self.make_room(via, orig);
                self.chains.push(Chain {
                    orig,
                    via,
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

    /// Room for a new chain of `orig` from `via`: the oldest chain of the
    /// same originator or hardif when it holds its share, else the oldest
    /// of all when the table is full.
    fn make_room(&mut self, via: u32, orig: MacAddr) {
        let oldest = |chains: &[Chain], keep: &dyn Fn(&Chain) -> bool| {
            (0..chains.len())
                .filter(|&i| keep(&chains[i]))
                .min_by_key(|&i| chains[i].started)
        };
        let of_orig = self.chains.iter().filter(|c| c.orig == orig).count();
        let of_via = self.chains.iter().filter(|c| c.via == via).count();
        let victim = if of_orig >= MAX_CHAINS_PER_ORIG {
            oldest(&self.chains, &|c| c.orig == orig)
        } else if of_via >= MAX_CHAINS_PER_HARDIF {
            oldest(&self.chains, &|c| c.via == via)
        } else if self.chains.len() >= MAX_CHAINS {
            oldest(&self.chains, &|_| true)
        } else {
            None
        };
        if let Some(i) = victim {
            self.chains.swap_remove(i);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Fragments of a 600-byte unicast from `orig` with `seqno`.
    fn frags(orig: MacAddr, seqno: u16) -> Vec<Vec<u8>> {
        let mut p = vec![0x40, 15, 50, 0];
        p.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        p.resize(600, 7);
        frag_split(&p, 400, MacAddr([2, 0, 0, 0, 0, 1]), orig, seqno).unwrap()
    }

    fn add(t: &mut FragTable, now: Instant, via: u32, f: &[u8]) -> FragResult {
        t.add(now, via, &FragPacket::new_checked(f).unwrap())
    }

    #[test]
    fn a_peer_that_never_finishes_its_chains_evicts_only_its_own() {
        let mut t = FragTable::default();
        let t0 = Instant::now();
        // An honest chain from hardif 2 starts first (the oldest of all).
        let honest = frags(MacAddr([2, 0, 0, 0, 9, 9]), 1);
        assert!(matches!(
            add(&mut t, t0, 2, &honest[0]),
            FragResult::Pending
        ));
        // Hardif 1 starts 200 chains under 50 made-up originators.
        for i in 0..200u16 {
            let f = frags(MacAddr([2, 0, 0, 1, 0, (i % 50) as u8]), i);
            let now = t0 + Duration::from_millis(u64::from(i) + 1);
            assert!(matches!(add(&mut t, now, 1, &f[0]), FragResult::Pending));
        }
        let of = |via| t.chains.iter().filter(|c| c.via == via).count();
        assert_eq!(of(1), MAX_CHAINS_PER_HARDIF);
        // The honest chain is still there and completes.
        let done = add(&mut t, t0 + Duration::from_secs(1), 2, &honest[1]);
        assert!(matches!(done, FragResult::Complete(p) if p.len() == 600));
    }

    #[test]
    fn one_originator_holds_at_most_eight_chains() {
        let mut t = FragTable::default();
        let t0 = Instant::now();
        for i in 0..20u16 {
            let f = frags(MacAddr([2, 0, 0, 0, 9, 1]), i);
            add(&mut t, t0 + Duration::from_millis(u64::from(i)), 3, &f[0]);
        }
        assert_eq!(t.chains.len(), MAX_CHAINS_PER_ORIG);
    }
}
