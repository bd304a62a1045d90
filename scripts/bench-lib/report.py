#!/usr/bin/env python3
"""Turns one scripts/bench run into Markdown and an SVG chart.

Inputs (all written by scripts/bench in one run directory):
  harness results.tsv  one row per candidate, columns as documented in the
                       peer harness (record()): 1 id, 2 label, 3 L2, 4 enc,
                       5 mtu, 6 tcp1 median, 7 tcp1 all, 8 tcp4, 9 ping avg,
                       10 ping p99, 11 udp rx pps, 12 udp tx pps, 13 cpu s/GB,
                       14 retrans, 15 frag/df, 16 drops udp/qdisc,
                       17 other load %, 18 logdir, 19 notes, 20 steal %,
                       21 summary of the attempts
  memory.tsv           scenario, VmRSS kB, VmHWM kB, FDB entries, notes
  meta.env             KEY=value lines (date, machine, settings, durations)
  versions.txt         optional: the harness's tool versions, appended

Outputs: results.md and results.svg. Python standard library only.
"""

import html
import math
import sys

# Order of the rows: the kernel paths first (the ceiling), then the peers,
# meshwire last, as it is compared to every row above it.
ORDER = ["direct", "direct-l2", "vxlan", "wggo-l3", "wggo-vxlan", "boringtun-l3",
         "boringtun-vxlan", "tinc", "fastd", "fastd-null", "fastd-plain", "n2n",
         "openvpn-chacha", "openvpn-aesgcm", "meshwire-base", "meshwire"]
SHORT = {
    "direct": "direct veth routing",
    "direct-l2": "direct L2 bridge",
    "vxlan": "kernel vxlan + bridge",
    "wggo-vxlan": "wireguard-go + vxlan",
    "wggo-l3": "wireguard-go (L3)",
    "boringtun-vxlan": "boringtun-cli + vxlan",
    "boringtun-l3": "boringtun-cli (L3)",
    "tinc": "tinc switch",
    "fastd": "fastd salsa2012+umac",
    "fastd-null": "fastd null+umac",
    "fastd-plain": "fastd null",
    "n2n": "n2n v1",
    "openvpn-chacha": "openvpn chacha",
    "openvpn-aesgcm": "openvpn aes-gcm",
    "meshwire-base": "meshwire, base build (before)",
    "meshwire": "meshwire",
}


def num(s):
    try:
        v = float(s)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def read_rows(path):
    rows = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            c = line.rstrip("\n").split("\t")
            if len(c) < 20:
                continue
            c += ["-"] * (21 - len(c))
            r = {
                "id": c[0], "label": c[1], "l2": c[2], "enc": c[3], "mtu": num(c[4]),
                "tcp1": num(c[5]), "tcp1_all": c[6], "tcp4": num(c[7]),
                "ping_avg": num(c[8]), "ping_p99": num(c[9]),
                "udp_rx": num(c[10]), "udp_tx": num(c[11]), "cpu_gb": num(c[12]),
                "retrans": c[13], "frag_df": c[14], "drops": c[15],
                "other": c[16], "logdir": c[17], "notes": c[18], "steal": c[19],
                "summary": c[20], "failed": c[5] == "FAILED",
            }
            rows[r["id"]] = r
    ordered = [rows[i] for i in ORDER if i in rows]
    ordered += [r for i, r in rows.items() if i not in ORDER]
    return ordered


def read_meta(path):
    meta = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition("=")
                if k:
                    meta[k] = v
    except OSError:
        pass
    return meta


def read_memory(path):
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                c = line.rstrip("\n").split("\t")
                if len(c) >= 5:
                    out.append(c[:5])
    except OSError:
        pass
    return out


def fmt(v, digits=2):
    if v is None:
        return "-"
    return f"{v:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}x"


# Metrics compared: key, heading, higher_is_better, digits
METRICS = [
    ("tcp1", "TCP 1 stream", True),
    ("tcp4", "TCP 4 streams", True),
    ("udp_rx", "UDP 64 B pps", True),
    ("ping_avg", "ping avg", False),
    ("ping_p99", "ping p99", False),
    ("cpu_gb", "CPU s/GB", False),
    ("mtu", "VM MTU", True),
]


def markdown(rows, mem, meta):
    mw = next((r for r in rows if r["id"] == "meshwire"), None)
    L = []
    mode = meta.get("MODE", "full")
    L.append(f"### scripts/bench{' --quick' if mode == 'quick' else ''}, {meta.get('DATE', '?')}")
    L.append("")
    L.append(f"Machine: {meta.get('NPROC', '?')} vCPU ({meta.get('CPU', '?')}), kernel {meta.get('KERNEL', '?')}, "
             f"{meta.get('MEM', '?')} RAM; shared with other work (see other load / steal). "
             f"meshwire {meta.get('MESHWIRE_VERSION', '?')} at commit {meta.get('COMMIT', '?')}.")
    L.append(f"Settings: TCP {meta.get('T', '?')} s, 1-stream = median of {meta.get('REPS', '?')} run(s); "
             f"-P4 one {meta.get('T', '?')} s run; UDP 64 B for {meta.get('UDPT', '?')} s; "
             f"ping 50 x 10 ms on the idle path. Run time: {meta.get('ELAPSED', '?')} s "
             f"(dataplane {meta.get('ELAPSED_HARNESS', '?')} s, memory {meta.get('ELAPSED_MEMORY', '?')} s).")
    L.append("Topology (the peer harness, `../shared/bench/peers/run.sh`, all candidates in one invocation): "
             "vm1 netns -> veth -> hv1 netns -> overlay over a 1500-byte veth underlay -> hv2 netns -> veth -> vm2 netns. "
             "L2 overlays are ports of br0 in each hv, like meshwire's TAP. All four endpoints (iperf3 client and "
             "server, both overlay daemons) share the same cores.")
    L.append("")
    L.append("| candidate | L2 | enc | VM MTU | TCP 1 stream Gbit/s [runs] | TCP 4 streams Gbit/s | UDP 64 B rx pps (tx offered) "
             "| ping avg / p99 ms | overlay CPU s/GB | UDP rcvbuf / qdisc drops | TCP retrans | other load % / steal % |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        name = SHORT.get(r["id"], r["label"])
        if r["id"] == "meshwire":
            name = "**meshwire**"
        if r["failed"]:
            L.append(f"| {name} | {r['l2']} | {r['enc']} | - | FAILED: {r['notes']} | | | | | | | |")
            continue
        udp = "-" if r["udp_rx"] is None else f"{r['udp_rx']:.0f} ({fmt(r['udp_tx'], 0)})"
        L.append(f"| {name} | {r['l2']} | {r['enc']} | {fmt(r['mtu'], 0)} | **{fmt(r['tcp1'])}** [{r['tcp1_all']}] "
                 f"| {fmt(r['tcp4'])} | {udp} | {fmt(r['ping_avg'], 3)} / {fmt(r['ping_p99'], 3)} "
                 f"| {fmt(r['cpu_gb'])} | {r['drops']} | {r['retrans']} | {r['other']} / {r['steal']} |")
    L.append("")
    if mw and not mw["failed"]:
        L.append("meshwire relative to each candidate (meshwire ÷ candidate). Throughput, packets/s and MTU: "
                 "above 1x is better for meshwire. Ping and CPU s/GB: below 1x is better for meshwire.")
        L.append("")
        L.append("| meshwire ÷ | " + " | ".join(h for _, h, _ in METRICS) + " |")
        L.append("|---|" + "---|" * len(METRICS))
        for r in rows:
            if r["id"] == "meshwire" or r["failed"]:
                continue
            cells = [fmt_ratio(ratio(mw[k], r[k])) for k, _, _ in METRICS]
            L.append(f"| {SHORT.get(r['id'], r['label'])} | " + " | ".join(cells) + " |")
        L.append("")
    if mem:
        L.append("meshwire memory, from /proc/PID/status. \"dataplane run\" rows: the two daemons measured above. "
                 "The other rows: one daemon in a namespace of its own, whose peers' endpoints (198.18.0.0/15) route "
                 "to a veth whose other end, in the same namespace, discards everything, so nothing leaves it; the "
                 "FDB is filled through raw sockets on the daemon's TAP ports from a VM namespace.")
        L.append("")
        L.append("| scenario | VmRSS MiB | VmHWM MiB | FDB entries | notes |")
        L.append("|---|---|---|---|---|")
        for sc, rss, hwm, fdb, notes in mem:
            L.append(f"| {sc} | {fmt(kb_mib(rss), 1)} | {fmt(kb_mib(hwm), 1)} | {fdb} | {notes} |")
        L.append("")
    return "\n".join(L) + "\n"


def kb_mib(s):
    v = num(s)
    return None if v is None else v / 1024


# ---------------------------------------------------------------- SVG chart
PANELS = [
    ("tcp1", "TCP 1 stream, Gbit/s (log scale; higher is better)", True, 2, 1.0),
    ("tcp4", "TCP 4 streams, Gbit/s (log scale; higher is better)", True, 2, 1.0),
    ("udp_rx", "UDP 64 B delivered, kpps (higher is better)", False, 0, 1e-3),
    ("ping_avg", "ping avg, ms (lower is better)", False, 3, 1.0),
    ("ping_p99", "ping p99, ms (lower is better)", False, 3, 1.0),
    ("cpu_gb", "overlay CPU seconds per GB (lower is better)", False, 1, 1.0),
]


def svg(rows, meta):
    rows = [r for r in rows if not r["failed"]]
    width, left, right = 860, 190, 70
    bar_h, gap, head = 16, 4, 26
    plot_w = width - left - right
    out = []
    y = 50
    body = []
    for key, title, logscale, digits, scale in PANELS:
        vals = [(r, None if r[key] is None else r[key] * scale) for r in rows]
        present = [v for _, v in vals if v is not None and v > 0]
        if not present:
            continue
        body.append(f'<text x="{left}" y="{y + 16}" class="t">{html.escape(title)}</text>')
        y += head
        vmax = max(present)
        if logscale:
            lo = 10 ** math.floor(math.log10(min(present)))
            hi = 10 ** math.ceil(math.log10(vmax))
            if hi <= lo:
                hi = lo * 10

            def xpos(v, lo=lo, hi=hi):
                return plot_w * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
            ticks = []
            t = lo
            while t <= hi * 1.0001:
                ticks.append(t)
                t *= 10
        else:
            step = nice_ceiling(vmax / 4)
            hi = step * math.ceil(vmax / step)

            def xpos(v, hi=hi):
                return plot_w * v / hi
            ticks = [step * i for i in range(int(round(hi / step)) + 1)]
        top = y
        n_bars = len(vals)
        bottom = top + n_bars * (bar_h + gap)
        # grid first, so the bars and their labels stay on top
        for t in ticks:
            x = left + xpos(t)
            body.append(f'<line x1="{x:.1f}" y1="{top - 2}" x2="{x:.1f}" y2="{bottom}" class="g"/>')
            body.append(f'<text x="{x:.1f}" y="{bottom + 12}" class="tick" text-anchor="middle">{tick_label(t)}</text>')
        for r, v in vals:
            cls = "mw" if r["id"] == "meshwire" else ("k" if r["enc"] == "no" else "p")
            label = SHORT.get(r["id"], r["id"])
            body.append(f'<text x="{left - 6}" y="{y + bar_h - 4}" class="l" text-anchor="end">{html.escape(label)}</text>')
            if v is None or v <= 0:
                body.append(f'<text x="{left + 4}" y="{y + bar_h - 4}" class="v">n/a</text>')
            else:
                w = max(1.0, xpos(v))
                body.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" class="{cls}"/>')
                body.append(f'<text x="{left + w + 4:.1f}" y="{y + bar_h - 4}" class="v">{v:.{digits}f}</text>')
            y += bar_h + gap
        y += 30
    height = y + 30
    mode = meta.get("MODE", "full")
    out.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
               f'viewBox="0 0 {width} {height}" font-family="sans-serif">')
    out.append("<style>.t{font-size:13px;font-weight:bold}.l,.v{font-size:12px}.tick{font-size:10px;fill:#555}"
               ".g{stroke:#ccc;stroke-width:1}.mw{fill:#d9480f}.p{fill:#4263eb}.k{fill:#adb5bd}"
               ".h{font-size:15px;font-weight:bold}.s{font-size:11px;fill:#333}</style>")
    out.append('<rect width="100%" height="100%" fill="white"/>')
    out.append(f'<text x="10" y="20" class="h">meshwire vs peers, VM to VM over a 1500-byte veth underlay '
               f'(scripts/bench{" --quick" if mode == "quick" else ""})</text>')
    out.append(f'<text x="10" y="38" class="s">{html.escape(meta.get("DATE", ""))}; '
               f'{html.escape(meta.get("NPROC", "?"))} vCPU {html.escape(meta.get("CPU", ""))}; kernel '
               f'{html.escape(meta.get("KERNEL", ""))}; grey = kernel/unencrypted, blue = encrypted userspace peers, '
               f'orange = meshwire</text>')
    out.extend(body)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def nice_ceiling(v):
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * e:
            return m * e
    return 10 * e


def tick_label(t):
    if t == 0:
        return "0"
    if t >= 100:
        return f"{t:.0f}"
    if t >= 1:
        return f"{t:g}"
    return f"{t:g}"


def main(argv):
    if len(argv) not in (6, 7):
        print("usage: report.py results.tsv memory.tsv meta.env out.md out.svg [versions.txt]", file=sys.stderr)
        return 2
    rows = read_rows(argv[1])
    mem = read_memory(argv[2])
    meta = read_meta(argv[3])
    md = markdown(rows, mem, meta)
    if len(argv) == 7:
        try:
            with open(argv[6], encoding="utf-8") as f:
                md += "\nVersions (from the harness):\n\n```\n" + f.read().rstrip("\n") + "\n```\n"
        except OSError:
            pass
    with open(argv[4], "w", encoding="utf-8") as f:
        f.write(md)
    with open(argv[5], "w", encoding="utf-8") as f:
        f.write(svg(rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
