//! The dirty log end to end over the real protocol: the test plays qemu
//! (the vhost crate's frontend on the port's socket), hands over the
//! guest's memory and two virtqueues as memfds as qemu does, starts a
//! migration's logging (SET_FEATURES with LOG_ALL, SET_LOG_BASE with the
//! log as a memfd), and moves frames both ways through the port. The log
//! qemu would read must have the pages meshwire wrote, and only those.
//! (With a real guest, in `netns-tests/interop/vhost_migrate.rs`, a
//! missing log goes unseen: the guest's own writes dirty the same pages.)

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserDirtyLogRegion, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::super::backend::features;
use super::super::VhostDev;

pub(super) const MEM: u64 = 0x40000;
pub(super) const PAGE: u64 = 0x1000;
pub(super) const SIZE: u16 = 16;
/// Per queue: descriptor table, avail ring, used ring, each on a page.
pub(super) const RINGS: [(u64, u64, u64); 2] = [(0x0, 0x1000, 0x2000), (0x3000, 0x4000, 0x5000)];
pub(super) const RX_BUFS: u64 = 0x10000;
pub(super) const TX_BUFS: u64 = 0x20000;
const FRAME: usize = 60;

/// A file qemu would make with memfd_create: any file that maps shared
/// does (this crate has no unsafe code for the syscall).
pub(super) fn shared_file(dir: &std::path::Path, name: &str, len: u64) -> File {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join(name))
        .expect("shared file");
    f.set_len(len).expect("file size");
    f
}

/// The guest's side of one queue: `n` one-page buffers made available.
/// Sets up both queues as qemu does (at RINGS in guest memory mapped at
/// `host` in the frontend), enabled; their call and kick eventfds.
pub(super) fn set_vrings(fe: &mut Frontend, host: u64) -> ([EventFd; 2], [EventFd; 2]) {
    let new = || EventFd::new(EFD_NONBLOCK).unwrap();
    let (calls, kicks) = ([new(), new()], [new(), new()]);
    for (q, &(desc, avail, used)) in RINGS.iter().enumerate() {
        fe.set_vring_num(q, SIZE).unwrap();
        let cfg = VringConfigData {
            queue_max_size: SIZE,
            queue_size: SIZE,
            flags: 0,
            desc_table_addr: host + desc,
            used_ring_addr: host + used,
            avail_ring_addr: host + avail,
            log_addr: None,
        };
        fe.set_vring_addr(q, &cfg).unwrap();
        fe.set_vring_base(q, 0).unwrap();
        fe.set_vring_call(q, &calls[q]).unwrap();
        fe.set_vring_kick(q, &kicks[q]).unwrap();
        fe.set_vring_enable(q, true).unwrap();
    }
    (calls, kicks)
}

pub(super) fn give(mem: &GuestMemoryMmap, q: usize, bufs: u64, n: u16, len: u32, write: bool) {
    let (desc, avail, _) = RINGS[q];
    for id in 0..n {
        let d = desc + u64::from(id) * 16;
        mem.write_obj(bufs + u64::from(id) * PAGE, GuestAddress(d))
            .unwrap();
        mem.write_obj(len, GuestAddress(d + 8)).unwrap();
        mem.write_obj(if write { 2u16 } else { 0 }, GuestAddress(d + 12))
            .unwrap();
        mem.write_obj(id, GuestAddress(avail + 4 + u64::from(id) * 2))
            .unwrap();
    }
    mem.store(n, GuestAddress(avail + 2), Ordering::Release)
        .unwrap();
}

/// The pages the log has marked, by guest address.
fn logged(log: &File) -> Vec<u64> {
    let mut bits = [0u8; (MEM / PAGE / 8) as usize];
    log.read_exact_at(&mut bits, 0).expect("read the log");
    (0..MEM / PAGE)
        .filter(|&p| bits[(p / 8) as usize] & (1 << (p % 8)) != 0)
        .map(|p| p * PAGE)
        .collect()
}

fn clear(log: &File) {
    log.write_all_at(&[0u8; (MEM / PAGE / 8) as usize], 0)
        .expect("clear the log");
}

pub(super) fn until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_migrations_log_gets_every_page_the_port_writes() {
    let dir = std::env::temp_dir().join(format!("mw-vhost-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sock = dir.join("guest.sock");
    let dev = VhostDev::open(&sock, Default::default(), 1500, false).expect("the port listens");

    // qemu's side: the guest's RAM in a memfd, mapped here too.
    let ram = shared_file(&dir, "ram", MEM);
    let mem = GuestMemoryMmap::<()>::from_ranges_with_files(&[(
        GuestAddress(0),
        MEM as usize,
        Some(FileOffset::new(ram, 0)),
    )])
    .expect("guest memory");
    let region = mem.iter().next().expect("one region");
    let info = VhostUserMemoryRegionInfo::from_guest_region(region).expect("region info");
    let host = info.userspace_addr;

    let mut fe = Frontend::connect(&sock, 2).expect("connect");
    fe.set_owner().unwrap();
    let offered = fe.get_features().unwrap();
    assert_ne!(offered & 1 << features::LOG_ALL, 0, "no VHOST_F_LOG_ALL");
    let base = 1 << features::VERSION_1 | 1 << features::PROTOCOL_FEATURES;
    fe.set_features(base).unwrap();
    let proto = fe.get_protocol_features().unwrap();
    assert!(proto.contains(VhostUserProtocolFeatures::LOG_SHMFD));
    fe.set_protocol_features(VhostUserProtocolFeatures::LOG_SHMFD)
        .unwrap();
    fe.set_mem_table(&[info]).unwrap();
    // One kick and one call eventfd per queue, nonblocking, as qemu's (the
    // crate's kick thread reads a kick with the queue locked).
    let (_calls, kicks) = set_vrings(&mut fe, host);
    // The device starts with a kick (qemu's host notifiers start set).
    kicks[0].write(1).unwrap();
    until("the port adopts the queues", || dev.connected());

    // The migration starts: logging on, the log a memfd (a bit per page).
    let log = shared_file(&dir, "log", PAGE);
    fe.set_features(base | 1 << features::LOG_ALL).unwrap();
    fe.set_log_base(
        0,
        Some(VhostUserDirtyLogRegion {
            mmap_size: PAGE,
            mmap_offset: 0,
            mmap_handle: log.as_raw_fd(),
        }),
    )
    .unwrap();

    // Toward the guest: the RX buffer and the RX used ring.
    give(&mem, 0, RX_BUFS, 4, PAGE as u32, true);
    clear(&log);
    let hdr = [0u8; crate::wire::vnet::HEADER_LEN];
    dev.write_vnet(&hdr, &[0xab; FRAME])
        .expect("frame to the guest");
    assert_eq!(logged(&log), vec![RINGS[0].2, RX_BUFS]);
    let mut got = [0u8; FRAME];
    mem.read_slice(&mut got, GuestAddress(RX_BUFS + hdr.len() as u64))
        .unwrap();
    assert_eq!(got, [0xab; FRAME], "the frame in the guest's buffer");

    // From the guest: read only; its TX used ring is written.
    give(&mem, 1, TX_BUFS, 1, (hdr.len() + FRAME) as u32, false);
    clear(&log);
    kicks[1].write(1).unwrap();
    let mut buf = vec![0u8; 2048];
    let mut n = 0;
    until("the guest's frame", || {
        n = dev.read(&mut buf).unwrap_or(0);
        n > 0
    });
    assert_eq!(n, hdr.len() + FRAME);
    assert_eq!(logged(&log), vec![RINGS[1].2]);

    // qemu stops the device (the source at the end of a migration): the
    // queue state it takes over is where the guest's rings are.
    assert_eq!(fe.get_vring_base(0).unwrap(), 1);
    assert_eq!(fe.get_vring_base(1).unwrap(), 1);
    // A stopped queue is not written: no frame, nothing logged.
    give(&mem, 0, RX_BUFS, 4, PAGE as u32, true);
    clear(&log);
    assert!(dev.write_vnet(&hdr, &[0xcd; FRAME]).is_err());
    assert_eq!(logged(&log), Vec::<u64>::new());
    drop(fe);
    drop(dev);
    let _ = std::fs::remove_dir_all(&dir);
}
