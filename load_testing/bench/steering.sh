#!/usr/bin/env bash
# Content-steering polls per second: one worker pinned to core 1 on the
# demo topology (5 pathways), wrk (64 connections, 10 s) on core 0 polling
# GET /steer/hls/ch1 as a player of the msk region reporting its pathway
# and throughput (no session token: every poll a new session, none
# throttled; the policy is called on each, --steering-max-rate 0). The
# example policy steer-region, then nearest (the engine's default order),
# then a live redirect for scale, twice, interleaved. Prints polls/s,
# latency, and the engine's own mean time per poll
# (edgeward_steering_duration_seconds). Needs a release build and wrk.
set -u
cd "$(dirname "$0")/../.."
BIN=target/release/edgeward
# The example policy as its author builds it (the engine encodes a plain
# core module as a component when it loads it).
cargo build -q --release --target wasm32-unknown-unknown -p steer-region || exit 1
POLICY=target/wasm32-unknown-unknown/release/steer_region.wasm
URL='http://127.0.0.1:18091/steer/hls/ch1?_HLS_pathway=msk&_HLS_throughput=5200000'
run() {
  local name=$1 url=$2; shift 2
  local log=/tmp/steer-$name.log
  taskset -c 1 $BIN serve --listen 127.0.0.1:18091 --admin-listen 127.0.0.1:19098 --workers 1 --steering-max-rate 0 "$@" > $log 2>&1 &
  local pid=$!
  for i in $(seq 1 120); do curl -s -o /dev/null -w "%{http_code}" http://127.0.0.1:19098/readyz | grep -q 200 && break; sleep 0.5; done
  echo "== $name"
  taskset -c 0 wrk -t1 -c64 -d10s -H 'X-Real-IP: 10.1.2.3' "$url" | grep -E "Requests/sec|Latency|Non-2xx"
  curl -s http://127.0.0.1:19098/metrics | awk '/^edgeward_steering_duration_seconds_(sum|count)/ {v[$1]=$2} END {if (v["edgeward_steering_duration_seconds_count"] > 0) printf "  mean poll in the engine: %.2f us\n", 1e6 * v["edgeward_steering_duration_seconds_sum"] / v["edgeward_steering_duration_seconds_count"]}'
  kill $pid; wait $pid 2>/dev/null
}
for round in 1 2; do
  run steer-region-$round "$URL" --policy "$POLICY" --policy-config <(echo '{"throughput_floor_kbps": 2000}')
  run default-order-$round "$URL"
  run redirect-$round 'http://127.0.0.1:18091/btv/live/hls/ch1'
done
