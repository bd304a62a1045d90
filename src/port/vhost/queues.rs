//! Queue pairs (VIRTIO_NET_F_MQ): the guest may send on any of its TX
//! queues (odd indices) and receive on any RX queue (even indices) that
//! qemu enabled. qemu runs the control virtqueue itself and enables a pair
//! with SET_VRING_ENABLE once the guest asked for it (`ethtool -L`, or
//! Linux's default of one pair per vCPU), so a pair we may touch is one
//! whose queues are ready and enabled.
//!
//! Reading: the TX queues are read in turn, from the one last served, so
//! a busy queue cannot starve the others beyond one batch. The port has one
//! eventfd for all of them; the rule that keeps it honest (see
//! `tests/kick.rs`): it is drained once, before notifications go back on
//! for *every* queue, and re-armed when any queue turns out to hold more,
//! since the worker may stop reading before it runs dry and the guest does
//! not kick again for a queue whose avail event we had not yet moved.
//!
//! Receiving: the frames of one flow (addresses, protocol, ports) always go
//! to the same RX queue, so they stay in order and on one of the guest's
//! CPUs, as a NIC's receive hash does.

use std::io;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use vhost_user_backend::VringT;
use virtio_queue::QueueT;
use vm_memory::GuestAddressSpace;

use super::{drain, rx, tx, usable, Shared, Vring};

/// Queue pairs offered (qemu's `queues=` up to this).
pub const MAX_PAIRS: usize = 4;

/// What `ctl ports` shows of a vhost-user port: whether a guest is
/// connected, and frames per queue pair (the guest's TX queues read, its
/// RX queues filled), so an operator sees whether the guest spreads its
/// traffic over the pairs it has.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct VhostInfo {
    pub connected: bool,
    /// Queue pairs in use: set up by qemu and enabled (as many as the
    /// guest asked for, up to qemu's `queues=`).
    pub queue_pairs: usize,
    pub tx_queue_frames: Vec<u64>,
    pub rx_queue_frames: Vec<u64>,
    /// Descriptor chains dropped as unusable.
    pub bad_chains: u64,
}

/// Frames per queue pair, each direction.
#[derive(Debug, Default)]
pub struct QueueCounters {
    tx: [AtomicU64; MAX_PAIRS],
    rx: [AtomicU64; MAX_PAIRS],
}

/// The port's queues as `ctl ports` shows them.
pub fn info(shared: &Shared) -> VhostInfo {
    let pairs = pair_count(shared);
    let in_use = (0..pairs)
        .filter(|p| {
            (0..2).all(|d| {
                shared
                    .vring(2 * p + d)
                    .is_some_and(|v| usable(&v.get_ref()))
            })
        })
        .count();
    let load = |a: &[AtomicU64; MAX_PAIRS]| -> Vec<u64> {
        a.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    };
    VhostInfo {
        connected: pairs > 0,
        queue_pairs: in_use,
        tx_queue_frames: load(&shared.counts.tx),
        rx_queue_frames: load(&shared.counts.rx),
        bad_chains: shared.bad_chains.load(Ordering::Relaxed),
    }
}

/// Per-RX-queue notification state, shared by the workers writing.
#[derive(Debug, Default)]
pub struct RxSignals {
    /// Bit `p`: frames went into pair `p`'s RX queue since the guest was
    /// last notified about it.
    unsignalled: AtomicU32,
    /// Each RX queue's used index when the guest was last notified
    /// (EVENT_IDX).
    signalled_at: [AtomicU16; MAX_PAIRS],
}

impl RxSignals {
    pub fn reset(&self) {
        self.unsignalled.store(0, Ordering::Relaxed);
        for s in &self.signalled_at {
            s.store(0, Ordering::Relaxed);
        }
    }
}

/// The connection's TX queues that can be read, and its RX queues, by pair.
fn pair_count(shared: &Shared) -> usize {
    shared
        .lock_vrings()
        .as_ref()
        .map_or(0, |v| (v.len() / 2).min(MAX_PAIRS))
}

/// Reads the next frame from any of the guest's TX queues.
pub fn read(shared: &Shared, next: &AtomicUsize, buf: &mut [u8]) -> io::Result<usize> {
    let pairs = pair_count(shared);
    if pairs == 0 {
        drain(&shared.notify);
        return Err(io::ErrorKind::WouldBlock.into());
    }
    if let Some(r) = pop_any(shared, next, pairs, buf) {
        return r;
    }
    // Every queue looked empty. The eventfd is drained first, then each
    // queue's notifications go back on: a kick after that makes it
    // readable again, and frames queued before it are found here.
    drain(&shared.notify);
    let mem = shared.mem.memory();
    let mut more = false;
    for p in 0..pairs {
        let Some(vring) = shared.vring(2 * p + 1) else {
            continue;
        };
        let mut st = vring.get_mut();
        if !usable(&st) {
            continue;
        }
        // The guest hears of what we took from this queue, once.
        if st.get_queue_mut().needs_notification(&*mem).unwrap_or(true) {
            let _ = st.signal_used_queue();
        }
        if matches!(st.get_queue_mut().enable_notification(&*mem), Ok(true)) {
            more = true;
        }
    }
    if !more {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    // Queued while we looked, perhaps with no kick to come: the eventfd
    // stays readable until the worker has read it all.
    let _ = shared.notify.write(1);
    pop_any(shared, next, pairs, buf).unwrap_or_else(|| Err(io::ErrorKind::WouldBlock.into()))
}

/// One frame from the first TX queue, in turn from `next`, that has one.
fn pop_any(
    shared: &Shared,
    next: &AtomicUsize,
    pairs: usize,
    buf: &mut [u8],
) -> Option<io::Result<usize>> {
    let mem = shared.mem.memory();
    let start = next.load(Ordering::Relaxed) % pairs;
    for k in 0..pairs {
        let p = (start + k) % pairs;
        let Some(vring) = shared.vring(2 * p + 1) else {
            continue;
        };
        let mut st = vring.get_mut();
        if !usable(&st) {
            continue;
        }
        match rx::pop_frame(st.get_queue_mut(), &*mem, buf) {
            rx::Popped::Frame(n) => {
                next.store(p, Ordering::Relaxed);
                shared.counts.tx[p].fetch_add(1, Ordering::Relaxed);
                return Some(Ok(n));
            }
            rx::Popped::Bad => {
                next.store(p, Ordering::Relaxed);
                shared.bad_chains.fetch_add(1, Ordering::Relaxed);
                // Counted by the port as a short frame too.
                return Some(Ok(0));
            }
            rx::Popped::Empty => {}
        }
    }
    None
}

/// The RX queue (pair) for `frame`: by its flow among the pairs the guest
/// enabled; pair 0 when it enabled only that one.
fn pick_rx(shared: &Shared, frame: &[u8]) -> Option<(usize, Vring)> {
    let pairs = pair_count(shared);
    if pairs == 0 {
        return None;
    }
    let want = flow_hash(frame) as usize % pairs;
    for p in [want, 0] {
        let Some(vring) = shared.vring(2 * p) else {
            continue;
        };
        if usable(&vring.get_ref()) {
            return Some((p, vring));
        }
    }
    None
}

/// Puts a virtio header and a frame into the guest's RX queue for its flow.
pub fn write(
    shared: &Shared,
    hdr: &[u8],
    frame: &[u8],
    mergeable: bool,
) -> Result<(), tx::PutError> {
    let (p, vring) = pick_rx(shared, frame).ok_or(tx::PutError::NoRoom)?;
    let mem = shared.mem.memory();
    let mut st = vring.get_mut();
    if !usable(&st) {
        return Err(tx::PutError::NoRoom);
    }
    tx::put_frame(st.get_queue_mut(), &*mem, hdr, frame, mergeable)?;
    shared.rx.unsignalled.fetch_or(1 << p, Ordering::Relaxed);
    shared.counts.rx[p].fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Notifies the guest about every RX queue that got frames since the last
/// time, if it asked to hear.
pub fn flush(shared: &Shared) {
    let mut pending = shared.rx.unsignalled.swap(0, Ordering::Relaxed);
    if pending == 0 {
        return;
    }
    let mem = shared.mem.memory();
    while pending != 0 {
        let p = pending.trailing_zeros() as usize;
        pending &= pending - 1;
        let Some(vring) = shared.vring(2 * p) else {
            continue;
        };
        let mut st = vring.get_mut();
        if !usable(&st) || p >= MAX_PAIRS {
            continue;
        }
        let at = &shared.rx.signalled_at[p];
        let (notify, now) =
            tx::needs_notification(st.get_queue_mut(), &*mem, at.load(Ordering::Relaxed));
        at.store(now, Ordering::Relaxed);
        if notify {
            let _ = st.signal_used_queue();
        }
    }
}

/// A hash of the frame's flow: IPv4/IPv6 addresses, protocol and the first
/// four bytes after the IP header (the ports of TCP and UDP), the same for
/// both directions' order of fields within one direction. Anything else
/// hashes by its MAC addresses. Short or odd frames hash by what is there.
pub fn flow_hash(frame: &[u8]) -> u32 {
    let get = |r: std::ops::Range<usize>| frame.get(r).unwrap_or(&[]);
    let ethertype = frame.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let key: [&[u8]; 3] = match ethertype {
        Some(0x0800) => {
            let ihl = usize::from(frame.get(14).map_or(5, |b| b & 0x0f)) * 4;
            [get(23..24), get(26..34), get(14 + ihl..18 + ihl)]
        }
        Some(0x86dd) => [get(20..21), get(22..54), get(54..58)],
        _ => [get(0..12), &[], &[]],
    };
    // FNV-1a: short keys, no allocation, good enough to spread flows.
    let mut h: u32 = 0x811c_9dc5;
    for b in key.iter().flat_map(|k| k.iter()) {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::flow_hash;

    fn v4(src_port: u16) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[23] = 6;
        f[26..30].copy_from_slice(&[198, 19, 1, 2]);
        f[30..34].copy_from_slice(&[198, 19, 1, 3]);
        f[34..36].copy_from_slice(&src_port.to_be_bytes());
        f
    }

    #[test]
    fn one_flow_one_hash_and_flows_spread() {
        assert_eq!(flow_hash(&v4(1000)), flow_hash(&v4(1000)));
        let mut seen = [0u32; 4];
        for port in 1000..1400 {
            seen[flow_hash(&v4(port)) as usize % 4] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn short_and_odd_frames_hash_without_panic() {
        for n in 0..80 {
            let mut f = v4(7);
            f.truncate(n);
            flow_hash(&f);
            if n > 14 {
                f[14] = 0x4f; // ihl 60 bytes: ports past the end
                flow_hash(&f);
            }
        }
    }
}
