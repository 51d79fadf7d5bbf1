#!/usr/bin/env bash
# The JavaScript nearest (policies/js/nearest.js, with the JS SDK) beside
# the Rust nearest, in one run, interleaved: one worker pinned to core 1,
# wrk (16 connections, 10 s) on core 0. Prints redirects/s, latency, the
# mean policy call, the load time (compile + instantiate + init: uncached,
# then from the compile cache) and RSS. Needs a release build and wrk.
set -u
cd "$(dirname "$0")/../.."
BIN=target/release/edgeward
TOPO=tests/e2e/fixtures/routing.json
JS=target/js-policies/nearest.wasm
[ -f "$JS" ] || { echo "build it first: policies/js/node_modules/.bin/componentize-js --wit wit --world-name router --disable http fetch-event -o $JS policies/js/nearest.js (after npm ci --prefix policies/js)"; exit 1; }
run() {
  local name=$1; shift
  local log=/tmp/jsb-$name.log
  taskset -c 1 $BIN serve --listen 127.0.0.1:18090 --admin-listen 127.0.0.1:19099 --workers 1 --topology $TOPO "$@" > $log 2>&1 &
  local pid=$!
  for i in $(seq 1 120); do curl -s -o /dev/null -w "%{http_code}" http://127.0.0.1:19099/readyz | grep -q 200 && break; sleep 0.5; done
  echo "$name ready after $((i/2)) s"
  taskset -c 0 wrk -t1 -c16 -d10s -H 'X-Real-IP: 10.1.2.3' http://127.0.0.1:18090/btv/live/hls/ch1 | grep -E "Requests/sec|Latency|Non-2xx"
  curl -s http://127.0.0.1:19099/policies | python3 -c "import json,sys; [print('  ', p['name'], p['version'], 'calls', p['calls'], 'traps', p['traps'], 'mean_call_us', round(p['mean_call_us'],2)) for p in json.load(sys.stdin)['policies']]"
  grep "policy loaded" $log | sed 's/.*elapsed_ms=/  load (compile+instantiate+init) ms=/' | head -1
  ps -o rss= -p $pid | awk '{print "  RSS MiB", $1/1024}'
  kill $pid; wait $pid 2>/dev/null
}
for round in 1 2; do
  run rust-$round
  run js-$round --policy $JS --policy-cache-dir off
  run js-cached-$round --policy $JS
done
