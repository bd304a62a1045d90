//! Asking a running topology: `ctl` on a hypervisor, pings between VMs,
//! originators, hard interfaces and next hops, cutting an underlay path.

use std::time::Duration;

use serde_json::Value;

use super::*;

impl Topology {
    /// `meshwire ctl --json` on hypervisor `hv`.
    pub fn ctl(&self, hv: usize, what: &str) -> Value {
        let sock = self.socket(hv);
        let out = sh(&[
            BIN,
            "ctl",
            "--socket",
            sock.to_str().unwrap(),
            // A full FDB renders for long beside a CPU hog in a debug build.
            "--timeout",
            "120",
            what,
            "--json",
        ]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ctl {what}: {e}: {out}"))
    }

    pub fn ping(&self, from: &str, to_ip: &str, count: u32, extra: &[&str]) -> bool {
        let vm = self.vm(from);
        let c = count.to_string();
        let mut args = vec!["ping", "-n", "-q", "-c", &c, "-W", "1", "-i", "0.2"];
        args.extend_from_slice(extra);
        args.push(to_ip);
        ns_try(&vm.ns, &args)
    }

    /// Pings until one answer arrives or `limit` passes.
    pub fn ping_until(&self, from: &str, to_ip: &str, limit: Duration) -> bool {
        wait_until(limit, || self.ping(from, to_ip, 1, &[]))
    }

    /// The originator MAC of a hypervisor (derived from its key).
    pub fn originator_of(&self, hv: usize) -> String {
        let pk = meshwire::keys::decode_key(&self.hvs[hv - 1].public_key).unwrap();
        meshwire::keys::originator_mac(&pk).to_string()
    }

    /// Cuts (or heals) the underlay path between two hypervisors: each
    /// drops what it would send to the other, as a broken link between
    /// sites does.
    pub fn cut_path(&self, a: usize, b: usize, on: bool) {
        let verb = if on { "add" } else { "del" };
        for (x, y) in [(a, b), (b, a)] {
            ns_exec(
                &self.hvs[x - 1].ns,
                &[
                    "ip",
                    "route",
                    verb,
                    "blackhole",
                    &format!("198.18.0.{y}/32"),
                ],
            );
        }
    }

    /// The MAC of `hv`'s hard interface towards `towards`.
    pub fn hardif_of(&self, hv: usize, towards: usize) -> String {
        let a = meshwire::keys::decode_key(&self.hvs[hv - 1].public_key).unwrap();
        let b = meshwire::keys::decode_key(&self.hvs[towards - 1].public_key).unwrap();
        meshwire::keys::hardif_mac(&a, &b).to_string()
    }

    /// `hv`'s next hop towards `to`'s originator, if it has a route.
    pub fn next_hop(&self, hv: usize, to: usize) -> Option<String> {
        let o = self.originator_of(to);
        self.ctl(hv, "originators")
            .as_array()?
            .iter()
            .find(|e| e["originator"] == o)
            .and_then(|e| e["next_hop"].as_str().map(String::from))
    }

    /// Waits until every hypervisor has a route (a next hop) to every other
    /// hypervisor's originator.
    pub fn wait_routes(&self, limit: Duration) -> bool {
        let n = self.hvs.len();
        wait_until(limit, || {
            (1..=n).all(|a| {
                let origs = self.ctl(a, "originators");
                (1..=n).filter(|&b| b != a).all(|b| {
                    let o = self.originator_of(b);
                    origs.as_array().is_some_and(|l| {
                        l.iter()
                            .any(|e| e["originator"] == o && e["next_hop"].is_string())
                    })
                })
            })
        })
    }
}
