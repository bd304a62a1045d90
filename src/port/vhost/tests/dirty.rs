//! Live migration copies the guest's RAM while it runs and then again
//! every page written since (qemu's dirty log); a page meshwire wrote and
//! did not log keeps its old content at the destination: a frame the guest
//! then reads as garbage, or a used ring that goes backwards (its driver
//! then waits forever). These tests drive frames both ways through the
//! device's own functions over guest memory whose regions carry a page
//! bitmap, and check that every page the device wrote is marked, and that
//! it wrote nothing else.

use std::sync::atomic::Ordering;

use virtio_queue::{Queue, QueueT};
use vm_memory::bitmap::{AtomicBitmap, Bitmap};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::super::{rx, tx};

type LoggedMem = GuestMemoryMmap<AtomicBitmap>;

const PAGE: u64 = 0x1000;
const SIZE: u16 = 16;
/// Rings of one queue, each on its own page.
const DESC: u64 = 0x0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
/// The buffers the guest gives, one page each.
const BUFS: u64 = 0x10000;
const MEM: u64 = 0x40000;

fn memory() -> LoggedMem {
    LoggedMem::from_ranges(&[(GuestAddress(0), MEM as usize)]).expect("guest memory")
}

fn queue(event_idx: bool) -> Queue {
    let mut q = Queue::new(SIZE).expect("queue");
    q.set_size(SIZE);
    q.set_desc_table_address(Some(DESC as u32), Some(0));
    q.set_avail_ring_address(Some(AVAIL as u32), Some(0));
    q.set_used_ring_address(Some(USED as u32), Some(0));
    q.set_event_idx(event_idx);
    q.set_ready(true);
    q
}

/// The guest driver: `n` one-descriptor chains of a page each, the
/// device writing into them (`write`) or reading them.
fn give(mem: &LoggedMem, n: u16, len: u32, write: bool) {
    for id in 0..n {
        let d = DESC + u64::from(id) * 16;
        mem.write_obj(BUFS + u64::from(id) * PAGE, GuestAddress(d))
            .unwrap();
        mem.write_obj(len, GuestAddress(d + 8)).unwrap();
        let flags: u16 = if write { 2 } else { 0 };
        mem.write_obj(flags, GuestAddress(d + 12)).unwrap();
        mem.write_obj(0u16, GuestAddress(d + 14)).unwrap();
        mem.write_obj(id, GuestAddress(AVAIL + 4 + u64::from(id) * 2))
            .unwrap();
    }
    mem.store(n, GuestAddress(AVAIL + 2), Ordering::Release)
        .unwrap();
}

/// Forgets what the guest's own writes marked (qemu reads and clears its
/// log once per round); the device's writes come after.
fn clear(mem: &LoggedMem) {
    for r in mem.iter() {
        // The region itself (its `bitmap()` is a slice view).
        (**r).bitmap().reset();
    }
}

fn dirty(mem: &LoggedMem, addr: u64) -> bool {
    let (r, off) = mem
        .to_region_addr(GuestAddress(addr))
        .expect("address in the guest");
    r.bitmap().dirty_at(off.0 as usize)
}

/// The pages the device marked, by guest address.
fn dirty_pages(mem: &LoggedMem) -> Vec<u64> {
    (0..MEM / PAGE)
        .map(|p| p * PAGE)
        .filter(|&a| dirty(mem, a))
        .collect()
}

#[test]
fn frames_into_the_guest_mark_their_buffers_and_the_used_ring() {
    let mem = memory();
    let mut q = queue(true);
    give(&mem, 8, PAGE as u32, true);
    clear(&mem);
    let hdr = [0u8; crate::wire::vnet::HEADER_LEN];
    // A frame over three mergeable buffers (the header in the first).
    let frame = vec![0x5a; 2 * PAGE as usize + 100];
    tx::put_frame(&mut q, &mem, &hdr, &frame, true).expect("frame in");
    let want = vec![USED, BUFS, BUFS + PAGE, BUFS + 2 * PAGE];
    assert_eq!(dirty_pages(&mem), want, "pages marked after one frame");
    // Its used index moved once, and the bytes are the frame's.
    let idx: u16 = mem.load(GuestAddress(USED + 2), Ordering::Acquire).unwrap();
    assert_eq!(idx, 3);
    let mut got = vec![0u8; 100];
    mem.read_slice(&mut got, GuestAddress(BUFS + 2 * PAGE))
        .unwrap();
    assert!(got.iter().all(|&b| b == 0x5a));

    // The next, after qemu cleared its log: only what it touched.
    clear(&mem);
    tx::put_frame(&mut q, &mem, &hdr, &[0x11; 60], true).expect("frame in");
    assert_eq!(dirty_pages(&mem), vec![USED, BUFS + 3 * PAGE]);
}

#[test]
fn frames_from_the_guest_mark_only_the_used_ring() {
    let mem = memory();
    let mut q = queue(true);
    give(&mem, 4, 12 + 60, false);
    clear(&mem);
    let mut buf = vec![0u8; 2048];
    for _ in 0..4 {
        assert_eq!(rx::pop_frame(&mut q, &mem, &mut buf), rx::Popped::Frame(72));
    }
    assert_eq!(rx::pop_frame(&mut q, &mem, &mut buf), rx::Popped::Empty);
    // Read, never written: the buffers stay clean; the used ring is not.
    assert_eq!(dirty_pages(&mem), vec![USED]);
    // The avail event (in the used ring's page) the device moves when it
    // turns notifications back on is logged too.
    clear(&mem);
    q.enable_notification(&mem).expect("notifications on");
    assert!(dirty(&mem, USED), "avail event written, not logged");
    assert_eq!(dirty_pages(&mem), vec![USED]);
}

#[test]
fn a_frame_that_does_not_fit_publishes_nothing_and_logs_no_ring() {
    let mem = memory();
    let mut q = queue(true);
    // Two buffers for a frame that needs three: nothing is published.
    give(&mem, 2, PAGE as u32, true);
    clear(&mem);
    let hdr = [0u8; crate::wire::vnet::HEADER_LEN];
    let frame = vec![0u8; 2 * PAGE as usize + 100];
    assert_eq!(
        tx::put_frame(&mut q, &mem, &hdr, &frame, true),
        Err(tx::PutError::NoRoom)
    );
    assert!(!dirty(&mem, USED), "the used ring was not written");
    // The buffers it began to fill are marked: the bytes did land there
    // (harmless, the guest does not own them back yet), and a destination
    // must see what the source's memory holds.
    assert!(dirty(&mem, BUFS));
}
