//! Periodic work: boringtun's timers for every peer (handshake retries,
//! rekeying, keepalives, persistent keepalives, session expiry), expiry of
//! unfinished inner reassembly, and the once-a-second reset of the shared
//! handshake rate limiter.
//!
//! boringtun stamps its events with the time of the last `update_timers`
//! call, so the caller's tick period (100-250 ms) is also the resolution of
//! every WireGuard timer.

use boringtun::noise::TunnResult;

use super::{TunnelCore, TunnelIo};

impl TunnelCore {
    pub(super) fn tick_inner(&self, io: &mut TunnelIo) {
        // The shared limiter is ours to reset (Tunns only reset their own).
        self.matcher.rate_limiter.reset_count();
        let now = std::time::Instant::now();
        let TunnelIo {
            net, out, counters, ..
        } = io;
        for id in self.peers.ids() {
            let Some(mut peer) = self.peers.lock(id) else {
                continue;
            };
            let peer = &mut *peer;
            // Unfinished inner datagrams time out even if the peer went
            // quiet.
            peer.reasm.expire(now, counters);
            match peer.tunn.update_timers(out) {
                TunnResult::WriteToNetwork(msg) => match peer.endpoint {
                    Some(to) => net.queue(counters, Some(peer), msg, to),
                    None => counters.tx_no_endpoint += 1,
                },
                // ConnectionExpired: boringtun gave up (90 s of failed
                // handshakes, or keys 540 s old). The next send_frame starts
                // over; the mesh sends OGMs every second, so it will.
                TunnResult::Err(_) | TunnResult::Done => {}
                TunnResult::WriteToTunnelV4(..) | TunnResult::WriteToTunnelV6(..) => {}
            }
            // A keepalive carries a counter: it leaves before the lock does
            // (per-peer wire order, see `Output`). Rare: one per peer per
            // keepalive period at most.
            if net.sealed_waiting() {
                net.flush(counters);
            }
        }
        net.flush(counters);
    }
}
