//! Hostile batman-adv input through the whole mesh state machine, with
//! unicast destinations: OGM aggregates, TVLVs and TT, broadcasts,
//! unicasts (to us and to be forwarded), UNICAST_4ADDR, TVLV unicasts (TT
//! request/response, ROAM), ICMP, fragments.
//!
//! Our node A has an honest neighbour B (a second `Mesh` on hardif 0, its
//! link MTU small enough that B fragments) and a third originator C behind
//! B, so routes are bidirectional before the input starts and the paths
//! that need a known originator (delivery, forwarding, TT requests, ROAM,
//! ICMP replies) are reachable. Records then either inject raw bytes with
//! a chosen Ethernet destination (broadcast, our hardif MAC, another MAC)
//! and optionally our originator or B's written into the batman header's
//! address fields (every unicast type has its destination at bytes 4..10
//! and most their source at 10..16), or make B send a real packet (unicast,
//! broadcast, ICMP echo, a TT change that makes A ask) that is mutated on
//! the way, or let time pass.
//!
//! Records: [op, arg, len, bytes...].
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use meshwire::mesh::{Mesh, MeshConfig, MeshOutput};
use meshwire::wire::MacAddr;

const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const C: MacAddr = MacAddr([2, 0, 0, 0, 0, 3]);
const A_HARDIF: [MacAddr; 3] = [
    MacAddr([2, 0, 0, 0, 1, 0]),
    MacAddr([2, 0, 0, 0, 1, 1]),
    MacAddr([2, 0, 0, 0, 1, 2]),
];
const B_TO_A: MacAddr = MacAddr([6, 0, 0, 2, 0, 1]);
const B_TO_C: MacAddr = MacAddr([6, 0, 0, 2, 0, 3]);
const C_TO_B: MacAddr = MacAddr([6, 0, 0, 3, 0, 2]);

struct Net {
    a: Mesh,
    b: Mesh,
    c: Mesh,
    now: Instant,
    /// Flip one byte of the next packet B sends to A: (index, xor).
    mutate: Option<(usize, u8)>,
}

impl Net {
    fn new() -> Net {
        let mut a = Mesh::new(MeshConfig::new(A));
        for (h, mac) in A_HARDIF.iter().enumerate() {
            a.hardif_add(h as u32, *mac);
        }
        a.hardif_set_owner(0, B);
        let mut b = Mesh::new(MeshConfig::new(B));
        b.hardif_add(0, B_TO_A);
        b.hardif_add(1, B_TO_C);
        // B fragments what it sends to A; A's reassembly sees real chains.
        b.hardif_set_mtu(0, 300);
        let mut c = Mesh::new(MeshConfig::new(C));
        c.hardif_add(0, C_TO_B);
        b.tt_local_add(MacAddr([0x52, 0x54, 0, 0, 0, 2]), 0);
        c.tt_local_add(MacAddr([0x52, 0x54, 0, 0, 0, 3]), 0);
        a.tt_local_add(MacAddr([0x52, 0x54, 0, 0, 0, 1]), 0);
        let mut net = Net {
            a,
            b,
            c,
            now: Instant::now(),
            mutate: None,
        };
        for _ in 0..6 {
            net.advance(Duration::from_millis(1000));
        }
        net
    }

    /// Ticks every node and carries every packet until the network is
    /// quiet (bounded: hostile input must not loop us for ever).
    fn advance(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        let mut out = Vec::new();
        self.a.tick(now, &mut out);
        self.carry_from_a(out);
        let mut out = Vec::new();
        self.b.tick(now, &mut out);
        self.carry_from_b(out, 0);
        let mut out = Vec::new();
        self.c.tick(now, &mut out);
        self.carry_from_c(out, 0);
    }

    fn carry_from_a(&mut self, out: Vec<MeshOutput>) {
        for o in out {
            if let MeshOutput::Transmit { hardif: 0, dst, packet } = o {
                let mut next = Vec::new();
                self.b.receive(self.now, 0, A_HARDIF[0], dst, &packet, &mut next);
                self.carry_from_b(next, 1);
            }
        }
    }

    fn carry_from_b(&mut self, out: Vec<MeshOutput>, depth: u32) {
        if depth > 4 {
            return;
        }
        for o in out {
            let MeshOutput::Transmit { hardif, dst, mut packet } = o else {
                continue;
            };
            let mut next = Vec::new();
            if hardif == 0 {
                if let Some((i, x)) = self.mutate.take() {
                    if let Some(byte) = packet.get_mut(i) {
                        *byte ^= x;
                    } else {
                        packet.truncate(i % (packet.len() + 1));
                    }
                }
                self.a.receive(self.now, 0, B_TO_A, dst, &packet, &mut next);
                for o in next.drain(..) {
                    if let MeshOutput::Transmit { hardif: 0, dst, packet } = o {
                        let mut back = Vec::new();
                        self.b.receive(self.now, 0, A_HARDIF[0], dst, &packet, &mut back);
                        self.carry_from_b(back, depth + 1);
                    }
                }
            } else {
                self.c.receive(self.now, 0, B_TO_C, dst, &packet, &mut next);
                self.carry_from_c(next, depth + 1);
            }
        }
    }

    fn carry_from_c(&mut self, out: Vec<MeshOutput>, depth: u32) {
        if depth > 4 {
            return;
        }
        for o in out {
            if let MeshOutput::Transmit { dst, packet, .. } = o {
                let mut next = Vec::new();
                self.b.receive(self.now, 1, C_TO_B, dst, &packet, &mut next);
                self.carry_from_b(next, depth + 1);
            }
        }
    }

    /// Raw bytes into A, as if from a neighbour.
    fn inject(&mut self, op: u8, arg: u8, bytes: &[u8]) {
        let hardif = (arg % 4) as u32; // 3: not one of ours
        let src = if arg & 0x10 != 0 {
            B_TO_A
        } else {
            MacAddr([2, 0, 0, 0, 2, arg])
        };
        let dst = match (op >> 2) % 3 {
            0 => MacAddr::BROADCAST,
            1 => A_HARDIF[(hardif % 3) as usize],
            _ => MacAddr([2, 0, 0, 0, 3, arg]),
        };
        let mut pkt = bytes.to_vec();
        if op & 0x40 != 0 && pkt.len() >= 10 {
            pkt[4..10].copy_from_slice(&A.0);
        }
        if op & 0x80 != 0 && pkt.len() >= 16 {
            let who = if arg & 0x20 != 0 { C } else { B };
            pkt[10..16].copy_from_slice(&who.0);
        }
        let mut out = Vec::new();
        self.a.receive(self.now, hardif, src, dst, &pkt, &mut out);
        self.carry_from_a(out);
    }

    /// B sends something real to A (or through A's view of C), mutated
    /// on its way to A by the record's (index, xor) when xor is not 0.
    fn from_b(&mut self, op: u8, arg: u8, bytes: &[u8]) {
        self.mutate = Some((arg as usize * 2 % 600, bytes.first().copied().unwrap_or(0)));
        let now = self.now;
        let mut out = Vec::new();
        match (op >> 2) % 5 {
            0 => {
                self.b.send_unicast(now, A, bytes, &mut out);
            }
            1 => self.b.send_broadcast(now, bytes, &mut out),
            2 => {
                self.b.icmp_probe(now, A, arg.max(1), 7, u16::from(arg), &mut out);
            }
            3 => {
                // A client appears or roams: TT changes, TT requests, ROAM.
                let mac = MacAddr([0x52, 0x54, 0, 0, 1, arg]);
                if arg & 1 == 0 {
                    self.b.tt_local_add_announce(mac, u16::from(arg >> 5), &mut out);
                } else {
                    self.b.tt_local_del(mac, u16::from(arg >> 5));
                }
            }
            _ => {
                // C's traffic forwarded by B, and A's to C through B.
                let mut c_out = Vec::new();
                self.c.send_unicast(now, A, bytes, &mut c_out);
                self.carry_from_c(c_out, 0);
                let mut a_out = Vec::new();
                self.a.send_unicast(now, C, bytes, &mut a_out);
                self.carry_from_a(a_out);
            }
        }
        self.carry_from_b(out, 0);
        self.mutate = None;
    }
}

fuzz_target!(|data: &[u8]| {
    let mut net = Net::new();
    for (op, arg, bytes) in common::records(data, 4) {
        match op % 4 {
            0 | 1 => net.inject(op, arg, bytes),
            2 => net.from_b(op, arg, bytes),
            _ => net.advance(Duration::from_millis(u64::from(arg) * 40)),
        }
    }
    let _ = net.a.originators();
    let _ = net.a.tt_global_entries();
});
