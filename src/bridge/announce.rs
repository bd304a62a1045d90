//! `meshwire ctl announce`: announcements sent on a VM's behalf, for
//! migration hooks and VMs that announce nothing themselves.
//!
//! The frames are the ones a guest or qemu would send (gratuitous ARP,
//! unsolicited NA, or a RARP without addresses) and they enter as if the VM
//! had sent them into its port: they claim the MACs here (TT entry, ROAM
//! adverts, an out-of-cycle OGM) and flood to the other ports and the mesh.
//! They are not written into the port itself, whose clients they describe.
//! They pass the port's policy like any frame from it; a VM port's own MAC
//! and addresses (its policy) are what is announced when none are given.

use std::net::IpAddr;
use std::time::Instant;

use super::{Bridge, Egress};
use crate::port::PortId;
use crate::switch::announce;
use crate::wire::MacAddr;

/// Frames one `ctl announce` may send. They are built and switched while
/// the node is held (every worker waits), so the work is bounded: an
/// uplink with 4096 clients and 32 addresses would be 131,072 frames.
pub const MAX_ANNOUNCE_FRAMES: usize = 1024;

impl Bridge {
    /// Announces `mac` (or, with None, every live client of `port`) with
    /// each of `ips`, or with a RARP when there are none. Returns how many
    /// frames were sent.
    pub fn announce(
        &mut self,
        now: Instant,
        port: PortId,
        mac: Option<MacAddr>,
        ips: &[IpAddr],
        io: &mut impl Egress,
    ) -> Result<usize, String> {
        if !self.ports.contains(&port) {
            return Err(format!("no port {port}"));
        }
        let own = self.hooks.policy(port).cloned().unwrap_or_default();
        if let (Some(m), Some(o)) = (mac, own.mac) {
            if m != o {
                // The port's policy would drop them as spoofed.
                return Err(format!(
                    "port {} speaks only as {o}",
                    self.switch.port_name(port)
                ));
            }
        }
        let clients: Vec<(MacAddr, u16)> = match mac.or(own.mac) {
            Some(m) if m.is_unicast() && !m.is_zero() => vec![(m, self.hooks.port_vid(port))],
            Some(m) => return Err(format!("{m} is not a unicast MAC")),
            None => self.switch.port_clients(now, port),
        };
        if clients.is_empty() {
            return Err(format!(
                "no client seen on {} yet: give --mac",
                self.switch.port_name(port)
            ));
        }
        // The port's own addresses, for its own MAC, when none are given.
        let mut ips = ips.to_vec();
        if ips.is_empty() && own.mac.is_some() && mac.is_none_or(|m| Some(m) == own.mac) {
            ips.extend(own.ipv4.iter().map(|&a| IpAddr::V4(a)));
            ips.extend(self.hooks.learned_v4(port).map(IpAddr::V4));
            ips.extend(own.ipv6.iter().map(|&a| IpAddr::V6(a)));
        }
        // Bounded (see MAX_ANNOUNCE_FRAMES): the first clients by MAC.
        let per_client = ips.len().max(1);
        let mut clients = clients;
        let fits = (MAX_ANNOUNCE_FRAMES / per_client).max(1);
        if clients.len() > fits {
            tracing::warn!(
                port = %self.switch.port_name(port),
                announced = fits,
                clients = clients.len(),
                "ctl announce: too many frames for one request; give --mac for the others"
            );
            clients.truncate(fits);
        }
        let mut frame = Vec::with_capacity(128);
        let mut sent = 0;
        for (m, vid) in clients {
            // The port's own network is untagged toward it (the ingress
            // hook tags it); other VLANs (an uplink's trunk) tagged.
            let vlan = if vid == self.hooks.port_vid(port) {
                None
            } else {
                announce::vlan_of_batman_vid(vid)
            };
            if ips.is_empty() {
                announce::build_rarp(&mut frame, m, vlan);
                self.from_port(now, port, &frame, io);
                sent += 1;
            }
            for ip in &ips {
                match ip {
                    IpAddr::V4(a) => announce::build_gratuitous_arp(&mut frame, m, *a, vlan),
                    IpAddr::V6(a) => announce::build_unsolicited_na(&mut frame, m, *a, vlan),
                }
                self.from_port(now, port, &frame, io);
                sent += 1;
            }
        }
        Ok(sent)
    }
}
