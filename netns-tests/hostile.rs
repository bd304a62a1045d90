//! Issue 13: an authenticated WireGuard peer that lies in batman. Three
//! honest meshwire nodes (full mesh, one VM each); hypervisor 4 runs no
//! daemon but a `Liar` (real WireGuard sessions with nodes 1 and 2, whose
//! configs list its key). The liar is a proper neighbour first (its OGMs,
//! echoes of theirs: node 1 routes to it), then tries every attack of
//! README's "Hostile peers" on node 1 while VMs ping each other. Nothing
//! honest may move: routes, TT, FDB; and the pings keep being answered.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meshwire::wire::batman::bcast::{self, BcastPacket};
use meshwire::wire::batman::ogm;
use meshwire::wire::batman::tvlv::{self, tt_flags, tvlv_type, TtChange};
use meshwire::wire::batman::unicast::UnicastTvlvPacket;
use meshwire::wire::MacAddr;
use serde_json::Value;

use crate::common::liar::Liar;
use crate::common::*;

const LIAR: usize = 4;
const OGM_MS: u64 = 500;
const LIMIT: Duration = Duration::from_secs(60);

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn stat(t: &Topology, hv: usize, section: &str, key: &str) -> u64 {
    let s = t.ctl(hv, "stats");
    s[section][key]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {section}.{key}: {}", s[section]))
}

/// Polls until `hv`'s counter passes `before` (the attack has been seen).
fn counted(t: &Topology, hv: usize, section: &str, key: &str, before: u64) -> u64 {
    let mut now = before;
    let ok = wait_until(LIMIT, || {
        now = stat(t, hv, section, key);
        now > before
    });
    assert!(ok, "hv{hv}: {section}.{key} never counted the attack");
    now
}

/// The honest state: each node's next hop to each other node, where its
/// TT and FDB put each VM.
fn honest_view(t: &Topology) -> Vec<String> {
    let mut v = Vec::new();
    for hv in 1..=3 {
        for to in (1..=3).filter(|&o| o != hv) {
            v.push(format!(
                "hv{hv} next hop to hv{to}: {:?}",
                t.next_hop(hv, to)
            ));
        }
        let tt = t.ctl(hv, "tt");
        let fdb = t.ctl(hv, "fdb");
        for vm in &t.vms {
            let find = |list: &Value, key: &str| {
                list.as_array()
                    .and_then(|l| l.iter().find(|e| e["mac"] == vm.mac.as_str()))
                    .map(|e| e[key].to_string())
            };
            let tt_at = if vm.hv == hv {
                find(&tt["local"], "mac").map(|_| "local".to_string())
            } else {
                find(&tt["global"], "originator")
            };
            v.push(format!("hv{hv} tt {}: {tt_at:?}", vm.name));
            v.push(format!(
                "hv{hv} fdb {}: {:?}",
                vm.name,
                find(&fdb, "location")
            ));
        }
    }
    v
}

/// What the honest view must be: direct routes, every VM at its node.
fn expected_view(t: &Topology) -> Vec<String> {
    let mut v = Vec::new();
    for hv in 1..=3 {
        for to in (1..=3).filter(|&o| o != hv) {
            let hop = Some(t.hardif_of(to, hv));
            v.push(format!("hv{hv} next hop to hv{to}: {hop:?}"));
        }
        for vm in &t.vms {
            let o = format!("{:?}", t.originator_of(vm.hv));
            let (tt_at, fdb_at) = if vm.hv == hv {
                ("local".to_string(), format!("\"port t-{}\"", vm.name))
            } else {
                (
                    o.clone(),
                    format!("\"originator {}\"", t.originator_of(vm.hv)),
                )
            };
            v.push(format!("hv{hv} tt {}: {:?}", vm.name, Some(tt_at)));
            v.push(format!("hv{hv} fdb {}: {:?}", vm.name, Some(fdb_at)));
        }
    }
    v
}

/// A ping running through the attacks; stopped with SIGINT, which makes
/// ping print its summary.
struct Pinger(Child, String);

impl Pinger {
    fn start(t: &Topology, from: &str, to: &str) -> Pinger {
        let ip = t.vm(to).ip4.clone();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &t.vm(from).ns,
                "ping",
                "-n",
                "-q",
                "-i",
                "0.2",
            ])
            .arg(&ip)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ping");
        Pinger(child, format!("{from} -> {to}"))
    }

    /// (sent, answered).
    fn finish(self) -> (u64, u64) {
        try_sh(&["kill", "-INT", &self.0.id().to_string()]);
        let out = self.0.wait_with_output().expect("ping output");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let line = text
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .unwrap_or_else(|| panic!("{}: no ping summary: {text}", self.1));
        let n: Vec<u64> = line
            .split(',')
            .filter_map(|p| p.split_whitespace().next()?.parse().ok())
            .collect();
        (n[0], n[1])
    }
}

fn unicast_tvlv(src: MacAddr, dst: MacAddr, tvlv_region: &[u8]) -> Vec<u8> {
    let hlen = UnicastTvlvPacket::<&[u8]>::HEADER_LEN;
    let mut p = vec![0u8; hlen];
    {
        let mut u = UnicastTvlvPacket::new_unchecked(&mut p[..]);
        u.init_header();
        u.set_ttl(50);
        u.set_dest(dst);
        u.set_src(src);
        u.set_tvlv_len(tvlv_region.len() as u16);
    }
    p.extend_from_slice(tvlv_region);
    p
}

fn tt_container(flags: u8, ttvn: u8, changes: &[TtChange]) -> Vec<u8> {
    let mut value = Vec::new();
    tvlv::emit_tt_data(&mut value, flags, ttvn, &[], changes);
    let mut out = Vec::new();
    tvlv::emit(&mut out, tvlv_type::TT, 1, &value).unwrap();
    out
}

fn client(addr: MacAddr) -> TtChange {
    TtChange {
        flags: 0,
        addr,
        vid: 0,
    }
}

#[test]
fn a_hostile_authenticated_peer_moves_nothing_honest() {
    let opts = Opts {
        links: Some(vec![(1, 2), (1, 3), (2, 3), (1, LIAR), (2, LIAR)]),
        ..Opts::default()
    };
    let tap = [Attach::TapNic];
    let mut t = Topology::with_opts("mwH", &[&tap, &tap, &tap, &[]], OGM_MS, opts);
    for hv in 1..=3 {
        t.start(hv);
    }
    let liar = Liar::start(&t, LIAR, &[1, 2], Duration::from_millis(OGM_MS));
    assert!(
        wait_until(LIMIT, || liar.established()),
        "no WireGuard session with the liar"
    );
    // Every VM reachable, so every FDB and TT knows every VM.
    for a in ["vm1a", "vm2a", "vm3a"] {
        for b in ["vm1a", "vm2a", "vm3a"] {
            if a != b {
                let ip = t.vm(b).ip4.clone();
                assert!(t.ping_until(a, &ip, LIMIT), "{a} -> {b}\n{}", t.dump_logs());
            }
        }
    }
    let expected = expected_view(&t);
    let settled = wait_until(LIMIT, || honest_view(&t) == expected);
    assert!(settled, "honest mesh never settled: {:#?}", honest_view(&t));
    // The liar is a real neighbour: node 1 routes to it over its link.
    let liar_orig = liar.originator.to_string();
    let via = liar.mac_towards(1).to_string();
    let routed = wait_until(LIMIT, || {
        t.ctl(1, "originators").as_array().is_some_and(|l| {
            l.iter()
                .any(|e| e["originator"] == liar_orig.as_str() && e["next_hop"] == via.as_str())
        })
    });
    assert!(
        routed,
        "node 1 never routed to the liar: {}",
        t.ctl(1, "originators")
    );

    let pings = [
        Pinger::start(&t, "vm1a", "vm2a"),
        Pinger::start(&t, "vm3a", "vm1a"),
    ];
    let (o1, o2, o3) = (
        mac(&t.originator_of(1)),
        mac(&t.originator_of(2)),
        mac(&t.originator_of(3)),
    );
    let to1 = liar.peer_mac(1);

    // 1. Forged OGMs "from" nodes 2 and 3, perfect quality, fresh seqnos.
    let before = stat(&t, 1, "mesh", "ogm_route_kept_direct");
    for i in 0..20u32 {
        for o in [o2, o3] {
            let mut p = Vec::new();
            ogm::emit(&mut p, 49, 0, (1 << 30) + i, o, o, 255, &[]);
            liar.send(1, None, MacAddr::BROADCAST, &p);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    counted(&t, 1, "mesh", "ogm_route_kept_direct", before);

    // 2. A never-seen originator's first OGM brings 30 clients, one of
    //    them node 2's VM.
    let ghost = mac("02:66:00:00:00:99");
    let mut changes: Vec<TtChange> = (0..29u8)
        .map(|i| client(MacAddr([2, 0x66, 1, 0, 0, i])))
        .collect();
    changes.push(client(mac(&t.vm("vm2a").mac)));
    let before = stat(&t, 1, "mesh", "tt_unconfirmed");
    let mut p = Vec::new();
    let c = tt_container(tt_flags::OGM_DIFF, 1, &changes);
    ogm::emit(&mut p, 49, 0, 1, ghost, ghost, 255, &c);
    liar.send(1, None, MacAddr::BROADCAST, &p);
    counted(&t, 1, "mesh", "tt_unconfirmed", before);

    // 3. "Node 2's" full table, unasked: a bogus client instead of its VM.
    let bogus = mac("02:66:00:00:00:66");
    let before = stat(&t, 1, "mesh", "tt_unsolicited");
    let c = tt_container(
        tt_flags::RESPONSE | tt_flags::FULL_TABLE,
        200,
        &[client(bogus)],
    );
    liar.send(1, None, to1, &unicast_tvlv(o2, o1, &c));
    let before = counted(&t, 1, "mesh", "tt_unsolicited", before);

    // 4. A ROAM advert from a made-up originator: "node 1's VM moved".
    let mut value = mac(&t.vm("vm1a").mac).as_bytes().to_vec();
    value.extend_from_slice(&0u16.to_be_bytes());
    let mut c = Vec::new();
    tvlv::emit(&mut c, tvlv_type::ROAM, 1, &value).unwrap();
    let nobody = mac("02:66:66:00:00:00");
    liar.send(1, None, to1, &unicast_tvlv(nobody, o1, &c));
    counted(&t, 1, "mesh", "tt_unsolicited", before);

    // 5. Broadcasts "from node 2" carrying node 3's and node 1's VMs as
    //    sources, then one from the liar's own originator carrying node
    //    3's VM: FDBs must not re-point them.
    let (kept, contradicted) = (
        stat(&t, 1, "mesh", "bcast_kept_direct"),
        stat(&t, 1, "node", "mesh_source_contradicted"),
    );
    let forged = [("vm3a", o2), ("vm1a", o2), ("vm3a", liar.originator)];
    for (i, (vm, o)) in forged.into_iter().enumerate() {
        let mut inner = vec![0xff; 6];
        inner.extend_from_slice(mac(&t.vm(vm).mac).as_bytes());
        inner.extend_from_slice(&0x88b5u16.to_be_bytes());
        inner.extend_from_slice(&[0u8; 46]);
        let mut p = vec![0u8; bcast::HEADER_LEN];
        {
            let mut b = BcastPacket::new_unchecked(&mut p[..]);
            b.init_header();
            b.set_ttl(50);
            b.set_seqno(1 + i as u32);
            b.set_orig(o);
        }
        p.extend_from_slice(&inner);
        liar.send(1, None, MacAddr::BROADCAST, &p);
    }
    counted(&t, 1, "mesh", "bcast_kept_direct", kept);
    counted(&t, 1, "node", "mesh_source_contradicted", contradicted);

    // 6. Batman from the liar with node 2's hard interface MAC, and with
    //    a made-up one, as Ethernet source.
    let before = stat(&t, 1, "node", "tunnel_wrong_source");
    let mut p = Vec::new();
    ogm::emit(&mut p, 50, 0, 1 << 20, o2, o2, 255, &[]);
    liar.send(1, Some(mac(&t.hardif_of(2, 1))), MacAddr::BROADCAST, &p);
    liar.send(1, Some(mac("02:66:00:00:00:01")), MacAddr::BROADCAST, &p);
    let ok = wait_until(LIMIT, || {
        stat(&t, 1, "node", "tunnel_wrong_source") >= before + 2
    });
    assert!(ok, "wrong Ethernet sources not refused");

    // 7. A TT_REQUEST flood from the liar's own (routed) originator.
    let answered = stat(&t, 1, "mesh", "tt_requests_answered");
    let got = liar.tt_responses_from(1);
    let req = tt_container(tt_flags::REQUEST | tt_flags::FULL_TABLE, 0, &[]);
    let start = Instant::now();
    for _ in 0..200 {
        liar.send(1, None, to1, &unicast_tvlv(liar.originator, o1, &req));
    }
    std::thread::sleep(Duration::from_secs(2));
    let answered = stat(&t, 1, "mesh", "tt_requests_answered") - answered;
    // 5 a second, whatever the scheduler did: bounded by the time elapsed.
    let bound = 5 * (start.elapsed().as_secs() + 2);
    assert!(answered >= 1, "the liar's requests were never answered");
    assert!(
        answered <= bound,
        "{answered} answers to 200 requests (bound {bound})"
    );
    assert!(liar.tt_responses_from(1) - got <= bound);

    // Nothing honest moved, and the VMs kept talking.
    let view = honest_view(&t);
    let diff: Vec<_> = view.iter().filter(|l| !expected.contains(l)).collect();
    assert!(diff.is_empty(), "the liar moved: {diff:#?}");
    let tt = t.ctl(1, "tt").to_string();
    for m in [bogus, ghost, MacAddr([2, 0x66, 1, 0, 0, 0])] {
        assert!(!tt.contains(&m.to_string()), "{m} in node 1's TT: {tt}");
    }
    for p in pings {
        let who = p.1.clone();
        let (sent, answered) = p.finish();
        assert!(sent >= 10, "{who}: only {sent} pings sent");
        assert!(
            answered * 10 >= sent * 9,
            "{who}: {answered} of {sent} answered"
        );
    }
    for (a, b) in [("vm1a", "vm2a"), ("vm2a", "vm3a"), ("vm3a", "vm1a")] {
        assert!(
            t.ping(a, &t.vm(b).ip4.clone(), 3, &[]),
            "{a} -> {b} after the attacks"
        );
    }
}
