#!/usr/bin/env bash
# Steady-state memory of two edgeward builds on the same topology (1M
# subnets, 200 channels, 50,000 programs of two records): each started in
# turn, interleaved, ROUNDS times; RSS once it serves and after 2,000
# player requests, and the peak while loading. Judge by the median.
#
#   load_testing/bench/memory_compare.sh BIN_A BIN_B [ROUNDS]
#
# e.g. the build of an older commit against this one:
#   git worktree add /tmp/old <commit> && (cd /tmp/old && cargo build --release -p edgeward)
#   load_testing/bench/memory_compare.sh /tmp/old/target/release/edgeward target/release/edgeward
set -euo pipefail
cd "$(dirname "$0")/../.."
A=$1; B=$2; ROUNDS=${3:-3}
OUT=$(mktemp -d /tmp/edgeward-memory.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
"$B" synth-topology --v4 990000 --v6 10000 --regions 100 --seed 1 \
  --channels 200 --programs 50000 --msgpack > "$OUT/t.msgpack"
measure() {
  local bin=$1
  "$bin" serve --listen 127.0.0.1:18580 --admin-listen 127.0.0.1:18581 --workers 1 \
    --topology "$OUT/t.msgpack" --no-policy-header --watch-interval-ms 0 >"$OUT/log" 2>&1 &
  local pid=$!
  until curl -sf http://127.0.0.1:18581/readyz >/dev/null; do sleep 0.2; done
  for i in $(seq 1 2000); do echo "url = http://127.0.0.1:18580/btv/live/hls/ch1.m3u8"; done > "$OUT/urls"
  curl -s -o /dev/null -K "$OUT/urls" -H "X-Real-IP: 10.1.2.3" || true
  sleep 1
  awk '/^VmRSS/ {rss=$2} /^VmHWM/ {hwm=$2} END {printf "%d %d\n", rss/1024, hwm/1024}' /proc/$pid/status
  kill $pid; wait $pid 2>/dev/null || true
}
declare -a RA RB
for r in $(seq 1 "$ROUNDS"); do
  RA+=("$(measure "$A")"); RB+=("$(measure "$B")")
done
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
for side in A B; do
  eval "rows=(\"\${R$side[@]}\")"
  rss=$(printf '%s\n' "${rows[@]}" | awk '{print $1}' | median)
  hwm=$(printf '%s\n' "${rows[@]}" | awk '{print $2}' | median)
  bin=$([ $side = A ] && echo "$A" || echo "$B")
  echo "$side $bin: RSS serving $rss MiB (median of $ROUNDS; runs: $(printf '%s\n' "${rows[@]}" | awk '{printf "%s ", $1}')), peak while loading $hwm MiB"
done
