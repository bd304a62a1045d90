//! `meshwire ctl ping` and `traceroute`: our batman ICMP probes go out
//! through the hub like any mesh output (`mesh/icmp.rs` builds them and
//! keeps their answers).

use std::time::Instant;

use super::{Bridge, Egress};
use crate::wire::MacAddr;

impl Bridge {
    /// An echo request to `dest`: an originator, or a client MAC the
    /// translation table places at one. Returns the originator probed.
    pub fn icmp_probe(
        &mut self,
        now: Instant,
        dest: MacAddr,
        ttl: u8,
        uid: u8,
        seqno: u16,
        io: &mut impl Egress,
    ) -> Result<MacAddr, String> {
        let orig = match self.mesh.tt_global_lookup(dest, 0) {
            Some(o) if !self.mesh.originators().iter().any(|i| i.orig == dest) => o,
            _ => dest,
        };
        if !self
            .mesh
            .icmp_probe(now, orig, ttl, uid, seqno, &mut self.out)
        {
            return Err(format!(
                "{dest}: no route (not an originator or a client the mesh knows)"
            ));
        }
        self.flush(now, io);
        Ok(orig)
    }
}
