//! Frames for the guest: into its RX virtqueue, with mergeable buffers
//! (VIRTIO_NET_F_MRG_RXBUF) when it acked them, so a 64 KB super-frame
//! spreads over as many of its (page-sized) buffers as it needs and
//! `num_buffers` in the header says how many.
//!
//! The used ring is written here, not with `Queue::add_used`: that one
//! publishes the used index after every chain, and a guest polling then
//! would see the first buffer of a frame, read `num_buffers` = 3 in its
//! header and find the other two missing (Linux drops the frame: "rx error:
//! 2 buffers out of 3 missing"). So all the chains of a frame are written,
//! then the index moves once. Whether the guest wants an interrupt is then
//! decided once per batch ([`needs_notification`]).

use std::io::Write;
use std::num::Wrapping;
use std::sync::atomic::{fence, Ordering};

use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};

use crate::wire::vnet;

/// At most this many buffers for one frame (a 64 KB super-frame in
/// 1500-byte buffers takes 45).
pub const MAX_BUFFERS: usize = 64;

/// Why a frame did not go in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutError {
    /// The guest has not given enough buffers (a full queue).
    NoRoom,
    /// A chain it gave is unusable (outside its memory, no room for the
    /// header): nothing was published; the guest gets nothing until it
    /// fixes its ring, which only hurts itself.
    Bad,
}

/// Puts `hdr` (a virtio_net_hdr, its `num_buffers` set here) and `frame`
/// into the guest's next RX buffers and publishes them.
pub fn put_frame<M>(
    q: &mut Queue,
    mem: &M,
    hdr: &[u8],
    frame: &[u8],
    mergeable: bool,
) -> Result<(), PutError>
where
    M: GuestMemory,
{
    let Ok(hdr) = <[u8; vnet::HEADER_LEN]>::try_from(hdr) else {
        return Err(PutError::Bad);
    };
    let start = q.next_avail();
    let r = fill(q, mem, hdr, frame, mergeable);
    match r {
        Ok((used, n)) => publish(q, mem, &used[..n]).map_err(|_| {
            q.set_next_avail(start);
            PutError::Bad
        }),
        Err(e) => {
            // The buffers stay the guest's, for the next frame.
            q.set_next_avail(start);
            Err(e)
        }
    }
}

/// Writes header and frame over as many chains as they need; returns
/// their (head, length) list.
fn fill<M: GuestMemory>(
    q: &mut Queue,
    mem: &M,
    mut hdr: [u8; vnet::HEADER_LEN],
    frame: &[u8],
    mergeable: bool,
) -> Result<([(u16, u32); MAX_BUFFERS], usize), PutError> {
    let max = if mergeable { MAX_BUFFERS } else { 1 };
    let mut used = [(0u16, 0u32); MAX_BUFFERS];
    let mut n = 0;
    let mut rest = frame;
    let mut header = None;
    while header.is_none() || !rest.is_empty() {
        if n >= max {
            return Err(PutError::NoRoom);
        }
        let chain = q.pop_descriptor_chain(mem).ok_or(PutError::NoRoom)?;
        let head = chain.head_index();
        let mut w = chain.writer(mem).map_err(|_| PutError::Bad)?;
        let mut len = 0;
        if header.is_none() {
            // The header goes in the first buffer, written last (once
            // num_buffers is known).
            let body = w.split_at(vnet::HEADER_LEN).map_err(|_| PutError::Bad)?;
            header = Some(w);
            w = body;
            len = vnet::HEADER_LEN;
        }
        let take = w.available_bytes().min(rest.len());
        w.write_all(&rest[..take]).map_err(|_| PutError::Bad)?;
        rest = &rest[take..];
        len += take;
        used[n] = (head, len as u32);
        n += 1;
    }
    hdr[vnet::field::NUM_BUFFERS].copy_from_slice(&(n as u16).to_le_bytes());
    if let Some(mut h) = header {
        h.write_all(&hdr).map_err(|_| PutError::Bad)?;
    }
    Ok((used, n))
}

/// Used ring layout (virtio 1.2, 2.7.8): flags u16, idx u16, then
/// elements of (id u32, len u32).
const USED_IDX: u64 = 2;
const USED_RING: u64 = 4;
const USED_ELEM: u64 = 8;

/// Writes the used elements, then the used index once.
fn publish<M: GuestMemory>(q: &mut Queue, mem: &M, used: &[(u16, u32)]) -> Result<(), ()> {
    let size = q.size();
    if size == 0 {
        return Err(());
    }
    let ring = GuestAddress(q.used_ring());
    let mut next = Wrapping(q.next_used());
    for &(head, len) in used {
        let slot = u64::from(next.0 % size);
        let at = ring.checked_add(USED_RING + slot * USED_ELEM).ok_or(())?;
        let mut elem = [0u8; 8];
        elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        mem.write_slice(&elem, at).map_err(|_| ())?;
        next += 1;
    }
    let idx = ring.checked_add(USED_IDX).ok_or(())?;
    mem.store(next.0.to_le(), idx, Ordering::Release)
        .map_err(|_| ())?;
    q.set_next_used(next.0);
    Ok(())
}

/// Whether the guest wants an interrupt for what was published since the
/// used index was `last` (the value returned by the previous call), and
/// the used index now. With EVENT_IDX: when its `used_event` lies in
/// (last, now], as Linux's vring_need_event; without: unless it set
/// VRING_AVAIL_F_NO_INTERRUPT.
pub fn needs_notification<M: GuestMemory>(q: &mut Queue, mem: &M, last: u16) -> (bool, u16) {
    let now = q.next_used();
    if now == last {
        return (false, now);
    }
    // Our used-ring writes before the guest's fields are read.
    fence(Ordering::SeqCst);
    let avail = GuestAddress(q.avail_ring());
    let notify = if q.event_idx_enabled() {
        let at = avail.checked_add(4 + 2 * u64::from(q.size()));
        match at.and_then(|a| mem.load::<u16>(a, Ordering::Acquire).ok()) {
            Some(e) => {
                let e = u16::from_le(e);
                now.wrapping_sub(e).wrapping_sub(1) < now.wrapping_sub(last)
            }
            None => true,
        }
    } else {
        match mem.load::<u16>(avail, Ordering::Acquire) {
            Ok(flags) => u16::from_le(flags) & 1 == 0,
            Err(_) => true,
        }
    };
    (notify, now)
}
