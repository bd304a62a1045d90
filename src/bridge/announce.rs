//! `meshwire ctl announce`: announcements sent on a VM's behalf, for
//! migration hooks and VMs that announce nothing themselves.
//!
//! The frames are the ones a guest or qemu would send (gratuitous ARP,
//! unsolicited NA, or a RARP without addresses) and they enter as if the VM
//! had sent them into its port: they claim the MACs here (TT entry, ROAM
//! adverts, an out-of-cycle OGM) and flood to the other ports and the mesh.
//! They are not written into the port itself, whose clients they describe.

use std::net::IpAddr;
use std::time::Instant;

use super::{Bridge, Egress};
use crate::port::PortId;
use crate::switch::announce;
use crate::wire::MacAddr;

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
        let clients: Vec<(MacAddr, u16)> = match mac {
            Some(m) if m.is_unicast() && !m.is_zero() => vec![(m, 0)],
            Some(m) => return Err(format!("{m} is not a unicast MAC")),
            None => self.switch.port_clients(now, port),
        };
        if clients.is_empty() {
            return Err(format!(
                "no client seen on {} yet: give --mac",
                self.switch.port_name(port)
            ));
        }
        let mut frame = Vec::with_capacity(128);
        let mut sent = 0;
        for (m, vid) in clients {
            let vlan = announce::vlan_of_batman_vid(vid);
            if ips.is_empty() {
                announce::build_rarp(&mut frame, m, vlan);
                self.from_port(now, port, &frame, io);
                sent += 1;
            }
            for ip in ips {
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
