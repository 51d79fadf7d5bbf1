#!/usr/bin/env bash
# The 1,000,000-subnet scale run: load, validate and index a 1M-subnet
# topology, then swap another one in through the admin API while wrk drives
# player traffic; prints load time, resident memory (now and peak), and the
# traffic's errors and latency with and without the swaps.
#
#   load_testing/bench/scale_swap.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ulimit -n 65536 2>/dev/null || true
SECS=${1:-30}
OUT=$(mktemp -d /tmp/edgeward-scale.XXXXXX)
PORT=18280; ADMIN=18281
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -p edgeward >/dev/null 2>&1
EW=./target/release/edgeward
$EW synth-topology --v4 990000 --v6 10000 --regions 100 --seed 1 --msgpack > "$OUT/t1.msgpack"
$EW synth-topology --v4 990000 --v6 10000 --regions 100 --seed 2 --msgpack > "$OUT/t2.msgpack"
# Client addresses inside random subnets of the served topology, 3 % unmatched.
$EW synth-topology --v4 990000 --v6 10000 --regions 100 --seed 1 > "$OUT/t1.json"
python3 - "$OUT/t1.json" > "$OUT/clients.txt" <<'PY'
import ipaddress, json, random, sys
subnets = json.load(open(sys.argv[1]))["subnets"]
rng = random.Random(7)
for _ in range(5000):
    if rng.random() < 0.03:
        print(f"192.0.2.{rng.randrange(1, 255)}")
        continue
    net = ipaddress.ip_network(rng.choice(subnets)["cidr"], strict=False)
    print(net.network_address + rng.randrange(0, min(net.num_addresses, 1 << 30)))
PY
rm "$OUT/t1.json"
$EW check-topology "$OUT/t1.msgpack"

$EW serve --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$ADMIN --workers 2 \
  --topology "$OUT/t1.msgpack" --no-policy-header --watch-interval-ms 0 >"$OUT/ew.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null; do sleep 0.1; done
rss() { awk '/^VmRSS/ {printf "%.0f MiB", $2/1024}' /proc/$PID/status; }
hwm() { awk '/^VmHWM/ {printf "%.0f MiB", $2/1024}' /proc/$PID/status; }
echo "serving 1M subnets: RSS $(rss) (peak so far $(hwm))"

drive() { CLIENTS="$OUT/clients.txt" wrk -t2 -c100 -d"${SECS}s" --latency -s load_testing/bench/rotate.lua "http://127.0.0.1:$PORT/" > "$OUT/$1.wrk"; }
summary() {
  python3 - "$OUT/$1.wrk" "$1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def us(v):
    n, unit = re.match(r"([\d.]+)(\w+)", v).groups()
    return float(n) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
total = int(re.search(r"(\d+) requests in", t).group(1))
p99 = us(re.search(r"^\s+99%\s+(\S+)", t, re.M).group(1))
mx = us(re.search(r"Latency\s+\S+\s+\S+\s+(\S+)", t).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
errs = re.search(r"Socket errors: (.*)", t)
print(f"{sys.argv[2]:<22} {total} requests, {rps:.0f}/s, p99 {p99/1e3:.2f} ms, max {mx/1e3:.2f} ms, "
      f"non-3xx {bad.group(1) if bad else 0}, socket errors: {errs.group(1) if errs else 'none'}")
PY
}

drive baseline
summary baseline
drive swapping & WRK=$!
sleep 3
for i in 1 2; do
  f=$([ $i = 1 ] && echo t2 || echo t1)
  start=$(date +%s%N)
  curl -sf -X PUT --data-binary @"$OUT/$f.msgpack" -H 'Content-Type: application/msgpack' \
    "http://127.0.0.1:$ADMIN/topology" >/dev/null
  echo "swap $i: PUT /topology (1M subnets) answered in $(( ($(date +%s%N) - start) / 1000000 )) ms; RSS $(rss), peak $(hwm)"
  sleep 5
done
wait $WRK
summary swapping
echo "RSS after: $(rss); peak over the run: $(hwm)"
