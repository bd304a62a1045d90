//! An attached port's receive ring against the real kernel: bursts of
//! frames written into the TAP's file side (as qemu writes a guest's
//! frames) come out of the port whole, in order, with counters that match,
//! both the frames that fit a ring slot and the larger ones that take the
//! copy path through the socket's queue.

use std::io;
use std::process::Command;
use std::time::{Duration, Instant};

use super::attach::{in_own_netns, offload};
use crate::port::testnet::unique_name;
use crate::port::*;

/// Frames per burst: under the ring's slots, so none is lost to a full
/// ring while the test is not reading.
const BURST: u32 = 200;
const BURSTS: u32 = 15;
/// Every this many frames one is longer than a slot (the copy path).
const LONG_EVERY: u32 = 20;
const LONG_LEN: usize = 4000;

/// Frame `seq` (`seq_frame`), every LONG_EVERY-th longer than a slot.
fn frame(seq: u32) -> Vec<u8> {
    let len = if seq % LONG_EVERY == LONG_EVERY - 1 {
        LONG_LEN
    } else {
        60 + (seq as usize % 1400)
    };
    super::seq_frame(seq, len)
}

#[test]
fn bursts_through_an_attached_tap_arrive_whole_and_in_order() {
    in_own_netns(|| {
        let name = format!("{}v", unique_name());
        let vnet = Tap::open_with(&name, 1500, offload()).expect("libvirt's TAP");
        let mut ports = Ports::new();
        let a = ports.attach("vm1", &name).expect("attach");
        // Slots were sized for 1500; a larger MTU now sends the long
        // frames through the copy path, and the port takes them.
        let ok = Command::new("ip")
            .args(["link", "set", &name, "mtu", "9000"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "mtu");
        let Device::Packet(p) = &ports.get(a).unwrap().dev else {
            panic!("not an attached port");
        };
        let (slot, slots) = p.ring_geometry();
        assert!(slot >= 2048 && slots >= BURST as usize, "{slot} {slots}");

        let zero = [0u8; crate::wire::vnet::HEADER_LEN];
        let mut rx = PortRx::new();
        let mut next = 0u32;
        let start = Instant::now();
        for burst in 0..BURSTS {
            let first = burst * BURST;
            for seq in first..first + BURST {
                let f = frame(seq);
                assert_eq!(vnet.write_vnet(&zero, &f).unwrap(), zero.len() + f.len());
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while next < first + BURST && Instant::now() < deadline {
                match ports.recv_batch(a, &mut rx) {
                    Ok(_) => {
                        while let Some(f) = rx.next_frame() {
                            assert_eq!(f, &frame(next)[..], "frame {next}");
                            next += 1;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("recv_batch: {e}"),
                }
            }
            assert_eq!(next, first + BURST, "burst {burst} incomplete");
        }
        let took = start.elapsed();
        let c = ports.get(a).unwrap().counters;
        let n = u64::from(BURST * BURSTS);
        assert_eq!(c.rx_frames, n, "{c:?}");
        assert_eq!(c.rx_reads, n, "{c:?}");
        let drops = c.rx_drop_ring
            + c.rx_drop_short
            + c.rx_drop_oversize
            + c.rx_errors
            + c.rx_drop_bad_vnet;
        assert_eq!(drops, 0, "{c:?}");
        let bytes: usize = (0..BURST * BURSTS).map(|s| frame(s).len()).sum();
        assert_eq!(c.rx_bytes, bytes as u64, "{c:?}");
        eprintln!(
            "ring {slots} x {slot} B: {n} frames ({} through the copy path) in {took:?}",
            n / u64::from(LONG_EVERY)
        );
        assert!(matches!(
            ports.recv_batch(a, &mut rx),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        ));
    });
}
