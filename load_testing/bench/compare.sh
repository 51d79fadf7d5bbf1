#!/usr/bin/env bash
# edgeward against a hand-configured nginx and HAProxy on the same
# synthetic topology, driven by wrk on this machine (loopback), several
# repetitions each, interleaved. Each server gets one worker pinned to
# CPU 0, wrk runs pinned to CPU 1. Prints requests/s and p50/p99 per server
# (medians) and the edgeward/peer ratios, for each connection count.
#
#   load_testing/bench/compare.sh [REPETITIONS] [SECONDS]
#   CONNS="64 1000 4000" load_testing/bench/compare.sh 3 10   (the default sweep)
#
# Installs wrk, nginx and haproxy from Debian's packages when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
ulimit -n 65536 2>/dev/null || true
REPS=${1:-3}
SECS=${2:-10}
CONNS=${CONNS:-64 1000 4000}
OUT=$(mktemp -d /tmp/edgeward-bench.XXXXXX)
EW_PORT=18180; EW_NATIVE_PORT=18181; NGINX_PORT=18182; HAPROXY_PORT=18183

need() { command -v "$1" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need nginx nginx-light
need haproxy haproxy

cargo build --release -p edgeward >/dev/null 2>&1
EW=./target/release/edgeward
$EW synth-topology --v4 9700 --v6 300 --regions 100 > "$OUT/topology.json"
python3 load_testing/bench/gen_peers.py "$OUT/topology.json" "$OUT" $NGINX_PORT $HAPROXY_PORT
# One worker each, like edgeward's --workers 1.
sed -i 's/^worker_processes 2;/worker_processes 1;/; s/worker_connections 8192/worker_connections 16384/' "$OUT/nginx.conf"
sed -i 's/nbthread 2/nbthread 1/' "$OUT/haproxy.cfg"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; nginx -c "$OUT/nginx.conf" -s stop 2>/dev/null || true; }
trap cleanup EXIT

taskset -c 0 $EW serve --listen 127.0.0.1:$EW_PORT --admin-listen off --workers 1 --topology "$OUT/topology.json" --no-policy-header >"$OUT/ew.log" 2>&1 & pids+=($!)
taskset -c 0 $EW serve --listen 127.0.0.1:$EW_NATIVE_PORT --admin-listen off --workers 1 --topology "$OUT/topology.json" --no-policy-header --native-only >"$OUT/ew-native.log" 2>&1 & pids+=($!)
taskset -c 0 nginx -c "$OUT/nginx.conf"
taskset -c 0 haproxy -f "$OUT/haproxy.cfg" -D
pids+=("$(cat "$OUT/haproxy.pid")")
sleep 2

for port in $EW_PORT $EW_NATIVE_PORT $NGINX_PORT $HAPROXY_PORT; do
  loc=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' -H 'X-Real-IP: 10.1.2.3' "http://127.0.0.1:$port/btv/live/hls/ch1.m3u8?token=abc")
  echo "check :$port -> $loc"
done

run() { # name port -> "rps p50_us p99_us"
  CLIENTS="$OUT/clients.txt" taskset -c 1 wrk -t1 -c"$conns" -d"${SECS}s" --latency -s load_testing/bench/rotate.lua "http://127.0.0.1:$2/" > "$OUT/$1.wrk"
  python3 load_testing/bench/wrk_summary.py "$OUT/$1.wrk"
}

for conns in $CONNS; do
for rep in $(seq "$REPS"); do
  for name in edgeward edgeward-native nginx haproxy; do
    case $name in
      edgeward) port=$EW_PORT ;; edgeward-native) port=$EW_NATIVE_PORT ;;
      nginx) port=$NGINX_PORT ;; haproxy) port=$HAPROXY_PORT ;;
    esac
    r=$(run "$name-$conns-$rep" $port)
    echo "c$conns rep $rep $name: $r"
    echo "$r" >> "$OUT/$name-$conns.results"
  done
done
done

python3 - "$OUT" $CONNS <<'PY'
import statistics, sys
out = sys.argv[1]
for conns in sys.argv[2:]:
    med = {}
    print(f"\n{conns} connections")
    print(f"{'server':<16}{'req/s (median)':>16}{'p50 us':>10}{'p99 us':>10}{'non-3xx':>9}")
    for name in ("edgeward", "edgeward-native", "nginx", "haproxy"):
        rows = [l.split() for l in open(f"{out}/{name}-{conns}.results") if l.strip()]
        rps = statistics.median(float(r[0]) for r in rows)
        p50 = statistics.median(float(r[1]) for r in rows)
        p99 = statistics.median(float(r[2]) for r in rows)
        bad = sum(int(r[3]) for r in rows)
        med[name] = (rps, p99)
        print(f"{name:<16}{rps:>16.0f}{p50:>10.0f}{p99:>10.0f}{bad:>9}")
    best = max(("nginx", "haproxy"), key=lambda n: med[n][0])
    print(f"edgeward / nginx   req/s: {med['edgeward'][0] / med['nginx'][0]:.2f}; p99 {med['edgeward'][1]:.0f} vs {med['nginx'][1]:.0f} us")
    print(f"edgeward / haproxy req/s: {med['edgeward'][0] / med['haproxy'][0]:.2f}; p99 {med['edgeward'][1]:.0f} vs {med['haproxy'][1]:.0f} us")
    print(f"edgeward / best peer ({best}) req/s: {med['edgeward'][0] / med[best][0]:.2f}")
    print(f"wasm policy / native rule req/s: {med['edgeward'][0] / med['edgeward-native'][0]:.2f}")
PY
