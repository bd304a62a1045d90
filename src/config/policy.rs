//! The port policy keys of `[[port]]` (a contract, see issue 11) and their
//! checks. The same checks serve `meshwire ctl port add/set`, so a policy
//! set at runtime is refused for the same reasons, naming the same field.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::{err, ConfigError, PortConfig};
use crate::bridge::policy::mcast::McastKind;
use crate::bridge::policy::{DEFAULT_ARP_ND_RATE, DEFAULT_BROADCAST_RATE};
use crate::bridge::PortPolicy;
use crate::wire::MacAddr;

/// Largest rate accepted (per second); 0 turns a limit off.
pub const MAX_RATE: u32 = 10_000_000;

/// A port's policy as written: absent keys take the defaults of the kind
/// of port (`mac` makes it a VM port).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySpec {
    pub mac: Option<MacAddr>,
    #[serde(default)]
    pub ipv4: Vec<Ipv4Addr>,
    #[serde(default)]
    pub ipv6: Vec<Ipv6Addr>,
    pub vlan: Option<u16>,
    #[serde(default)]
    pub trunk: Vec<u16>,
    pub dhcp_server: Option<bool>,
    pub router_advertisements: Option<bool>,
    pub arp_nd_rate: Option<u32>,
    pub broadcast_rate: Option<u32>,
    pub multicast: Option<Vec<McastKind>>,
}

impl PolicySpec {
    /// Checks every key and fills in the defaults; errors name the field
    /// as `<prefix>.<key>` (`port[0].ipv4`).
    pub fn resolve(&self, prefix: &str) -> Result<PortPolicy, ConfigError> {
        let f = |k: &str| format!("{prefix}.{k}");
        if let Some(m) = self.mac {
            if !m.is_unicast() || m.is_zero() {
                return Err(err(f("mac"), format!("{m} is not a unicast MAC")));
            }
        }
        let vm = self.mac.is_some();
        let addresses = !self.ipv4.is_empty() || !self.ipv6.is_empty();
        if !vm && addresses {
            let k = if self.ipv4.is_empty() { "ipv6" } else { "ipv4" };
            return Err(err(f(k), "addresses belong to a VM port: give its mac too"));
        }
        check_unique(&self.ipv4, &f("ipv4"), |a| {
            (a.is_unspecified() || a.is_multicast() || a.is_broadcast())
                .then_some("is not a unicast address")
        })?;
        check_unique(&self.ipv6, &f("ipv6"), |a| {
            (a.is_unspecified() || a.is_multicast()).then_some("is not a unicast address")
        })?;
        if let Some(v) = self.vlan {
            check_vid(v, &f("vlan"))?;
        }
        if vm && !self.trunk.is_empty() {
            return Err(err(
                f("trunk"),
                "only uplinks (ports without mac) carry tagged VLANs",
            ));
        }
        check_unique(&self.trunk, &f("trunk"), |&v| {
            if check_vid(v, "").is_err() {
                Some("VLAN ids are 1 to 4094")
            } else if Some(v) == self.vlan {
                Some("is the port's own (untagged) vlan")
            } else {
                None
            }
        })?;
        for (k, r) in [
            ("arp_nd_rate", self.arp_nd_rate),
            ("broadcast_rate", self.broadcast_rate),
        ] {
            if r.is_some_and(|r| r > MAX_RATE) {
                return Err(err(
                    f(k),
                    format!("at most {MAX_RATE} per second (0: no limit)"),
                ));
            }
        }
        Ok(PortPolicy {
            mac: self.mac,
            ipv4: self.ipv4.clone(),
            ipv6: self.ipv6.clone(),
            vlan: self.vlan,
            trunk: self.trunk.clone(),
            // Server roles are off on VM ports, on for uplinks.
            dhcp_server: self.dhcp_server.unwrap_or(!vm),
            router_advertisements: self.router_advertisements.unwrap_or(!vm),
            arp_nd_rate: self.arp_nd_rate.unwrap_or(DEFAULT_ARP_ND_RATE),
            broadcast_rate: self.broadcast_rate.unwrap_or(DEFAULT_BROADCAST_RATE),
            multicast: self.multicast.clone(),
        })
    }

    /// `self` with the keys `change` gives replaced (`ctl port set`):
    /// addresses are replaced per family, `vlan = 0` clears the VLAN.
    pub fn merged(&self, change: &PolicySpec) -> PolicySpec {
        let mut s = self.clone();
        if change.mac.is_some() {
            s.mac = change.mac;
        }
        if !change.ipv4.is_empty() {
            s.ipv4 = change.ipv4.clone();
        }
        if !change.ipv6.is_empty() {
            s.ipv6 = change.ipv6.clone();
        }
        match change.vlan {
            Some(0) => s.vlan = None,
            Some(v) => s.vlan = Some(v),
            None => {}
        }
        if !change.trunk.is_empty() {
            s.trunk = change.trunk.clone();
        }
        s.dhcp_server = change.dhcp_server.or(s.dhcp_server);
        s.router_advertisements = change.router_advertisements.or(s.router_advertisements);
        s.arp_nd_rate = change.arp_nd_rate.or(s.arp_nd_rate);
        s.broadcast_rate = change.broadcast_rate.or(s.broadcast_rate);
        if change.multicast.is_some() {
            s.multicast = change.multicast.clone();
        }
        s
    }
}

impl PortConfig {
    /// The policy keys of this port.
    pub fn policy_spec(&self) -> PolicySpec {
        PolicySpec {
            mac: self.mac,
            ipv4: self.ipv4.clone(),
            ipv6: self.ipv6.clone(),
            vlan: self.vlan,
            trunk: self.trunk.clone(),
            dhcp_server: self.dhcp_server,
            router_advertisements: self.router_advertisements,
            arp_nd_rate: self.arp_nd_rate,
            broadcast_rate: self.broadcast_rate,
            multicast: self.multicast.clone(),
        }
    }

    /// Who may connect to a vhost-user port's socket; an error names the
    /// key.
    pub fn vhost_access(&self) -> Result<crate::port::vhost::SocketAccess, (&'static str, String)> {
        super::access::vhost_socket(
            self.vhost_user_group.as_ref(),
            self.vhost_user_mode.as_ref(),
        )
    }

    /// The port's policy (checked when the config was).
    pub fn policy(&self) -> PortPolicy {
        self.policy_spec().resolve("port").unwrap_or_default()
    }
}

fn check_vid(v: u16, field: &str) -> Result<(), ConfigError> {
    if (1..=4094).contains(&v) {
        Ok(())
    } else {
        Err(err(field, "VLAN ids are 1 to 4094"))
    }
}

/// Each item passes `bad` (None) and appears once.
fn check_unique<T: std::hash::Hash + Eq + std::fmt::Display>(
    items: &[T],
    field: &str,
    bad: impl Fn(&T) -> Option<&'static str>,
) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for (i, a) in items.iter().enumerate() {
        if let Some(why) = bad(a) {
            return Err(err(format!("{field}[{i}]"), format!("{a} {why}")));
        }
        if !seen.insert(a) {
            return Err(err(format!("{field}[{i}]"), format!("{a} appears twice")));
        }
    }
    Ok(())
}
