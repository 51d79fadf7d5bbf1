#!/usr/bin/env bash
# A large programme guide imported into a running engine: a Kaltura EPG
# file of MB megabytes (default 50; 200 channels, programmes of 30 minutes
# with a title, a description and metas as the old system's files had)
# is POSTed to /epg, as `ctl epg import` and the fetchers do. Prints the
# time from request to answer, the engine's resident memory before, at
# its peak during the import and after, and the peak above the memory
# before. RUNS imports (default 3), each into a fresh engine.
#
#   load_testing/bench/epg_import.sh [MB] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
MB=${1:-50}
RUNS=${2:-3}
OUT=$(mktemp -d /tmp/edgeward-epg.XXXXXX)
PORT=18490; ADMIN=18491
cargo build --release -p edgeward --example epg_import >/dev/null 2>&1
cargo build --release -p edgeward >/dev/null 2>&1
EW=./target/release/edgeward
./target/release/examples/epg_import "$MB" --write "$OUT"
PID=
trap 'kill $PID 2>/dev/null || true; rm -rf "$OUT"' EXIT
kib() { awk -v k="^$1" '$0 ~ k {print $2}' /proc/$PID/status; }
for run in $(seq "$RUNS"); do
  ${MALLOC_ENV:-} $EW serve --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$ADMIN --workers 1 \
    --topology "$OUT/topology.json" --watch-interval-ms 0 >"$OUT/ew.log" 2>&1 &
  PID=$!
  until curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null; do sleep 0.1; done
  sleep 1
  echo 5 > /proc/$PID/clear_refs
  before=$(kib VmRSS:)
  start=$(date +%s.%N)
  code=$(curl -s -o "$OUT/answer.json" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/xml' --data-binary @"$OUT/guide.xml" "http://127.0.0.1:$ADMIN/epg")
  end=$(date +%s.%N)
  peak=$(kib VmHWM:)
  sleep 1
  after=$(kib VmRSS:)
  created=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sum(c["created"] for c in r["epg"]["channels"].values()))' "$OUT/answer.json" 2>/dev/null || echo "?")
  printf 'run %s: HTTP %s, %s programmes created in %.2f s; RSS before %d MiB, peak %d MiB (+%d MiB), after %d MiB; answer %d KiB\n' \
    "$run" "$code" "$created" "$(echo "$end - $start" | bc)" $((before / 1024)) $((peak / 1024)) \
    $(((peak - before) / 1024)) $((after / 1024)) $(($(stat -c %s "$OUT/answer.json") / 1024))
  kill $PID; wait $PID 2>/dev/null || true
done
