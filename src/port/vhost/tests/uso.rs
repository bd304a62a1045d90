//! UDP segmentation offload over vhost-user, both ways through the real
//! port layer: the test plays a qemu (8.2 or later) whose guest (Linux 6.2
//! or later) acks HOST_USO and GUEST_USO4/6 — qemu 7.2 and Linux 6.1, all
//! this machine has, know neither, so the interop guests never ack them.
//! A 3-datagram USO super-frame from the guest leaves the port as three
//! datagrams with their checksums done; three datagrams of one flow toward
//! the guest arrive as one USO super-frame (`udp_coalescing`).

use std::sync::atomic::Ordering;

use vhost::vhost_user::Frontend;
use vhost::{VhostBackend, VhostUserMemoryRegionInfo};
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::super::backend::features;
use super::log::{give, set_vrings, shared_file, until, MEM, PAGE, RINGS, RX_BUFS, SIZE, TX_BUFS};
use crate::port::{PortRx, Ports};
use crate::wire::{checksum, ipv4, udp, vnet};

const SEG: usize = 500;
const SEGS: usize = 3;
const HDRS: usize = 14 + 20 + 8;

/// An Ethernet/IPv4/UDP frame of `payload` bytes, checksums left for the
/// receiver (a USO super-frame when `payload` exceeds one segment).
fn udp_frame(payload: usize, id: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x52, 0x54, 0, 0, 0, 1, 0x08, 0x00];
    let mut h = [0u8; 20];
    let mut p = ipv4::Packet::new_unchecked(&mut h[..]);
    p.set_version_and_header_len(20);
    p.set_total_len((20 + 8 + payload) as u16);
    p.set_ident(id);
    p.set_unfragmented(true);
    p.set_ttl(64);
    p.set_protocol(udp::PROTOCOL);
    p.set_src_addr([198, 19, 1, 13].into());
    p.set_dst_addr([198, 19, 2, 13].into());
    p.fill_checksum();
    f.extend_from_slice(&h);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&5201u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend((0..payload).map(|i| i as u8));
    f
}

#[test]
fn uso_super_frames_are_cut_from_the_guest_and_built_toward_it() {
    let dir = std::env::temp_dir().join(format!("mw-vhost-uso-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sock = dir.join("guest.sock");
    let mut ports = Ports::new();
    let id = ports
        .open_vhost("uso", &sock, Default::default(), 1500, true)
        .expect("the port listens");
    assert!(ports.set_udp_coalescing(id, true));

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
    let uso = [
        features::HOST_USO,
        features::GUEST_USO4,
        features::GUEST_USO6,
    ];
    for bit in uso {
        assert_ne!(offered & 1 << bit, 0, "feature {bit} not offered");
    }
    let acked = features::mask(&[
        features::VERSION_1,
        features::MRG_RXBUF,
        features::CSUM,
        features::GUEST_CSUM,
    ]) | features::mask(&uso)
        | 1 << features::PROTOCOL_FEATURES;
    fe.set_features(acked).unwrap();
    fe.set_mem_table(&[info]).unwrap();
    let (_calls, kicks) = set_vrings(&mut fe, host);
    kicks[0].write(1).unwrap();
    until("the port adopts the queues", || {
        ports.get(id).is_some_and(|p| p.dev.offloads().uso)
    });

    // From the guest: one USO super-frame, its UDP checksum partial.
    let frame = udp_frame(SEG * SEGS, 7);
    let mut hdr = [0u8; vnet::HEADER_LEN];
    let mut h = vnet::Header::new_unchecked(&mut hdr[..]);
    h.set_flags(vnet::F_NEEDS_CSUM);
    h.set_gso_type(vnet::gso::UDP_L4);
    h.set_hdr_len(HDRS as u16);
    h.set_gso_size(SEG as u16);
    h.set_csum_start(34);
    h.set_csum_offset(6);
    mem.write_slice(&hdr, GuestAddress(TX_BUFS)).unwrap();
    mem.write_slice(&frame, GuestAddress(TX_BUFS + hdr.len() as u64))
        .unwrap();
    give(&mem, 1, TX_BUFS, 1, (hdr.len() + frame.len()) as u32, false);
    kicks[1].write(1).unwrap();
    let mut rx = PortRx::new();
    let mut got = Vec::new();
    until("the guest's datagrams", || {
        if ports.recv_batch(id, &mut rx).is_ok() {
            while let Some(f) = rx.next_frame() {
                got.push(f.to_vec());
            }
        }
        got.len() >= SEGS
    });
    assert_eq!(got.len(), SEGS, "one datagram per segment");
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.len(), HDRS + SEG, "datagram {i}");
        let ip = ipv4::Packet::new_checked(&d[14..]).expect("IPv4");
        assert!(ip.verify_checksum(), "datagram {i}: IPv4 checksum");
        let l4 = &d[34..];
        let pseudo = checksum::pseudo_header_v4(
            ip.src_addr(),
            ip.dst_addr(),
            udp::PROTOCOL,
            l4.len() as u32,
        );
        let sum = checksum::combine(&[pseudo, checksum::sum(l4)]);
        assert_eq!(sum, 0xffff, "datagram {i}: UDP checksum");
        assert_eq!(&d[HDRS..], &frame[HDRS + i * SEG..][..SEG], "datagram {i}");
    }

    // Toward the guest: three datagrams of one flow, one super-frame.
    give(&mem, 0, RX_BUFS, SIZE, PAGE as u32, true);
    for i in 0..SEGS {
        let mut d = udp_frame(SEG, 100 + i as u16);
        d[HDRS..].copy_from_slice(&frame[HDRS + i * SEG..][..SEG]);
        // Only datagrams with a good checksum are coalesced.
        let l4 = &d[34..];
        let pseudo = checksum::pseudo_header_v4(
            [198, 19, 1, 13].into(),
            [198, 19, 2, 13].into(),
            udp::PROTOCOL,
            l4.len() as u32,
        );
        let c = checksum::finish(checksum::combine(&[pseudo, checksum::sum(l4)]));
        d[40..42].copy_from_slice(&c.to_be_bytes());
        assert!(ports.send_gro(id, &d), "send_gro refused");
    }
    ports.flush();
    let used = RINGS[0].2;
    until("the guest's RX used ring", || {
        mem.load::<u16>(GuestAddress(used + 2), Ordering::Acquire)
            .unwrap()
            > 0
    });
    // One used entry (mergeable: num_buffers in the header says how many
    // buffers the frame took; 1514 + 12 bytes fit a page).
    assert_eq!(mem.read_obj::<u16>(GuestAddress(used + 2)).unwrap(), 1);
    let len = mem.read_obj::<u32>(GuestAddress(used + 8)).unwrap() as usize;
    let mut buf = vec![0u8; len];
    mem.read_slice(&mut buf, GuestAddress(RX_BUFS)).unwrap();
    let h = vnet::Header::new_checked(&buf[..]).expect("virtio header");
    assert_eq!(h.gso_type(), vnet::gso::UDP_L4, "a USO super-frame");
    assert_eq!(usize::from(h.gso_size()), SEG);
    let sent = &buf[vnet::HEADER_LEN..];
    assert_eq!(sent.len(), HDRS + SEG * SEGS);
    assert_eq!(&sent[HDRS..], &frame[HDRS..], "the payloads in order");
    drop(fe);
    drop(ports);
    let _ = std::fs::remove_dir_all(&dir);
}
