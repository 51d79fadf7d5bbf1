#!/usr/bin/env python3
"""What idle keep-alive connections cost the engine in memory.

  python3 load_testing/bench/idle_connections.py [connections] [path/to/edgeward]

Starts a release edgeward (2 workers, demo topology), reads its resident
memory, opens N connections that each make one request and then stay open
and idle (HTTP/1.1 keep-alive, as players and CDN front ends leave them),
reads the resident memory again, checks that a new request is still served,
and prints the difference. The file-descriptor limit must allow N (this
script raises its own soft limit to the hard one).
"""

import os
import resource
import socket
import subprocess
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
BINARY = sys.argv[2] if len(sys.argv) > 2 else "target/release/edgeward"

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
if hard < N + 100:
    sys.exit(f"the file-descriptor limit ({hard}) is below {N} connections")


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


port = free_port()
proc = subprocess.Popen(
    [BINARY, "serve", "--listen", f"127.0.0.1:{port}", "--workers", "2", "--admin-listen", "off"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
REQ = b"GET /btv/live/hls/ch1.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n"
try:
    for _ in range(2000):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.005)
    # Warm up: a few requests, so that the baseline includes the workers'
    # warm policy instances.
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(REQ)
            s.recv(4096)
    time.sleep(0.5)
    before = rss_kib(proc.pid)
    conns = []
    for i in range(N):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(REQ)
        conns.append(s)
    for s in conns:
        data = s.recv(4096)
        assert data.startswith(b"HTTP/1.1 302"), data[:40]
    time.sleep(1.0)
    after = rss_kib(proc.pid)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(REQ)
        assert s.recv(64).startswith(b"HTTP/1.1 302")
    still_open = sum(1 for s in conns if s.fileno() >= 0)
    print(f"engine RSS before: {before / 1024:.1f} MiB")
    print(f"engine RSS with {still_open} idle keep-alive connections: {after / 1024:.1f} MiB")
    print(f"cost: {(after - before) / 1024:.1f} MiB, {(after - before) * 1024 / N:.0f} bytes per connection")
finally:
    proc.terminate()
    proc.wait()
