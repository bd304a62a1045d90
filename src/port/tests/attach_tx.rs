//! An attached port's batched send side against the real kernel: bursts
//! sent toward the attached TAP (as the dataplane does: `send_gro` for each
//! frame, `flush` at the end of a round) come out of the TAP's file side
//! (where qemu reads) whole and in order, plain frames and UDP super-frames
//! mixed, with counters that match and fewer send system calls than
//! frames. A second test measures the send side batched and one send per
//! frame in one run (figures by eprintln, no assertion on them).

use std::io;
use std::time::{Duration, Instant};

use super::attach::{in_own_netns, offload};
use super::gro_udp::{dgram, payload, Dg};
use crate::port::testnet::unique_name;
use crate::port::*;

/// What the test sends, in order.
#[derive(Debug, Clone)]
enum Item {
    /// A frame nothing coalesces (local-experimental EtherType), whole.
    Plain(Vec<u8>),
    /// A datagram of the UDP flow (coalesced with its neighbours).
    Udp(Vec<u8>),
}

/// Plain frame `seq`, 60 to 1500 bytes, the sequence number first.
fn plain(seq: u32) -> Vec<u8> {
    sized(seq, 60 + (seq as usize * 37) % 1441)
}

use super::seq_frame as sized;

/// One round: plain frames, a run of 60 datagrams of 1000 bytes (one
/// USO super-frame of 60 KB: larger than a staging slot, written
/// directly), more plain frames, a run of 3 (a small super-frame, staged).
fn round(r: u32, k: &mut usize) -> Vec<Item> {
    let mut items = Vec::new();
    let mut udp = |n: usize, items: &mut Vec<Item>| {
        for _ in 0..n {
            let d = Dg {
                id: *k as u16,
                ..Dg::v4()
            };
            items.push(Item::Udp(dgram(&d, &payload(1000, *k))));
            *k += 1;
        }
    };
    items.extend((0..40).map(|i| Item::Plain(plain(r * 100 + i))));
    udp(60, &mut items);
    items.extend((40..80).map(|i| Item::Plain(plain(r * 100 + i))));
    udp(3, &mut items);
    items
}

/// The UDP payload of a datagram built by `dgram` (untagged IPv4).
fn udp_payload(f: &[u8]) -> &[u8] {
    let l4 = 14 + usize::from(f[14] & 0x0f) * 4;
    let len = usize::from(u16::from_be_bytes([f[l4 + 4], f[l4 + 5]]));
    &f[l4 + 8..l4 + len]
}

/// Our frames' source MAC: what the host stack sends on the TAP (IPv6
/// router solicitations and the like) also reaches the file side, and is
/// not ours to check.
const OURS: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// Reads `n` of our frames from the file side's port (super-frames cut as
/// the kernel would), bounded in time.
fn read_frames(q: &mut Ports, b: PortId, rx: &mut PortRx, n: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < n && Instant::now() < deadline {
        match q.recv_batch(b, rx) {
            Ok(_) => {
                while let Some(f) = rx.next_frame() {
                    if f[6..12] == OURS {
                        got.push(f.to_vec());
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("file side: {e}"),
        }
    }
    got
}

/// An attached port and the file side of its TAP, as a port of its own.
fn attached() -> (Ports, PortId, Ports, PortId) {
    let name = format!("{}v", unique_name());
    let vnet = Tap::open_with(&name, 1500, offload()).expect("libvirt's TAP");
    let mut ports = Ports::new();
    let a = ports.attach("vm1", &name).expect("attach");
    assert!(ports.set_udp_coalescing(a, true));
    let mut q = Ports::new();
    let b = q.insert(vnet).expect("file side");
    (ports, a, q, b)
}

#[test]
fn bursts_toward_an_attached_tap_leave_batched_whole_and_in_order() {
    in_own_netns(|| {
        let (mut ports, a, mut q, b) = attached();
        let mut rx = PortRx::new();
        let (mut k, mut frames, mut bytes, mut sent) = (0, 0u64, 0u64, 0u64);
        for r in 0..30 {
            let items = round(r, &mut k);
            for it in &items {
                let (Item::Plain(f) | Item::Udp(f)) = it;
                assert!(ports.send_gro(a, f), "send_gro refused");
            }
            ports.flush();
            // What the counters must say: every frame once; a super-frame's
            // bytes are its headers once and every datagram's payload.
            let mut run = 0usize;
            for (i, it) in items.iter().enumerate() {
                match it {
                    Item::Plain(f) => bytes += f.len() as u64,
                    Item::Udp(f) => {
                        run += 1;
                        bytes += udp_payload(f).len() as u64;
                        if !matches!(items.get(i + 1), Some(Item::Udp(_))) {
                            bytes += 42;
                            sent += 1;
                            run = 0;
                        }
                    }
                }
                if matches!(it, Item::Plain(_)) {
                    sent += 1;
                }
            }
            assert_eq!(run, 0);
            frames += items.len() as u64;
            let got = read_frames(&mut q, b, &mut rx, items.len());
            assert_eq!(got.len(), items.len(), "round {r}: frames at the file side");
            for (i, (g, w)) in got.iter().zip(&items).enumerate() {
                match w {
                    Item::Plain(w) => assert!(g == w, "round {r} frame {i}: plain frame"),
                    Item::Udp(w) => {
                        assert_eq!(udp_payload(g), udp_payload(w), "round {r} frame {i}: udp")
                    }
                }
            }
        }
        let c = ports.get(a).unwrap().counters;
        eprintln!(
            "{frames} frames in {sent} datagrams, {} system calls: {c:?}",
            c.tx_writes
        );
        assert_eq!(c.tx_frames, frames, "{c:?}");
        assert_eq!(c.tx_bytes, bytes, "{c:?}");
        assert_eq!(c.tx_gro, 60, "{c:?}");
        assert_eq!(
            c.tx_drop_busy + c.tx_errors + c.tx_drop_oversize,
            0,
            "{c:?}"
        );
        // Per round: the staged frames before the large super-frame (one
        // call), the super-frame (one), the rest at the flush (one).
        assert!(c.tx_writes < frames, "{c:?}");
        assert_eq!(c.tx_writes, 30 * 3, "{c:?}");
        assert!(matches!(
            q.recv_batch(b, &mut rx),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        ));
    });
}

/// A refusal by the kernel is counted per frame, and the frames after it in
/// the same batch still go: a frame over the netdev's MTU (the port's MTU
/// is remembered from before it was lowered) is refused, its neighbours
/// arrive.
#[test]
fn a_refused_frame_in_a_batch_is_counted_and_its_neighbours_go() {
    in_own_netns(|| {
        let (mut ports, a, mut q, b) = attached();
        let name = ports.get(a).unwrap().dev.name().to_owned();
        super::set_mtu(&name, 1000);
        let mut rx = PortRx::new();
        let frames: Vec<Vec<u8>> = [60, 1200, 300, 1015, 1014, 1500, 900, 70]
            .iter()
            .enumerate()
            .map(|(i, &len)| sized(i as u32, len))
            .collect();
        for f in &frames {
            assert!(ports.send_gro(a, f));
        }
        ports.flush();
        let fit: Vec<&Vec<u8>> = frames.iter().filter(|f| f.len() <= 1014).collect();

        let got = read_frames(&mut q, b, &mut rx, fit.len());
        assert_eq!(got.len(), fit.len());
        for (g, w) in got.iter().zip(&fit) {
            assert!(g == *w, "frame in order");
        }
        let c = ports.get(a).unwrap().counters;
        eprintln!("{c:?}");
        assert_eq!(c.tx_frames, fit.len() as u64, "{c:?}");
        assert_eq!(c.tx_errors, (frames.len() - fit.len()) as u64, "{c:?}");
    });
}

/// 64-byte frames (nothing to coalesce) toward an attached TAP, in rounds
/// of 64 as a worker sends them, batched and one send per frame, in one
/// run: the send side's CPU time per frame and system calls (eprintln;
/// the only assertions are that everything arrives).
#[test]
fn sending_small_frames_batched_and_one_by_one_compared() {
    in_own_netns(|| {
        let (mut ports, a, mut q, b) = attached();
        let mut rx = PortRx::new();
        const ROUNDS: u32 = 1500;
        for batched in [false, true, false, true] {
            crate::port::tx_batch::set_batching(&mut ports, a, batched);
            let before = ports.get(a).unwrap().counters;
            let mut cpu = Duration::ZERO;
            let frames: Vec<Vec<u8>> = (0..64).map(|i| sized(i, 60)).collect();
            for _ in 0..ROUNDS {
                let t = crate::sys::sched::thread_cpu_time();
                for f in &frames {
                    ports.send_gro(a, f);
                }
                ports.flush();
                cpu += crate::sys::sched::thread_cpu_time() - t;
                let got = read_frames(&mut q, b, &mut rx, frames.len());
                assert_eq!(got.len(), frames.len());
            }
            let c = ports.get(a).unwrap().counters;
            let n = c.tx_frames - before.tx_frames;
            assert_eq!(n, u64::from(ROUNDS) * 64, "{c:?}");
            eprintln!(
                "{}: {n} frames of 60 bytes, {} send system calls, send side {:.0} ns CPU a frame",
                if batched {
                    "batched (sendmmsg)"
                } else {
                    "one send a frame"
                },
                c.tx_writes - before.tx_writes,
                cpu.as_nanos() as f64 / n as f64
            );
        }
    });
}
