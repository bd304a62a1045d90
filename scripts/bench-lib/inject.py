#!/usr/bin/env python3
"""Fills meshwire's FDB from the VM side: writes Ethernet frames with
distinct source MACs into interfaces (meshwire's TAP ports, moved into a VM
namespace) through AF_PACKET raw sockets. Run it inside that namespace.

  inject.py COUNT IFNAME...

Per interface i: one anchor frame from 02:bb:00:00:ii:00 (learned first),
then COUNT-1 frames from 02:bc:ii:nn:nn:nn addressed to the anchor. The
daemon learns every source and drops the frame (its destination lives
behind the same port), so the fill costs one TAP read per MAC and floods
nothing but the anchor. Bounded: exactly COUNT frames per interface, paced
in bursts so the TAP's 1000-frame queue does not overflow. Prints frames
sent and send errors per interface.
"""

import socket
import sys
import time

ETH_P_EXPERIMENTAL = 0x88B5  # IEEE 802 local experimental ethertype
BURST = 256
PAUSE = 0.003


def mac(b):
    return bytes(b)


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    count = int(argv[1])
    if not 1 <= count <= 1 << 24:
        print("COUNT out of range", file=sys.stderr)
        return 2
    payload = b"meshwire-bench-fdb-fill".ljust(46, b"\0")
    total = 0
    errors = 0
    for i, ifname in enumerate(argv[2:]):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind((ifname, 0))
        anchor = mac([0x02, 0xBB, 0, 0, i & 0xFF, 0])
        # dst: an address nobody has; this one frame is flooded
        first = mac([0x02, 0xBB, 0xFF, 0xFF, 0xFF, 0xFF]) + anchor + ETH_P_EXPERIMENTAL.to_bytes(2, "big") + payload
        s.send(first)
        time.sleep(0.05)  # let the anchor be learned before the frames aimed at it
        head = anchor
        sent = 1
        for n in range(1, count):
            src = mac([0x02, 0xBC, i & 0xFF, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF])
            try:
                s.send(head + src + ETH_P_EXPERIMENTAL.to_bytes(2, "big") + payload)
                sent += 1
            except OSError:
                errors += 1
            if n % BURST == 0:
                time.sleep(PAUSE)
        s.close()
        total += sent
    print(f"sent {total} frames on {len(argv) - 2} interface(s), {errors} send errors")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
