# meshwire's memory footprint, sourced by scripts/bench.
#
#   mem_run BIN OUTDIR   appends rows to OUTDIR/memory.tsv:
#                        scenario, VmRSS kB, VmHWM kB, FDB entries, notes
#
# One daemon in namespace mwb-mem. Its underlay is a veth pair with both ends
# in that namespace (this kernel has no dummy driver): ul0 holds
# 198.18.0.1/24, 198.18.0.0/15 routes via 198.18.0.2, whose neighbour entry
# is a fixed MAC nobody has, and the other end ul0b (no address) discards
# what arrives. So every handshake initiation and OGM to a peer's endpoint
# (198.18.x.y) is really sent and lost, and nothing leaves the namespace. The FDB fill comes from namespace mwb-memvm, which holds the
# daemon's TAP ports (the README's "TAP as the VM's NIC" topology).
#
# FDB limits (src/switch/fdb.rs): 100,000 entries in all, 4,096 per local
# port. MEM_PORTS (25) x MEM_MACS_PER_PORT (4096) = 102,400 source MACs are
# offered, so the table is filled to its total limit. The mesh's local
# translation table (MAX_TT_LOCAL) holds 4,096 of them; the rest are
# switched locally but not announced to the mesh.

MEM_NS=mwb-mem
MEM_VM=mwb-memvm
MEM_PORTS=${MEM_PORTS:-25}
MEM_MACS_PER_PORT=${MEM_MACS_PER_PORT:-4096}
MEM_PEERS=${MEM_PEERS:-500}
MEM_PID=

mem_cleanup() {
    if [ -n "$MEM_PID" ] && kill -0 "$MEM_PID" 2>/dev/null; then
        kill -TERM "$MEM_PID" 2>/dev/null
        for _ in $(seq 1 30); do kill -0 "$MEM_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$MEM_PID" 2>/dev/null
        wait "$MEM_PID" 2>/dev/null
    fi
    MEM_PID=
    local n
    for n in $MEM_VM $MEM_NS; do ip netns del "$n" 2>/dev/null || true; done
    return 0
}

mem_topo() {
    mem_cleanup
    local n
    for n in $MEM_NS $MEM_VM; do
        ip netns add "$n"
        ip -n "$n" link set lo up
        ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    done
    ip -n $MEM_NS link add ul0 type veth peer name ul0b
    ip -n $MEM_NS addr add 198.18.0.1/24 dev ul0
    ip -n $MEM_NS link set ul0 up
    ip -n $MEM_NS link set ul0b up
    ip -n $MEM_NS neigh add 198.18.0.2 lladdr 02:00:5e:00:00:02 dev ul0 nud permanent
    ip -n $MEM_NS route add 198.18.0.0/15 via 198.18.0.2 dev ul0
}

# mem_config BIN DIR NPEERS NPORTS -> DIR/meshwire.toml (keys in DIR)
mem_config() {
    local bin=$1 dir=$2 npeers=$3 nports=$4 i
    rm -rf "$dir"; mkdir -p "$dir"
    (umask 077; "$bin" genkey >"$dir/key")
    {
        printf '[node]\nprivate_key_file = "%s/key"\nlisten_port = 51820\naddress = "198.19.253.1"\nunderlay_mtu = 1500\n\n' "$dir"
        printf '[control]\nsocket = "%s/ctl.sock"\n' "$dir"
        for i in $(seq 1 "$npeers"); do
            # real keys (as an operator's config would have); endpoints and
            # inner addresses unique per peer
            printf '\n[[peer]]\npublic_key = "%s"\nendpoint = "198.18.%d.%d:51820"\naddress = "198.19.%d.%d"\n' \
                "$("$bin" genkey | "$bin" pubkey)" $((1 + i / 250)) $((1 + i % 250)) $((100 + i / 250)) $((1 + i % 250))
        done
        for i in $(seq 0 $((nports - 1))); do
            printf '\n[[port]]\nname = "mwm%d"\n' "$i"
        done
    } >"$dir/meshwire.toml"
    "$bin" check --config "$dir/meshwire.toml"
}

mem_start() { # bin dir
    local bin=$1 dir=$2
    ip netns exec $MEM_NS env RUST_LOG=warn "$bin" run --config "$dir/meshwire.toml" 2>"$dir/daemon.log" &
    MEM_PID=$!
    for _ in $(seq 1 100); do [ -S "$dir/ctl.sock" ] && return 0; sleep 0.1; done
    return 1
}

mem_kb() { awk -v k="$1:" '$1==k {print $2}' "/proc/$MEM_PID/status" 2>/dev/null; }

# counter from `ctl stats --json`: mem_stat DIR section key
mem_stat() {
    "$MESHWIRE_BIN" ctl --socket "$1/ctl.sock" stats --json 2>/dev/null \
        | python3 -c 'import json,sys; d=json.load(sys.stdin); s=d.get(sys.argv[1],{}); print(s.get(sys.argv[2], s.get("fdb",{}).get(sys.argv[2], 0)))' "$2" "$3"
}

mem_run() {
    local bin=$1 out=$2 tsv=$2/memory.tsv d settle=${MEM_SETTLE:-5}
    MESHWIRE_BIN=$bin
    # appends: scripts/bench may have written rows before
    mem_topo

    # 1. idle: 2 peers, one port, no traffic (only its own OGMs/handshake tries)
    d=$out/mem-idle
    mem_config "$bin" "$d" 2 1 >/dev/null || { echo "memory: config failed" >&2; mem_cleanup; return 1; }
    mem_start "$bin" "$d" || { echo "memory: daemon did not start (see $d/daemon.log)" >&2; mem_cleanup; return 1; }
    sleep "$settle"
    printf 'idle: 2 peers, 1 port, no traffic\t%s\t%s\t0\tafter %s s\n' "$(mem_kb VmRSS)" "$(mem_kb VmHWM)" "$settle" >>"$tsv"
    echo "  idle, 2 peers: VmRSS $(mem_kb VmRSS) kB"
    mem_cleanup; mem_topo

    # 2. 500 peers, 25 ports, before any frame
    d=$out/mem-500
    echo "  generating $MEM_PEERS peer keys"
    mem_config "$bin" "$d" "$MEM_PEERS" "$MEM_PORTS" >/dev/null || { echo "memory: config failed" >&2; mem_cleanup; return 1; }
    mem_start "$bin" "$d" || { echo "memory: daemon did not start (see $d/daemon.log)" >&2; mem_cleanup; return 1; }
    sleep "$settle"
    printf '%s peers, %s ports, no frames yet\t%s\t%s\t0\tafter %s s (OGMs and handshake initiations to %s unreachable peers go on)\n' \
        "$MEM_PEERS" "$MEM_PORTS" "$(mem_kb VmRSS)" "$(mem_kb VmHWM)" "$settle" "$MEM_PEERS" >>"$tsv"
    echo "  $MEM_PEERS peers, no MACs: VmRSS $(mem_kb VmRSS) kB"

    # 3. the same daemon, FDB filled from the VM side
    local i names=()
    for i in $(seq 0 $((MEM_PORTS - 1))); do
        ip -n $MEM_NS link set "mwm$i" netns $MEM_VM
        ip -n $MEM_VM link set "mwm$i" up
        names+=("mwm$i")
    done
    local want=$((MEM_PORTS * MEM_MACS_PER_PORT)) learned pass
    [ "$want" -gt 100000 ] && want=100000
    for pass in 1 2 3; do
        ip netns exec $MEM_VM python3 "$BENCH_LIB/inject.py" "$MEM_MACS_PER_PORT" "${names[@]}" >>"$d/inject.log" 2>&1
        sleep 1
        learned=$(mem_stat "$d" switch learned_new)
        echo "  fill pass $pass: FDB learned_new=$learned (want $want)"
        [ "${learned:-0}" -ge "$want" ] && break
    done
    sleep "$settle"
    local rss hwm
    rss=$(mem_kb VmRSS); hwm=$(mem_kb VmHWM)
    # counted after reading RSS: a 100k-entry JSON reply allocates by itself
    local entries refused_port refused_full
    entries=$("$bin" ctl --socket "$d/ctl.sock" fdb --json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
    refused_port=$(mem_stat "$d" switch refused_port_limit)
    refused_full=$(mem_stat "$d" switch refused_full)
    "$bin" ctl --socket "$d/ctl.sock" stats --json >"$d/stats.json" 2>&1
    printf '%s peers, %s ports, FDB filled\t%s\t%s\t%s\t%s x %s source MACs offered from the VM side (per-port limit 4096, total 100000): refused %s at the total limit, %s at the per-port limit; tt_local holds at most 4096 of them\n' \
        "$MEM_PEERS" "$MEM_PORTS" "$rss" "$hwm" "${entries:-?}" "$MEM_PORTS" "$MEM_MACS_PER_PORT" "${refused_full:-?}" "${refused_port:-?}" >>"$tsv"
    echo "  $MEM_PEERS peers + FDB ${entries:-?} entries: VmRSS $rss kB"
    mem_cleanup
}
