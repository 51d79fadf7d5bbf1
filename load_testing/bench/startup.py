#!/usr/bin/env python3
"""Start-up and policy-activation times of a release edgeward.

  python3 load_testing/bench/startup.py [runs] [path/to/edgeward]

Measures, over `runs` repetitions (median, min, max):
  - start -> first 302: from spawning `edgeward serve` to the first answered
    player request (polling the port every 0.5 ms), with the embedded policy,
    first with an empty policy cache, then with a warm one;
  - upload -> active: POST /policies/{name}?activate=true with a typical
    policy (the exported `nearest`, ~100 KiB), until the answer (the version
    is active when the admin API answers), for a new component and for one
    already compiled (in the cache).
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
BINARY = sys.argv[2] if len(sys.argv) > 2 else "target/release/edgeward"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answered(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.05) as s:
            s.sendall(b"GET /btv/live/hls/ch1.m3u8 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 302")
    except OSError:
        return False


def start(cache_dir, admin_port=None):
    port = free_port()
    args = [BINARY, "serve", "--listen", f"127.0.0.1:{port}", "--workers", "2",
            "--policy-cache-dir", cache_dir,
            "--admin-listen", f"127.0.0.1:{admin_port}" if admin_port else "off"]
    began = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not answered(port):
        if proc.poll() is not None:
            sys.exit(f"edgeward exited: {proc.returncode}")
        time.sleep(0.0005)
    return proc, (time.perf_counter() - began) * 1e3


def stop(proc):
    proc.terminate()
    proc.wait()


def leb(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def with_custom_section(wasm, text):
    """The same component with a custom section appended: new bytes, new
    content hash, so the engine must compile it."""
    name = b"edgeward-bench"
    payload = leb(len(name)) + name + text.encode()
    return wasm + b"\x00" + leb(len(payload)) + payload


def summary(name, values):
    print(f"{name:<44} median {statistics.median(values):7.1f} ms   "
          f"min {min(values):7.1f}   max {max(values):7.1f}   ({len(values)} runs)")


def main():
    work = tempfile.mkdtemp(prefix="edgeward-startup-")
    try:
        cold, warm = [], []
        for i in range(RUNS):
            cache = os.path.join(work, f"cold-{i}")
            proc, ms = start(cache)
            cold.append(ms)
            stop(proc)
            proc, ms = start(cache)
            warm.append(ms)
            stop(proc)
        summary("start -> first 302, empty policy cache", cold)
        summary("start -> first 302, warm policy cache", warm)

        wasm_path = os.path.join(work, "nearest.wasm")
        subprocess.run([BINARY, "policy", "export", wasm_path], check=True)
        wasm = open(wasm_path, "rb").read()
        fresh, again = [], []
        for i in range(RUNS):
            admin = free_port()
            proc, _ = start(os.path.join(work, f"upload-{i}"), admin)
            # A component never seen (compiled on upload), then the same one
            # again with another configuration (a new version, no compiling).
            unique = with_custom_section(wasm, f"{time.time_ns()} {i}")
            for target in (fresh, again):
                body = json.dumps({
                    "wasm_base64": __import__("base64").b64encode(unique).decode(),
                    "config": {"reason": f"run {i} {len(target)}"},
                    "activate": True,
                }).encode()
                req = urllib.request.Request(
                    f"http://127.0.0.1:{admin}/policies/typical", data=body, method="POST",
                    headers={"Content-Type": "application/json"})
                began = time.perf_counter()
                with urllib.request.urlopen(req) as r:
                    assert r.status == 201, r.status
                    json.load(r)
                target.append((time.perf_counter() - began) * 1e3)
            stop(proc)
        summary("upload -> active, component not compiled yet", fresh)
        summary("upload -> active, component compiled before", again)
        print(f"(policy component: {len(wasm) // 1024} KiB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
