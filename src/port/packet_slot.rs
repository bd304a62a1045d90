//! What one slot of an attached port's receive ring holds (TPACKET_V2 with
//! a virtio header), parsed without trusting it: offsets and lengths come
//! from shared memory, so every one is checked against the slot before a
//! byte is taken. Safe code, separate from the mapping (`sys::ring`), so
//! hostile slot contents can be unit-tested and fuzzed.
//!
//! Layout the kernel writes (af_packet.c, `tpacket_rcv`): a `tpacket2_hdr`
//! at the slot start (status, len, snaplen, mac, net, ...), a
//! `sockaddr_ll`, then at `tp_mac - 10` the virtio header and at `tp_mac`
//! the frame's `tp_snaplen` bytes. The ring's header is always the 10-byte
//! `struct virtio_net_hdr` (written at `macoff - sizeof(struct
//! virtio_net_hdr)`), whatever `PACKET_VNET_HDR_SZ` says: that size only
//! moves `tp_mac` further in. So the reader adds the v1 header's last
//! field (`num_buffers`, 0) itself. A frame longer than the slot is
//! cut to it (`tp_snaplen < tp_len`) and, when the socket's receive buffer
//! has room, also queued whole on the socket (`TP_STATUS_COPY`).

use std::ops::Range;

/// `sizeof(struct tpacket2_hdr)`: the virtio header may not start before
/// its end.
pub const TPACKET2_HDR: usize = 32;

/// `sizeof(struct virtio_net_hdr)`: the header a ring slot carries.
pub const RING_VNET: usize = 10;

const STATUS_USER: u32 = 1;
const STATUS_COPY: u32 = 1 << 1;
const STATUS_LOSING: u32 = 1 << 2;

/// What to do with a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// A whole frame: its 10-byte virtio header and its bytes in the slot.
    Frame {
        vnet: Range<usize>,
        frame: Range<usize>,
    },
    /// The frame did not fit; read it whole from the socket instead.
    Copy,
    /// The frame did not fit and no whole copy was queued: drop it.
    Cut,
    /// Offsets or lengths that do not fit the slot: drop it.
    Bad,
}

/// A parsed slot, and whether the kernel lost frames before it (the ring
/// was full: `PACKET_STATISTICS` says how many).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub slot: Slot,
    pub losing: bool,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Parses a user-owned slot (all its bytes, header first) of a ring whose
/// socket has `PACKET_VNET_HDR` on.
pub fn parse(slot: &[u8]) -> Parsed {
    let Some(status) = u32_at(slot, 0) else {
        return Parsed {
            slot: Slot::Bad,
            losing: false,
        };
    };
    let losing = status & STATUS_LOSING != 0;
    let slot = if status & STATUS_USER == 0 {
        // Not ours: the caller checked; never read it.
        Slot::Bad
    } else if status & STATUS_COPY != 0 {
        Slot::Copy
    } else {
        frame(slot).unwrap_or(Slot::Bad)
    };
    Parsed { slot, losing }
}

fn frame(slot: &[u8]) -> Option<Slot> {
    let len = u32_at(slot, 4)? as usize;
    let snap = u32_at(slot, 8)? as usize;
    let mac = u16_at(slot, 12)? as usize;
    let start = mac.checked_sub(RING_VNET)?;
    if start < TPACKET2_HDR {
        return None;
    }
    let end = mac.checked_add(snap)?;
    if end > slot.len() {
        return None;
    }
    if snap < len {
        return Some(Slot::Cut);
    }
    if snap > len {
        // The kernel never snaps more than the frame.
        return None;
    }
    Some(Slot::Frame {
        vnet: start..mac,
        frame: mac..end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where af_packet.c puts an Ethernet frame in a V2 slot with a 12-byte
    /// virtio header size: TPACKET_ALIGN(52 + 16) + 12 - 14.
    const MAC: usize = 78;

    fn whole(mac: usize, end: usize) -> Slot {
        Slot::Frame {
            vnet: mac - RING_VNET..mac,
            frame: mac..end,
        }
    }

    fn slot(status: u32, len: u32, snap: u32, mac: u16) -> Vec<u8> {
        let mut s = vec![0u8; 2048];
        s[0..4].copy_from_slice(&status.to_ne_bytes());
        s[4..8].copy_from_slice(&len.to_ne_bytes());
        s[8..12].copy_from_slice(&snap.to_ne_bytes());
        s[12..14].copy_from_slice(&mac.to_ne_bytes());
        s
    }

    #[test]
    fn a_whole_frame_is_its_virtio_header_and_bytes() {
        let p = parse(&slot(STATUS_USER, 60, 60, MAC as u16));
        assert_eq!(p.slot, whole(MAC, MAC + 60));
        assert!(!p.losing);
        let p = parse(&slot(STATUS_USER | STATUS_LOSING, 60, 60, MAC as u16));
        assert!(p.losing);
        // A frame filling the slot to its last byte.
        let n = 2048 - MAC as u32;
        let p = parse(&slot(STATUS_USER, n, n, MAC as u16));
        assert_eq!(p.slot, whole(MAC, 2048));
    }

    #[test]
    fn a_frame_cut_by_the_slot_is_read_whole_or_dropped() {
        let p = parse(&slot(STATUS_USER | STATUS_COPY, 9000, 1970, 78));
        assert_eq!(p.slot, Slot::Copy);
        let p = parse(&slot(STATUS_USER, 9000, 1970, 78));
        assert_eq!(p.slot, Slot::Cut);
        // Cut to nothing (the kernel then writes no virtio header).
        let p = parse(&slot(STATUS_USER, 9000, 0, 78));
        assert_eq!(p.slot, Slot::Cut);
    }

    #[test]
    fn hostile_offsets_and_lengths_are_bad_not_a_panic() {
        for (len, snap, mac) in [
            // Snap past the slot end.
            (3000, 3000, 78),
            (60, 60, 2040),
            (u32::MAX, u32::MAX, u16::MAX),
            // Virtio header over the tpacket header or before the slot.
            (60, 60, 0),
            (60, 60, 9),
            (60, 60, 41),
            // More snapped than the frame has.
            (10, 60, 78),
        ] {
            let p = parse(&slot(STATUS_USER, len, snap, mac));
            assert_eq!(p.slot, Slot::Bad, "len {len} snap {snap} mac {mac}");
        }
        // A slot not handed over, and slots too short for a header.
        assert_eq!(parse(&slot(0, 60, 60, 78)).slot, Slot::Bad);
        for n in [0, 3, 4, 13] {
            let s = slot(STATUS_USER, 60, 60, 78);
            assert_eq!(parse(&s[..n]).slot, Slot::Bad);
        }
        // Random slots: whatever comes back lies inside the slot.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut s = slot(
                (x as u32 & 7) | STATUS_USER,
                (x >> 8) as u32 & 0xfff,
                (x >> 20) as u32 & 0xfff,
                (x >> 32) as u16 & 0x7ff,
            );
            s.truncate((x >> 48) as usize & 0xfff);
            if let Slot::Frame { vnet, frame } = parse(&s).slot {
                assert!(vnet.start >= TPACKET2_HDR && vnet.len() == RING_VNET);
                assert!(vnet.end == frame.start && frame.end <= s.len());
            }
        }
    }
}
