# meshwire as a candidate of the peer harness (../shared/bench/peers/run.sh),
# sourced by it through EXTRA_CANDIDATES. It uses the harness's own helpers
# (topo_base, topo_l2, bg, wait_link, measure, fail) so meshwire is set up
# and measured exactly like the other L2 candidates: one daemon per hv
# namespace, its TAP port enslaved to br0 next to the VM's veth, the same
# 1500-byte veth underlay 198.18.0.1 <-> 198.18.0.2, the same measure().
#
# Needs MESHWIRE_BIN (the release binary). Optional: MESHWIRE_MTU (VM and
# port MTU, default 1378 = meshwire's default port MTU on a 1500-byte IPv4
# underlay, see README "MTU arithmetic"), MESHWIRE_LOG (RUST_LOG, default warn),
# MESHWIRE_WORKERS (node.workers, default 0: one per CPU).
#
# cand_meshwire_policy (id meshwire-policy) is the same binary with a port
# policy on each port (issue 11): the VM's MAC and address, no DHCP/RA
# server roles, the default rate limits: the cost of the policy checks.
#
# cand_meshwire_base (id meshwire-base) is the same with MESHWIRE_BASE_BIN
# and MESHWIRE_BASE_COMMIT: an older build measured in the same run, for
# before/after comparisons (scripts/bench BASE=<rev>).

cand_meshwire() {
    meshwire_candidate meshwire "0. meshwire (TAP port bridged)" "${MESHWIRE_BIN:-}" "${MESHWIRE_COMMIT:-?}"
}

cand_meshwire_policy() {
    meshwire_candidate meshwire-policy "0. meshwire, port policy on" "${MESHWIRE_BIN:-}" "${MESHWIRE_COMMIT:-?}" policy
}

cand_meshwire_base() {
    meshwire_candidate meshwire-base "0. meshwire at ${MESHWIRE_BASE_COMMIT:-base} (before)" \
        "${MESHWIRE_BASE_BIN:-}" "${MESHWIRE_BASE_COMMIT:-?}"
}

meshwire_candidate() {
    local id=$1 label=$2 bin=$3 commit=$4 policy=${5:-} mtu=${MESHWIRE_MTU:-1378}
    local d=$CDIR c=$ST/$1 i o
    if [ ! -x "$bin" ]; then fail $id "$label" yes yes "binary for $id not set or not executable"; return; fi
    topo_base; topo_l2 "$mtu"
    mkdir -p "$d" "$c"
    for i in 1 2; do
        (umask 077; "$bin" genkey >"$c/n$i.key"); "$bin" pubkey <"$c/n$i.key" >"$c/n$i.pub"
    done
    # Node inner (gretap) addresses live only inside meshwire; 198.19.254.x
    # keeps them apart from the VMs' 198.19.0.x anyway.
    for i in 1 2; do
        o=$((3 - i))
        cat >"$c/n$i.toml" <<EOF
[node]
private_key_file = "$c/n$i.key"
listen_port = 51820
address = "198.19.254.$i"
underlay_mtu = 1500
workers = ${MESHWIRE_WORKERS:-0}

[control]
socket = "$c/n$i.sock"

[[peer]]
public_key = "$(cat "$c/n$o.pub")"
endpoint = "198.18.0.$o:51820"
address = "198.19.254.$o"

[[port]]
name = "pbmw$i"
mtu = $mtu
EOF
        if [ "$policy" = policy ]; then
            # The one VM behind br0: its MAC and address (the bridge's own
            # frames are dropped as spoofed, as they should be).
            cat >>"$c/n$i.toml" <<EOF
mac = "$(ip -n pb-vm$i -br link show eth0 | awk '{print $3}')"
ipv4 = ["198.19.0.$i"]
EOF
        fi
        "$bin" check --config "$c/n$i.toml" >"$d/check-n$i.log" 2>&1 \
            || { fail $id "$label" yes yes "config rejected: $(head -c 200 "$d/check-n$i.log")"; return; }
    done
    local mp=()
    for i in 1 2; do
        bg "$d/meshwire-n$i.log" ip netns exec pb-hv$i env RUST_LOG="${MESHWIRE_LOG:-warn}" "$bin" run --config "$c/n$i.toml"
        mp+=("$LASTPID")
    done
    for i in 1 2; do
        wait_link pb-hv$i pbmw$i || { fail $id "$label" yes yes "meshwire did not create its TAP (see $d/meshwire-n$i.log)"; return; }
        ip -n pb-hv$i link set pbmw$i mtu "$mtu" master br0 up
    done
    # Wait (bounded, 30 s) until each node has a next hop for both of the
    # other node's originators (its primary one and its hard interface
    # towards us), as scripts/demo does: the WireGuard handshake plus a few
    # OGM intervals (1 s). Measuring earlier is not just slower: a frame
    # for a client whose originator has no route yet is flooded to every
    # port including the one it came in on (node.rs forward(): Originator
    # -> unicast_or_flood(.., None)), so br0 learns the sending VM's MAC on
    # the TAP and then drops the replies to that VM as same-port traffic.
    local n ok=0
    for i in 1 2; do
        for _ in $(seq 1 150); do
            n=$("$bin" ctl --socket "$c/n$i.sock" originators --json 2>/dev/null | grep -c '"next_hop": "' || true)
            [ "${n:-0}" -ge 2 ] && { ok=$((ok + 1)); break; }
            sleep 0.2
        done
    done
    [ $ok = 2 ] || log "meshwire: routes not complete after 30 s (measuring anyway)"
    "$bin" ctl --socket "$c/n1.sock" originators >"$d/originators-n1.txt" 2>&1
    local ver
    ver=$("$bin" --version 2>/dev/null | head -1)
    measure $id "$label" yes yes "$mtu" "$ver, commit $commit; workers ${MESHWIRE_WORKERS:-0} (0: one per CPU), recvmmsg/sendmmsg + UDP GSO/GRO, TAP vnet_hdr offloads (TSO/USO); port MTU $mtu (1500-98-10-14)" "${mp[@]}"
    # the daemons' own view after the run: per-layer drop counters, peers, ports
    for i in 1 2; do
        "$bin" ctl --socket "$c/n$i.sock" stats --json >"$d/stats-n$i.json" 2>&1
        "$bin" ctl --socket "$c/n$i.sock" peers >"$d/peers-n$i.txt" 2>&1
        "$bin" ctl --socket "$c/n$i.sock" ports >"$d/ports-n$i.txt" 2>&1
        grep -E '^Vm(RSS|HWM):' "/proc/${mp[$((i - 1))]}/status" >"$d/vm-n$i.txt" 2>/dev/null
    done
}
