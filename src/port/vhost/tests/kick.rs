//! The device's read side against a guest driver running on another
//! thread, as Linux's virtio_net runs beside us: it queues frames in small
//! batches and kicks only when EVENT_IDX says we asked (vring_need_event
//! against our avail event), while the reader takes a bounded number of
//! frames per wake-up and then waits on the port's eventfd, as a worker
//! does. A kick lost between "the queue looked empty" and "notifications
//! are on again" leaves frames queued and the eventfd quiet: the reader
//! waits forever. That stalled a real guest's TCP stream in CI. With
//! several queue pairs (MQ) one guest thread per TX queue runs beside the
//! same single reader, which shares one eventfd among the queues.

use std::io::ErrorKind;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vhost_user_backend::VringT;
use vm_memory::{Bytes, GuestAddress, GuestAddressSpace, GuestMemoryAtomic};
use vmm_sys_util::eventfd::EventFd;

use super::super::{Mem, Shared, VhostDev, Vring};
use crate::sys::epoll::Epoll;

pub(super) const SIZE: u16 = 64;
/// Virtqueue `i` lives at `i * STRIDE`: its descriptor table, then the
/// avail ring at +AVAIL, the used ring at +USED, buffers at +BUFS (128
/// bytes each).
pub(super) const STRIDE: u64 = 0x10000;
pub(super) const AVAIL: u64 = 0x1000;
pub(super) const USED: u64 = 0x2000;
pub(super) const BUFS: u64 = 0x4000;
const FRAME: u32 = 12 + 60;

pub(super) fn vring(mem: &GuestMemoryAtomic<Mem>, i: usize) -> Vring {
    let base = i as u64 * STRIDE;
    let v = Vring::new(mem.clone(), SIZE).expect("vring");
    v.set_queue_size(SIZE);
    v.set_queue_info(base, base + AVAIL, base + USED)
        .expect("queue info");
    v.set_queue_event_idx(true);
    v.set_queue_ready(true);
    v.set_enabled(true);
    v
}

/// Guest memory for `pairs` queue pairs.
pub(super) fn memory(pairs: usize) -> GuestMemoryAtomic<Mem> {
    let size = 2 * pairs * STRIDE as usize;
    GuestMemoryAtomic::new(Mem::from_ranges(&[(GuestAddress(0), size)]).expect("guest memory"))
}

/// A device with `pairs` queue pairs set up and enabled, as after qemu's
/// SET_VRING_* messages.
pub(super) fn device(mem: &GuestMemoryAtomic<Mem>, pairs: usize) -> VhostDev {
    let mut shared = Shared::new(std::path::Path::new("test"), false).expect("shared");
    shared.mem = mem.clone();
    *shared.lock_vrings() = Some((0..2 * pairs).map(|i| vring(mem, i)).collect());
    let shared = Arc::new(shared);
    // Not the owner: there is no listener to stop.
    VhostDev {
        shared,
        mtu: 1500,
        owner: false,
    }
}

/// Linux's vring_need_event.
fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// The guest: queues `total` frames on virtqueue `q`, in batches of 1 to
/// 4, reclaiming what the device used, kicking `kick` as EVENT_IDX asks.
fn guest(mem: GuestMemoryAtomic<Mem>, q: usize, kick: EventFd, total: u64, done: Arc<AtomicBool>) {
    let base = q as u64 * STRIDE;
    let (desc, avail_ring, used_ring) = (base, base + AVAIL, base + USED);
    let m = mem.memory();
    let mut free: Vec<u16> = (0..SIZE).collect();
    let (mut avail, mut used_seen, mut sent) = (0u16, 0u16, 0u64);
    let mut x: u32 = 0x9e37_79b9;
    while sent < total && !done.load(Ordering::Relaxed) {
        let used: u16 = m
            .load(GuestAddress(used_ring + 2), Ordering::Acquire)
            .unwrap();
        while used_seen != used {
            let slot = u64::from(used_seen % SIZE);
            let id: u32 = m.read_obj(GuestAddress(used_ring + 4 + slot * 8)).unwrap();
            free.push(id as u16);
            used_seen = used_seen.wrapping_add(1);
        }
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let batch = (x % 4 + 1) as u64;
        let old = avail;
        for _ in 0..batch.min(total - sent) {
            let Some(id) = free.pop() else { break };
            let d = desc + u64::from(id) * 16;
            let buf = base + BUFS + u64::from(id) * 128;
            m.write_obj(buf, GuestAddress(d)).unwrap();
            m.write_obj(FRAME, GuestAddress(d + 8)).unwrap();
            m.write_obj(0u32, GuestAddress(d + 12)).unwrap();
            let slot = u64::from(avail % SIZE);
            m.write_obj(id, GuestAddress(avail_ring + 4 + slot * 2))
                .unwrap();
            avail = avail.wrapping_add(1);
            sent += 1;
        }
        if avail == old {
            std::thread::yield_now();
            continue;
        }
        m.store(avail, GuestAddress(avail_ring + 2), Ordering::Release)
            .unwrap();
        fence(Ordering::SeqCst);
        let event: u16 = m
            .load(
                GuestAddress(used_ring + 4 + 8 * u64::from(SIZE)),
                Ordering::Acquire,
            )
            .unwrap();
        if need_event(event, avail, old) {
            kick.write(1).unwrap();
        }
        // A pause of a few hundred cycles: the reader then often finds the
        // queue empty just as the next batch lands, the window in question.
        for _ in 0..x % 256 {
            std::hint::spin_loop();
        }
    }
}

/// Waits until the port's eventfd is readable, as the worker's epoll
/// (level-triggered) does; false after `timeout`.
fn readable(ep: &mut Epoll, timeout: Duration) -> bool {
    let mut ready = Vec::new();
    ep.wait(timeout, &mut ready).expect("epoll_wait");
    !ready.is_empty()
}

/// One reader, a guest thread per TX queue of `pairs`, `total` frames.
fn run(pairs: usize, total: u64) {
    let mem = memory(pairs);
    let dev = device(&mem, pairs);
    let done = Arc::new(AtomicBool::new(false));
    let per = total / pairs as u64;
    let guests: Vec<_> = (0..pairs)
        .map(|p| {
            let kick = dev.shared.notify.try_clone().expect("eventfd clone");
            let (mem, done) = (mem.clone(), Arc::clone(&done));
            std::thread::spawn(move || guest(mem, 2 * p + 1, kick, per, done))
        })
        .collect();
    let total = per * pairs as u64;
    let mut ep = Epoll::new().expect("epoll");
    ep.add(dev.fd(), 1).expect("epoll add");
    let mut buf = vec![0u8; 4096];
    let mut got = 0u64;
    let mut wakes = 0u64;
    while got < total {
        if !readable(&mut ep, Duration::from_secs(5)) {
            done.store(true, Ordering::Relaxed);
            guests.into_iter().for_each(|g| drop(g.join()));
            panic!("stalled ({pairs} pairs): {got} of {total} frames read after {wakes} wake-ups, the rest queued with no kick");
        }
        wakes += 1;
        // A worker's bound: a few frames per wake-up, then back to epoll.
        for _ in 0..8 {
            match dev.read(&mut buf) {
                Ok(n) => {
                    assert_eq!(n, FRAME as usize);
                    got += 1;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("read: {e}"),
            }
        }
    }
    for g in guests {
        g.join().unwrap();
    }
    assert_eq!(got, total);
}

#[test]
fn a_bounded_reader_never_loses_the_guests_kick() {
    run(1, 200_000);
}

#[test]
fn nor_any_queues_kick_with_several_pairs() {
    run(3, 240_000);
}
