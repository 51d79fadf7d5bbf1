#!/usr/bin/env bash
# What HTTP/3 costs, against edgeward's own HTTPS listener in the same
# run (no peer here speaks HTTP/3: Debian's nginx 1.22 has no QUIC, wrk
# and h2load none either). One engine worker pinned to CPU 0, the load
# pinned to CPU 1, runs interleaved, medians:
#
#   keep-alive:  redirects/s and p99 over 64 kept connections, HTTP/3
#                (engine/examples/h3_load.rs, quinn + h3) and HTTPS
#                HTTP/1.1 (wrk), the same topology and client addresses
#   idle:        bytes of engine RSS per idle HTTP/3 connection (1,000
#                connections opened, one request each, then held)
#
#   load_testing/bench/h3.sh [REPETITIONS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ulimit -n 65536 2>/dev/null || true
REPS=${1:-3}
SECS=${2:-10}
CONNS=${CONNS:-64}
IDLE=${IDLE:-1000}
OUT=$(mktemp -d /tmp/edgeward-h3-bench.XXXXXX)
PORT=18290

command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -p edgeward --bin edgeward --example h3_load >/dev/null 2>&1
EW=./target/release/edgeward
LOAD=./target/release/examples/h3_load
$EW synth-topology --v4 9700 --v6 300 --regions 100 > "$OUT/topology.json"
python3 load_testing/bench/gen_peers.py "$OUT/topology.json" "$OUT" 18291 18293 >/dev/null
# A CA and a leaf for bench.test (webpki, under the HTTP/3 client, does
# not take a self-signed CA certificate as the server's own).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=edgeward bench CA" -keyout "$OUT/ca.key" -out "$OUT/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=bench.test \
  -keyout "$OUT/key.pem" -out "$OUT/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:bench.test\nbasicConstraints=CA:FALSE\n' > "$OUT/leaf.ext"
openssl x509 -req -in "$OUT/leaf.csr" -CA "$OUT/ca.pem" -CAkey "$OUT/ca.key" \
  -CAcreateserial -days 2 -extfile "$OUT/leaf.ext" -out "$OUT/cert.pem" 2>/dev/null
export RUST_BACKTRACE=0

pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; }
trap cleanup EXIT
taskset -c 0 $EW serve --listen 127.0.0.1:18289 --tls-listen 127.0.0.1:$PORT \
  --h3-listen 127.0.0.1:$PORT --tls-cert "$OUT/cert.pem,$OUT/key.pem" \
  --admin-listen off --workers 1 --topology "$OUT/topology.json" \
  --no-policy-header >"$OUT/ew.log" 2>&1 &
pid=$!
sleep 2
PATH_Q="/btv/live/hls/ch1.m3u8?token=abc"
rss() { awk '/^VmRSS/ {print $2 * 1024}' "/proc/$pid/status"; }

h3_run() {
  taskset -c 1 $LOAD load 127.0.0.1:$PORT bench.test "$OUT/ca.pem" "$CONNS" "$SECS" \
    "$PATH_Q" "$OUT/clients.txt" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
print(r["rps"], r["p50_ms"] * 1000, r["p99_ms"] * 1000, r["errors"] + r["requests"] - r["redirects"])'
}
tls_run() {
  CLIENTS="$OUT/clients.txt" taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" --latency \
    -s load_testing/bench/rotate.lua "https://127.0.0.1:$PORT/" > "$OUT/tls.wrk"
  python3 load_testing/bench/wrk_summary.py "$OUT/tls.wrk"
}

for rep in $(seq "$REPS"); do
  r=$(h3_run); echo "rep $rep http3: $r"; echo "$r" >> "$OUT/http3.results"
  r=$(tls_run); echo "rep $rep https-h1: $r"; echo "$r" >> "$OUT/https-h1.results"
done

# Idle: RSS before, with IDLE connections held, per connection.
before=$(rss)
taskset -c 1 $LOAD idle 127.0.0.1:$PORT bench.test "$OUT/ca.pem" "$IDLE" 20 "$PATH_Q" \
  > "$OUT/idle.out" &
idle_pid=$!
for _ in $(seq 200); do grep -q '"mode":"idle"' "$OUT/idle.out" 2>/dev/null && break; sleep 0.2; done
sleep 2
during=$(rss)
kill "$idle_pid" 2>/dev/null || true
cat "$OUT/idle.out"

python3 - "$OUT" "$before" "$during" "$IDLE" <<'PY'
import statistics, sys
out, before, during, idle = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print(f"\n{'protocol':<12}{'req/s (median)':>16}{'p50 us':>10}{'p99 us':>10}{'non-3xx':>9}")
med = {}
for name in ("http3", "https-h1"):
    rows = [l.split() for l in open(f"{out}/{name}.results") if l.strip()]
    med[name] = [statistics.median(float(r[i]) for r in rows) for i in range(3)]
    bad = sum(int(float(r[3])) for r in rows)
    print(f"{name:<12}{med[name][0]:>16.0f}{med[name][1]:>10.0f}{med[name][2]:>10.0f}{bad:>9}")
print(f"http3 / https-h1 req/s {med['http3'][0] / med['https-h1'][0]:.2f}")
print(f"idle HTTP/3: {(during - before) / idle:.0f} bytes of RSS per connection "
      f"({idle} connections: {before >> 20} -> {during >> 20} MiB)")
PY
