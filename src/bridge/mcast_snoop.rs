//! IGMP/MLD snooping at the ports, and meshwire as querier on them: the
//! listener side of batman-adv's multicast optimisation (`multicast.c`'s
//! `batadv_mcast_mla_update`, which a kernel node feeds from its bridge's
//! snooping).
//!
//! Every report or leave a port sends updates that port's listeners; a
//! group with a listener on any port is announced as a TT local entry of
//! its multicast MAC (`batadv_mcast_mla_tt_add`), and retracted when the
//! last listener leaves or times out (`batadv_mcast_mla_tt_retract`). Kernel
//! nodes then send multicast for that group here as unicast copies and
//! need not send us groups nobody here listens to.
//!
//! Guests repeat their reports only when asked: without a querier a
//! listener would time out after 260 s although it is still there. So
//! meshwire is the IGMP/MLD querier on its ports (general queries every
//! 125 s, and at once on a new port), the RFCs' defaults: a listener
//! answers within 10 s and is kept for 2 x 125 + 10 = 260 s, so two lost
//! reports in a row still do not cut it off.
//!
//! Unsnoopable groups (224.0.0.0/24, ff02::1) are not tracked: hosts do
//! not report them, WANT_ALL_UNSNOOPABLES covers them. Other IPv6
//! link-local groups (solicited-node ff02::1:ffXX:XXXX) are, as the
//! kernel does: neighbour discovery to our VMs depends on them.
//!
//! Only the untagged network is snooped (the kernel's multicast
//! optimisation handles untagged frames only); while any port carries a
//! VLAN we keep wanting all IPv4/IPv6 multicast.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::mesh::multicast::flags;
use crate::port::PortId;
use crate::wire::igmp::{self, Change, Kind};
use crate::wire::MacAddr;

/// How long a listener lasts without a new report (RFC 3376 8.4: robustness
/// 2 x query interval 125 s + max response 10 s).
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(260);
/// How often we ask the ports for their listeners (RFC 3376 8.2).
pub const QUERY_INTERVAL: Duration = Duration::from_secs(125);
/// How long after a query its answers may take (the queries' max response
/// time, 10 s), plus a second for the report to cross the process.
pub const ANSWER_WINDOW: Duration = Duration::from_secs(11);
/// Groups one port may hold: a VM cannot make us announce unbounded TT
/// entries (refusals are counted).
pub const GROUPS_PER_PORT: usize = 256;
/// How long a query from someone else (a multicast router) makes us keep
/// wanting all routable multicast of its family.
const ROUTER_TIMEOUT: Duration = MEMBERSHIP_TIMEOUT;

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct SnoopCounters {
    /// Report records that added or refreshed a listener.
    pub joins: u64,
    /// Leaves (IGMP leave, MLD done, v3/v2 records leaving).
    pub leaves: u64,
    /// Listeners dropped because no report refreshed them in 260 s.
    pub expired: u64,
    /// Joins refused: the port already holds `GROUPS_PER_PORT` groups.
    pub refused_port_full: u64,
    /// Report records for unsnoopable or non-multicast groups (ignored).
    pub ignored_groups: u64,
    /// IGMP/MLD messages that did not parse (dropped, not flooded).
    pub malformed: u64,
    /// General queries we sent into ports (IGMP and MLD counted apart).
    pub queries_sent: u64,
    /// Queries from ports (another querier: a multicast router).
    pub foreign_queries: u64,
}

/// The listeners of every port and the querier's clock.
#[derive(Debug, Default)]
pub struct Snoop {
    /// port -> group -> when its listener expires.
    ports: HashMap<PortId, HashMap<IpAddr, Instant>>,
    /// Announced group MACs and how many (port, group) pairs hold each.
    macs: HashMap<MacAddr, u32>,
    /// (mac, added) for the translation table, taken by the bridge.
    changes: Vec<(MacAddr, bool)>,
    next_query: Option<Instant>,
    /// Ports that get a query at the next tick (new ports).
    query_now: Vec<PortId>,
    /// Ports asked again after a leave (bridge uplinks).
    requery: Vec<PortId>,
    /// Until then we still want all IPv4/IPv6 (listeners not yet heard).
    want_all_until: Option<Instant>,
    /// The last query another querier sent (v4, v6).
    router_seen: [Option<Instant>; 2],
    pub counters: SnoopCounters,
}

/// What a frame from a port meant to the snooper.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// No membership message: switch it as usual.
    Other,
    /// A report, leave or query: switch it as usual too (other snoopers and
    /// routers want reports).
    Membership,
    /// A membership message that does not parse: drop it.
    Malformed,
}

impl Snoop {
    /// Reads a frame from `port` (untagged network only). `fast_leave`: the
    /// port is one VM's (its leave is the group's last listener there).
    pub fn from_port(
        &mut self,
        now: Instant,
        port: PortId,
        frame: &[u8],
        fast_leave: bool,
    ) -> Seen {
        // Records are applied only once the whole message parsed: a report
        // that breaks halfway is not half believed. (No allocation unless
        // the frame is a report.)
        let mut records = Vec::new();
        let kind = igmp::parse(frame, |g, c| records.push((g, c)));
        match kind {
            Ok(None) => Seen::Other,
            Err(_) => {
                self.counters.malformed += 1;
                Seen::Malformed
            }
            Ok(Some(Kind::Query { v6 })) => {
                self.counters.foreign_queries += 1;
                self.router_seen[usize::from(v6)] = Some(now);
                Seen::Membership
            }
            Ok(Some(Kind::Report)) => {
                for (g, c) in records {
                    self.record(now, port, g, c, fast_leave);
                }
                Seen::Membership
            }
        }
    }

    fn record(&mut self, now: Instant, port: PortId, group: IpAddr, c: Change, fast_leave: bool) {
        if !snoopable(group) {
            self.counters.ignored_groups += 1;
            return;
        }
        let groups = self.ports.entry(port).or_default();
        match c {
            Change::Join => {
                if !groups.contains_key(&group) && groups.len() >= GROUPS_PER_PORT {
                    self.counters.refused_port_full += 1;
                    return;
                }
                self.counters.joins += 1;
                if groups.insert(group, now + MEMBERSHIP_TIMEOUT).is_none() {
                    self.mac_ref(igmp::group_mac(group), true);
                }
            }
            Change::Leave => {
                self.counters.leaves += 1;
                if !fast_leave {
                    // A bridge uplink: other hosts behind it may still
                    // listen. The port is asked again at the next tick and
                    // the group kept only for the answers' window (instead
                    // of the RFCs' group-specific query, a general one:
                    // simpler, and every listener there answers it).
                    if let Some(exp) = groups.get_mut(&group) {
                        *exp = (*exp).min(now + ANSWER_WINDOW);
                        if !self.requery.contains(&port) {
                            self.requery.push(port);
                        }
                    }
                    return;
                }
                // A VM port: its leave is the last listener's.
                if groups.remove(&group).is_some() {
                    self.mac_ref(igmp::group_mac(group), false);
                }
            }
        }
    }

    /// Counts one more or one less (port, group) on the group's MAC; the
    /// first and the last change the translation table.
    fn mac_ref(&mut self, mac: MacAddr, add: bool) {
        let n = self.macs.entry(mac).or_insert(0);
        if add {
            *n += 1;
            if *n == 1 {
                self.changes.push((mac, true));
            }
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.macs.remove(&mac);
                self.changes.push((mac, false));
            }
        }
    }

    /// Translation-table changes since the last call: (group MAC, added).
    pub fn take_changes(&mut self) -> Vec<(MacAddr, bool)> {
        std::mem::take(&mut self.changes)
    }

    /// A new port: it is asked at the next tick, and until its answers can
    /// have come we want all multicast again (its VM may have joined before
    /// we could hear it).
    pub fn port_added(&mut self, port: PortId) {
        if !self.query_now.contains(&port) {
            self.query_now.push(port);
        }
    }

    /// A port went: its listeners with it.
    pub fn port_removed(&mut self, port: PortId) {
        self.query_now.retain(|&p| p != port);
        self.requery.retain(|&p| p != port);
        if let Some(groups) = self.ports.remove(&port) {
            for g in groups.into_keys() {
                self.mac_ref(igmp::group_mac(g), false);
            }
        }
    }

    /// Timers: expired listeners go; returns the ports to send a general
    /// query to now (`all` stands for every port).
    pub fn tick(&mut self, now: Instant) -> Query {
        let mut gone = Vec::new();
        for (p, groups) in &mut self.ports {
            groups.retain(|g, exp| {
                let keep = *exp > now;
                if !keep {
                    gone.push((*p, *g));
                }
                keep
            });
        }
        for (_, g) in gone {
            self.counters.expired += 1;
            self.mac_ref(igmp::group_mac(g), false);
        }
        if self.next_query.is_none_or(|t| now >= t) {
            // The first tick: no listener is known before the answers to
            // this first query are in.
            if self.next_query.is_none() {
                self.want_all_until = Some(now + ANSWER_WINDOW);
            }
            self.next_query = Some(now + QUERY_INTERVAL);
            self.query_now.clear();
            self.requery.clear();
            return Query::All;
        }
        if !self.query_now.is_empty() {
            self.want_all_until = Some(now + ANSWER_WINDOW);
        }
        let mut ports = std::mem::take(&mut self.query_now);
        for p in self.requery.drain(..) {
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        Query::Ports(ports)
    }

    /// The MCAST TVLV flags to announce while snooping. `tagged`: some port
    /// carries a VLAN, whose listeners we do not announce.
    pub fn own_flags(&self, now: Instant, tagged: bool) -> u8 {
        let mut f = flags::WANT_ALL_UNSNOOPABLES;
        let warming = self.want_all_until.is_none_or(|t| now < t);
        if tagged || warming {
            return f | flags::WANT_ALL_IPV4 | flags::WANT_ALL_IPV6;
        }
        // A multicast router behind a port (it queries) wants all routable
        // multicast of its family: the inverted WANT_NO_RTR bit says so.
        let router = |i: usize| {
            self.router_seen[i].is_some_and(|t| now.saturating_duration_since(t) < ROUTER_TIMEOUT)
        };
        if !router(0) {
            f |= flags::WANT_NO_RTR4;
        }
        if !router(1) {
            f |= flags::WANT_NO_RTR6;
        }
        f
    }

    /// The listeners of `port` (for `ctl` and tests).
    pub fn groups(&self, port: PortId) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self
            .ports
            .get(&port)
            .map(|g| g.keys().copied().collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// Which ports a general query goes to.
#[derive(Debug, PartialEq, Eq)]
pub enum Query {
    All,
    Ports(Vec<PortId>),
}

/// Groups whose listeners reports reveal: multicast, and neither
/// 224.0.0.0/24 nor ff02::1 nor narrower than link-local scope.
pub fn snoopable(g: IpAddr) -> bool {
    match g {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_multicast() && !(o[0] == 224 && o[1] == 0 && o[2] == 0)
        }
        IpAddr::V6(a) => a.is_multicast() && a.octets()[1] & 0x0f >= 2 && a != igmp::ALL_NODES,
    }
}
