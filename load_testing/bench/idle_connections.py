#!/usr/bin/env python3
"""What idle keep-alive connections cost edgeward and nginx in memory.

  python3 load_testing/bench/idle_connections.py [connections] [path/to/edgeward]

For each server and protocol in turn, one run: starts the server (one
worker each: a release edgeward on its demo topology, nginx answering
every request with a 302), reads its resident memory, opens N connections
that each make one request and then stay open and idle (as players and
CDN front ends leave them), reads the resident memory again, checks that a
new request is still served, closes them all and prints the difference.

Protocols: HTTP/1.1 in cleartext, HTTP/1.1 over TLS, HTTP/2 over TLS
(ALPN h2), and for edgeward cleartext HTTP/2 (h2c with prior knowledge;
nginx cannot serve h2c and HTTP/1.1 on one port). The TLS certificate is
an ECDSA P-256 one made with openssl for the run. nginx comes from
Debian's package (installed when missing). The file-descriptor limit must
allow N (this script raises its own soft limit to the hard one).
"""

import os
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
BINARY = sys.argv[2] if len(sys.argv) > 2 else "target/release/edgeward"

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
if hard < N + 100:
    sys.exit(f"the file-descriptor limit ({hard}) is below {N} connections")
if not shutil.which("nginx"):
    subprocess.run(["apt-get", "install", "-y", "-qq", "nginx-light"], check=True)

PATH = b"/btv/live/hls/ch1.m3u8"
REQ = b"GET " + PATH + b" HTTP/1.1\r\nHost: x\r\n\r\n"
TMP = tempfile.mkdtemp(prefix="edgeward-idle.")
CERT, KEY = f"{TMP}/cert.pem", f"{TMP}/key.pem"
subprocess.run(
    ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
     "-nodes", "-keyout", KEY, "-out", CERT, "-days", "2", "-subj", "/CN=localhost",
     "-addext", "subjectAltName=DNS:localhost"],
    check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    for _ in range(2000):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.005)
    sys.exit(f"nothing listens on {port}")


# --- the clients ---------------------------------------------------------------
def h1(sock):
    sock.sendall(REQ)


def h1_answered(sock):
    data = sock.recv(4096)
    assert data.startswith(b"HTTP/1.1 302"), data[:60]


def frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def h2_request(scheme):
    # HPACK without Huffman: :method GET (2), :scheme (6 http, 7 https),
    # :path and :authority as literals with indexed names (4, 1).
    block = bytes([0x82, 0x86 if scheme == "http" else 0x87])
    block += bytes([0x04, len(PATH)]) + PATH + bytes([0x01, 1]) + b"x"
    return (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0)
            + frame(1, 0x05, 1, block))


def h2_answered(sock):
    """Reads frames until the answer's HEADERS on stream 1 (ACKing the
    server's SETTINGS on the way)."""
    buf = b""
    while True:
        while len(buf) < 9:
            more = sock.recv(65536)
            assert more, "closed before an answer"
            buf += more
        length = int.from_bytes(buf[:3], "big")
        kind, flags, stream = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
        while len(buf) < 9 + length:
            more = sock.recv(65536)
            assert more, "closed in a frame"
            buf += more
        buf = buf[9 + length:]
        if kind == 4 and not flags & 1:
            sock.sendall(frame(4, 1, 0))
        if kind == 1 and stream == 1:
            return


CONTEXTS = {}


def client_context(alpn):
    """One per protocol: a context per connection would load the CA store
    10,000 times."""
    if alpn not in CONTEXTS:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols([alpn])
        CONTEXTS[alpn] = ctx
    return CONTEXTS[alpn]


def connect(port, tls, alpn):
    sock = socket.create_connection(("127.0.0.1", port))
    if not tls:
        return sock
    sock = client_context(alpn).wrap_socket(sock, server_hostname="localhost")
    assert sock.selected_alpn_protocol() in (alpn, None), sock.selected_alpn_protocol()
    return sock


def measure(pids, port, tls, proto):
    """RSS before and with N idle connections (KiB), after a warm-up."""
    alpn = "h2" if proto == "h2" else "http/1.1"
    send = (lambda s: s.sendall(h2_request("https" if tls else "http"))) if proto == "h2" else h1
    answered = h2_answered if proto == "h2" else h1_answered
    for _ in range(20):
        with connect(port, tls, alpn) as s:
            send(s)
            answered(s)
    time.sleep(0.5)
    before = rss_kib(pids)
    conns = []
    for _ in range(N):
        s = connect(port, tls, alpn)
        send(s)
        conns.append(s)
    for s in conns:
        answered(s)
    time.sleep(1.0)
    after = rss_kib(pids)
    with connect(port, tls, alpn) as s:
        send(s)
        answered(s)
    for s in conns:
        s.close()
    return before, after


# --- the servers ---------------------------------------------------------------
def edgeward():
    port, tls_port = free_port(), free_port()
    proc = subprocess.Popen(
        [BINARY, "serve", "--listen", f"127.0.0.1:{port}", "--tls-listen", f"127.0.0.1:{tls_port}",
         "--tls-cert", f"{CERT},{KEY}", "--workers", "1", "--admin-listen", "off",
         "--max-connections-per-worker", str(N + 1000)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    wait_port(tls_port)
    return proc, [proc.pid], port, tls_port


def nginx():
    port, tls_port = free_port(), free_port()
    conf = f"{TMP}/nginx.conf"
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
daemon off;
pid {TMP}/nginx.pid;
error_log {TMP}/nginx.err;
worker_rlimit_nofile {N + 1000};
events {{ worker_connections {N + 1000}; }}
http {{
  access_log off;
  keepalive_timeout 300s;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    listen 127.0.0.1:{tls_port} ssl http2;
    ssl_certificate {CERT};
    ssl_certificate_key {KEY};
    location / {{ return 302 http://e1.test$request_uri; }}
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    wait_port(tls_port)
    time.sleep(0.2)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    return proc, [proc.pid] + [int(c) for c in children], port, tls_port


rows = []
for name, start in (("edgeward", edgeward), ("nginx", nginx)):
    for label, tls, proto in (("HTTP/1.1", False, "h1"), ("HTTP/1.1 over TLS", True, "h1"),
                              ("HTTP/2 over TLS", True, "h2"), ("h2c", False, "h2")):
        if name == "nginx" and label == "h2c":
            continue
        proc, pids, port, tls_port = start()
        try:
            before, after = measure(pids, tls_port if tls else port, tls, proto)
        finally:
            proc.terminate()
            proc.wait()
        per = (after - before) * 1024 / N
        rows.append((name, label, before, after, per))
        print(f"{name:<9} {label:<18} RSS {before / 1024:6.1f} -> {after / 1024:6.1f} MiB "
              f"with {N} idle: {per:7.0f} bytes per connection", flush=True)

shutil.rmtree(TMP, ignore_errors=True)
print()
by = {(r[0], r[1]): r[4] for r in rows}
for label in ("HTTP/1.1", "HTTP/1.1 over TLS", "HTTP/2 over TLS"):
    print(f"{label:<18} edgeward {by[('edgeward', label)]:7.0f} B, nginx {by[('nginx', label)]:7.0f} B per idle connection")
print(f"{'h2c':<18} edgeward {by[('edgeward', 'h2c')]:7.0f} B per idle connection")
