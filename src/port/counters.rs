//! Per-port counters (what `ctl ports` shows), added up over the workers'
//! queues of a port.

use serde::Serialize;

/// Per-port counters; drops are counted by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PortCounters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// From the kernel: shorter than an Ethernet header.
    pub rx_drop_short: u64,
    /// From the kernel: longer than MTU + header + tag (or than the buffer).
    pub rx_drop_oversize: u64,
    /// read(2) failed with something other than EAGAIN.
    pub rx_errors: u64,
    /// An attached port's receive ring: frames the kernel lost to a full
    /// ring, cut to their slot with no whole copy, or slots that did not
    /// parse.
    pub rx_drop_ring: u64,
    pub tx_drop_short: u64,
    pub tx_drop_oversize: u64,
    /// The kernel side's queue was full (EAGAIN), or it took part of a frame.
    pub tx_drop_busy: u64,
    /// write(2) failed otherwise (e.g. EIO while the link is down).
    pub tx_errors: u64,
    /// read(2) calls that returned something (one may carry 40+ frames).
    pub rx_reads: u64,
    /// GSO super-frames among them (each counted in rx_frames per segment).
    pub rx_gso: u64,
    /// Plain frames whose partial checksum (NEEDS_CSUM) we completed.
    pub rx_csum_completed: u64,
    /// Virtio header with unknown flags, or GSO without NEEDS_CSUM.
    pub rx_drop_bad_vnet: u64,
    /// gso_type UFO, ECN or unknown: never enabled, so never expected.
    pub rx_drop_unsupported_gso: u64,
    /// gso_size 0 or hdr_len past the frame.
    pub rx_drop_bad_gso: u64,
    /// Headers of a super-frame disagree with its type or its length.
    pub rx_drop_bad_headers: u64,
    /// csum_start/csum_offset outside the frame or not at the L4 checksum.
    pub rx_drop_bad_csum: u64,
    /// write(2)/writev(2) calls that the kernel took.
    pub tx_writes: u64,
    /// Coalesced super-frames written (each counted in tx_frames per segment).
    pub tx_gro: u64,
    /// UDP super-frames (USO) among tx_gro.
    pub tx_uso: u64,
}

impl PortCounters {
    /// Adds another queue's counts (the port's total over workers).
    pub fn add(&mut self, o: &PortCounters) {
        macro_rules! add {
            ($($f:ident),*) => { $(self.$f += o.$f;)* };
        }
        add!(
            rx_frames,
            rx_bytes,
            tx_frames,
            tx_bytes,
            rx_drop_short,
            rx_drop_oversize,
            rx_errors,
            rx_drop_ring,
            tx_drop_short,
            tx_drop_oversize,
            tx_drop_busy,
            tx_errors,
            rx_reads,
            rx_gso,
            rx_csum_completed,
            rx_drop_bad_vnet,
            rx_drop_unsupported_gso,
            rx_drop_bad_gso,
            rx_drop_bad_headers,
            rx_drop_bad_csum,
            tx_writes,
            tx_gro,
            tx_uso
        );
    }
}
