//! Which worker's socket a datagram reaches: a classic BPF program on the
//! port's SO_REUSEPORT group that sends peer `id`'s data messages to
//! socket `id mod workers`.
//!
//! Without it the kernel picks the socket by a hash of the 4-tuple: one
//! peer still always lands on one socket (order holds), but two busy peers
//! land on the same worker as often as not. With it the peers are dealt
//! out evenly and predictably. The peer is read from the receiver index,
//! which we chose (see `noise.rs`: the top 24 bits are `base + id`), so no
//! state is needed in the kernel, and a peer added at runtime is steered
//! from its first data message with no change to the program. Its `id`
//! holds its peer table slot and generation (`peer_table.rs`), so a slot's
//! next peer may land on another worker than the one before it; either way
//! one peer's data reaches one worker. Handshake messages and anything
//! that is not a data message fall back to the hash (the program returns
//! an index past the group, which the kernel treats as "no choice").
//!
//! The program runs with the packet data starting at the UDP payload.

use std::io;
use std::os::fd::BorrowedFd;

/// Classic BPF opcodes (linux/filter.h, linux/bpf_common.h): class |
/// size or operation | mode or source.
mod op {
    /// BPF_LD (0x00) | BPF_B | BPF_ABS.
    pub const LDB_ABS: u16 = 0x10 | 0x20;
    pub const JEQ_K: u16 = 0x05 | 0x10;
    pub const LSH_K: u16 = 0x04 | 0x60;
    pub const OR_X: u16 = 0x04 | 0x40 | 0x08;
    pub const SUB_K: u16 = 0x04 | 0x10;
    pub const AND_K: u16 = 0x04 | 0x50;
    pub const MOD_K: u16 = 0x04 | 0x90;
    pub const TAX: u16 = 0x07;
    pub const RET_A: u16 = 0x06 | 0x10;
    pub const RET_K: u16 = 0x06;
}

/// WireGuard's data message type (first byte; the rest of the word is 0).
const MSG_DATA: u32 = crate::wire::wireguard::message_type::TRANSPORT_DATA as u32;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The program: data message -> ((receiver_index >> 8) - base) mod 2^24
/// mod workers; anything else -> u32::MAX (the kernel's hash decides).
/// The receiver index is little-endian at bytes 4..8, so its top 24 bits
/// are bytes 5, 6 and 7.
pub(super) fn program(base: u32, workers: u32) -> Vec<libc::sock_filter> {
    let workers = workers.max(1);
    vec![
        insn(op::LDB_ABS, 0, 0, 0),
        // Not a data message: jump to the last instruction.
        insn(op::JEQ_K, 0, 13, MSG_DATA),
        insn(op::LDB_ABS, 0, 0, 7),
        insn(op::LSH_K, 0, 0, 16),
        insn(op::TAX, 0, 0, 0),
        insn(op::LDB_ABS, 0, 0, 6),
        insn(op::LSH_K, 0, 0, 8),
        insn(op::OR_X, 0, 0, 0),
        insn(op::TAX, 0, 0, 0),
        insn(op::LDB_ABS, 0, 0, 5),
        insn(op::OR_X, 0, 0, 0),
        insn(op::SUB_K, 0, 0, base & 0x00ff_ffff),
        insn(op::AND_K, 0, 0, 0x00ff_ffff),
        insn(op::MOD_K, 0, 0, workers),
        insn(op::RET_A, 0, 0, 0),
        insn(op::RET_K, 0, 0, u32::MAX),
    ]
}

/// Attaches the program to the reuseport group of `fd`'s socket. The
/// socket at group index i is the i-th socket bound to the port.
pub(super) fn attach(fd: BorrowedFd<'_>, base: u32, workers: u32) -> io::Result<()> {
    crate::sys::sockopt::attach_reuseport_cbpf(fd, &program(base, workers))
}

#[cfg(test)]
mod tests {
    use super::super::noise::IndexMap;
    use super::super::peer_table::{make_id, MAX_PEER_SLOTS};
    use super::super::rx_batch::RxBatch;
    use super::super::socket::UdpSocket;
    use super::*;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    /// A data message header for receiver index `idx` (and a counter).
    fn data_msg(idx: u32, counter: u64) -> Vec<u8> {
        let mut m = vec![0u8; 48];
        m[0] = MSG_DATA as u8;
        m[4..8].copy_from_slice(&idx.to_le_bytes());
        m[8..16].copy_from_slice(&counter.to_le_bytes());
        m
    }

    /// The index boringtun puts on the wire for peer `id`, session `s`:
    /// the one `noise.rs` hands to its `Tunn`, shifted past the session.
    fn wire_index(base: u32, id: u32, s: u32) -> u32 {
        (IndexMap::new(base, MAX_PEER_SLOTS).index_of(id) << 8) | s
    }

    /// Which group member each (peer, counter) arrived on.
    fn arrivals(socks: &[UdpSocket]) -> Vec<(usize, u32)> {
        let mut got = Vec::new();
        let mut rx = RxBatch::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            for (i, s) in socks.iter().enumerate() {
                while s.recv_batch(&mut rx, 32).unwrap_or(0) > 0 {
                    for e in 0..rx.count() {
                        for d in rx.datagrams(e) {
                            got.push((
                                i,
                                u32::from_le_bytes([d.data[4], d.data[5], d.data[6], d.data[7]]),
                            ));
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        got
    }

    #[test]
    fn peers_are_dealt_out_over_the_group_by_receiver_index() {
        let base = 0x00ab_cdef;
        let first = UdpSocket::bind_shared(0, true).unwrap();
        let port = first.local_port().unwrap();
        let mut socks = vec![first];
        for _ in 1..3 {
            socks.push(UdpSocket::bind_shared(port, true).unwrap());
        }
        attach(socks[0].fd(), base, 3).unwrap();
        let sender = UdpSocket::bind(0).unwrap();
        let to: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // The config's peers 0..7, and peers added at runtime in a reused
        // slot's later generation (the last one's index wraps past 2^24).
        let added = [make_id(1, 1), make_id(2, 7), make_id(4095, 255)];
        let ids: Vec<u32> = (0..7).chain(added).collect();
        for &id in &ids {
            for (c, s) in [0u32, 1, 255].into_iter().enumerate() {
                sender
                    .send_to(&data_msg(wire_index(base, id, s), c as u64), to)
                    .unwrap();
            }
        }
        let got = arrivals(&socks);
        assert_eq!(got.len(), 3 * ids.len(), "{got:?}");
        for (sock, idx) in got {
            let id = ((idx >> 8).wrapping_sub(base)) & 0x00ff_ffff;
            assert_eq!(sock, (id % 3) as usize, "peer {id} on socket {sock}");
        }
    }

    #[test]
    fn jump_lands_on_the_fallback() {
        let p = program(7, 3);
        let jeq = &p[1];
        // jf counts from the next instruction.
        assert_eq!(2 + jeq.jf as usize, p.len() - 1);
        assert_eq!(p[p.len() - 1].k, u32::MAX);
        assert_eq!(p[p.len() - 1].code, op::RET_K);
    }
}
