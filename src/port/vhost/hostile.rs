//! A guest made of arbitrary bytes, for the fuzz target `vhost_desc` and
//! the unit tests: two small memory regions with a hole between them, a
//! virtqueue whose size, ring addresses and flags come from the input (in
//! range or not), and the rest of the input as the regions' content:
//! descriptor tables, rings and buffers as hostile as it gets. Both
//! directions run on it exactly as the device runs them ([`super::rx`],
//! [`super::tx`], the readiness check of `mod.rs`): whatever the guest
//! wrote, nothing panics and nothing outside its regions is touched (every
//! access goes through `vm-memory`, which refuses addresses outside them).

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

use super::{rx, tx, Mem};
use crate::wire::vnet;

/// Region 0 at guest address 0, region 1 after a hole.
const R0: (u64, usize) = (0, 0x4000);
const R1: (u64, usize) = (0x10_0000, 0x4000);

/// What one run did: frames read from the guest, frames put in, chains
/// found unusable.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub read: usize,
    pub bad: usize,
    pub put: usize,
}

/// A ring address from two input bytes: mostly in one of the regions,
/// sometimes in the hole or past the end.
fn addr(b: [u8; 3]) -> u64 {
    let off = u64::from(u16::from_le_bytes([b[0], b[1]]));
    match b[2] % 4 {
        0 => R0.0 + off % R0.1 as u64,
        1 => R1.0 + off % R1.1 as u64,
        2 => R0.1 as u64 + off * 16,
        _ => u64::MAX - off,
    }
}

/// Runs both directions of the device on the guest `data` describes.
pub fn run(data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let Some((head, body)) = data.split_at_checked(11) else {
        return out;
    };
    let Ok(mem) = Mem::from_ranges(&[(GuestAddress(R0.0), R0.1), (GuestAddress(R1.0), R1.1)])
    else {
        return out;
    };
    let (b0, b1) = body.split_at(body.len().min(R0.1));
    let _ = mem.write_slice(b0, GuestAddress(R0.0));
    let _ = mem.write_slice(&b1[..b1.len().min(R1.1)], GuestAddress(R1.0));
    let Ok(mut q) = Queue::new(256) else {
        return out;
    };
    q.set_size(1 << (head[0] % 9));
    let split = |a: u64| (Some(a as u32), Some((a >> 32) as u32));
    let (lo, hi) = split(addr([head[1], head[2], head[3]]));
    q.set_desc_table_address(lo, hi);
    let (lo, hi) = split(addr([head[4], head[5], head[6]]));
    q.set_avail_ring_address(lo, hi);
    let (lo, hi) = split(addr([head[7], head[8], head[9]]));
    q.set_used_ring_address(lo, hi);
    q.set_event_idx(head[10] & 1 != 0);
    q.set_ready(true);
    // As the device (`mod.rs`, usable): ready is all it asks; rings in the
    // hole, past the end or misaligned are the guest's to get wrong.
    let mergeable = head[10] & 2 != 0;
    let mut buf = vec![0u8; super::super::rx::MAX_READ];
    for _ in 0..64 {
        match rx::pop_frame(&mut q, &mem, &mut buf) {
            rx::Popped::Frame(_) => out.read += 1,
            rx::Popped::Bad => out.bad += 1,
            rx::Popped::Empty => break,
        }
    }
    let _ = q.needs_notification(&mem);
    let _ = q.enable_notification(&mem);
    let hdr = [0u8; vnet::HEADER_LEN];
    for len in [60, 1514, 9000, 65_000] {
        let frame = vec![0x5a; len];
        if tx::put_frame(&mut q, &mem, &hdr, &frame, mergeable).is_ok() {
            out.put += 1;
        }
    }
    let _ = tx::needs_notification(&mut q, &mem, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A guest with one descriptor at 0x1000 (`len` bytes, `flags`), queue
    /// size 4, desc table at 0, avail ring at 0x100, used ring at 0x200.
    fn guest(desc_addr: u64, len: u32, flags: u16) -> Vec<u8> {
        let mut d = vec![2, 0, 0, 0, 0x00, 0x01, 0, 0x00, 0x02, 0, 0];
        let mut m = vec![0u8; 0x2000];
        m[0..8].copy_from_slice(&desc_addr.to_le_bytes());
        m[8..12].copy_from_slice(&len.to_le_bytes());
        m[12..14].copy_from_slice(&flags.to_le_bytes());
        m[0x102..0x104].copy_from_slice(&1u16.to_le_bytes()); // avail idx 1, ring[0] = 0
        d.extend_from_slice(&m);
        d
    }

    #[test]
    fn a_good_chain_is_read() {
        let o = run(&guest(0x1000, 100, 0));
        assert_eq!((o.read, o.bad), (1, 0), "{o:?}");
    }

    #[test]
    fn chains_outside_the_regions_are_dropped_and_counted() {
        for a in [0x8000, R1.0 + R1.1 as u64 - 10, u64::MAX - 50] {
            let o = run(&guest(a, 100, 0));
            assert_eq!((o.read, o.bad), (0, 1), "addr {a:#x}: {o:?}");
        }
    }

    #[test]
    fn a_writable_chain_on_the_tx_side_is_read_as_empty() {
        // VIRTQ_DESC_F_WRITE on the guest's TX queue: read as a chain with
        // no readable bytes (the port drops it as short), never written.
        let mut g = guest(0x1000, 2048, 2);
        g[10] = 2; // mergeable
        let o = run(&g);
        assert_eq!(o.read, 1, "{o:?}");
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u32 = 0x1234_5678;
        for n in 0..300 {
            let data: Vec<u8> = (0..(n * 53) % 0x5000 + 11)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            run(&data);
        }
    }
}
