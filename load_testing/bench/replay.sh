#!/usr/bin/env bash
# Replay speed: decisions replayed per second by `edgeward policy replay`,
# on one core. A release engine on a synthetic 10k-subnet topology logs
# every decision (sample 1) of DECISIONS requests from varied clients; the
# log is repeated up to ROWS lines, then replayed through the built-in
# `nearest` policy, pinned to CPU 0.
#
#   load_testing/bench/replay.sh [ROWS] [DECISIONS]     (default 1000000 20000)
set -euo pipefail
cd "$(dirname "$0")/../.."
rows=${1:-1000000}
decisions=${2:-20000}
cargo build --release -q -p edgeward
bin=target/release/edgeward
work=$(mktemp -d)
trap 'kill "${engine:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" synth-topology --v4 9700 --v6 300 --regions 100 > "$work/topology.json"
"$bin" policy export "$work/nearest.wasm"
"$bin" serve --topology "$work/topology.json" --listen 127.0.0.1:18181 \
  --admin-listen off --decision-log "$work/log.jsonl" --decision-log-sample 1 \
  --decision-log-max-mib 4096 --policy-cache-dir off > /dev/null 2> "$work/engine.log" &
engine=$!
for _ in $(seq 100); do
  grep -q . "$work/engine.log" 2>/dev/null && break
  sleep 0.05
done
python3 - "$decisions" <<'PY'
import http.client, random, sys, time
n = int(sys.argv[1])
rng = random.Random(1)
conn = http.client.HTTPConnection("127.0.0.1", 18181)
for i in range(n):
    ip = "10.%d.%d.%d" % (rng.randrange(256), rng.randrange(256), rng.randrange(1, 255))
    path = rng.choice(["/btv/live/hls/ch1.m3u8", "/vod/film-%d.mp4" % rng.randrange(1000), "/static/logo.png"])
    for attempt in range(50):
        try:
            conn.request("GET", path, headers={"X-Real-IP": ip})
            conn.getresponse().read()
            break
        except (ConnectionError, http.client.HTTPException):
            time.sleep(0.05)
            conn = http.client.HTTPConnection("127.0.0.1", 18181)
PY
for _ in $(seq 200); do
  [ "$(wc -l < "$work/log.jsonl")" -ge "$decisions" ] && break
  sleep 0.05
done
kill "$engine"; wait "$engine" 2>/dev/null || true; engine=
python3 - "$work/log.jsonl" "$work/big.jsonl" "$rows" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
rows = int(sys.argv[3])
with open(sys.argv[2], "w") as out:
    for i in range(rows):
        out.write(lines[i % len(lines)] + "\n")
PY
echo "log: $rows records ($(du -h "$work/big.jsonl" | cut -f1)), from $(wc -l < "$work/log.jsonl") logged decisions"
/usr/bin/time -f "replay: %e s wall, %M KiB max RSS" \
  taskset -c 0 "$bin" policy replay "$work/nearest.wasm" --log "$work/big.jsonl" \
  --topology "$work/topology.json" 2> "$work/replay.err" | head -3
grep -v INFO "$work/replay.err" | tail -2
