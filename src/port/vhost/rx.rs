//! Frames from the guest: one descriptor chain of its TX virtqueue is one
//! virtio_net_hdr and one (super-)frame, copied out in the port layer's read
//! contract. Everything the chain names is checked against the guest's
//! memory regions by `virtio-queue` (`Reader`): an address outside them, a
//! length that overflows or a descriptor loop makes the chain unusable; it
//! is returned to the guest as used (length 0) and dropped, never read.

use std::io::Read;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemory;

/// What one pop gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Popped {
    /// `n` bytes (virtio header and frame) in the buffer; a chain longer
    /// than the buffer shows as `buf.len()` bytes, which the port drops as
    /// too long.
    Frame(usize),
    /// The chain was unusable: dropped (and handed back).
    Bad,
    /// Nothing queued.
    Empty,
}

/// Takes the next chain the guest queued and copies what it holds into
/// `buf`. The chain goes back to the guest as used at once: its bytes are
/// ours now.
pub fn pop_frame<M>(q: &mut Queue, mem: &M, buf: &mut [u8]) -> Popped
where
    M: GuestMemory,
{
    let Some(chain) = q.pop_descriptor_chain(mem) else {
        return Popped::Empty;
    };
    let head = chain.head_index();
    let got = copy_chain(chain, mem, buf);
    // The guest learns of it at the next notification; a failure here is a
    // used ring outside its memory, which only hurts the guest.
    let _ = q.add_used(mem, head, 0);
    match got {
        Some(n) => Popped::Frame(n),
        None => Popped::Bad,
    }
}

fn copy_chain<M: GuestMemory>(
    chain: virtio_queue::DescriptorChain<&M>,
    mem: &M,
    buf: &mut [u8],
) -> Option<usize> {
    let mut r = chain.reader(mem).ok()?;
    let n = r.available_bytes();
    if n > buf.len() {
        // The port's buffer holds the largest valid read: this is not one.
        return Some(buf.len());
    }
    r.read_exact(&mut buf[..n]).ok()?;
    Some(n)
}
