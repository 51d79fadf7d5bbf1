#!/usr/bin/env bash
# What GeoIP lookups cost a redirect: one worker pinned to core 1 on the
# demo topology, wrk (64 connections, 10 s) on core 0, a client in no
# configured subnet that MaxMind's test databases place in Sweden
# (X-Real-IP 89.160.20.128): without databases, then with the City, ASN
# and Anonymous-IP test databases, twice, interleaved. Needs a release
# build, wrk, and the test databases (tests/run downloads them into
# target/geoip-test-data).
set -u
cd "$(dirname "$0")/../.."
BIN=target/release/edgeward
DB=${GEOIP_TEST_DATA:-target/geoip-test-data}
[ -f "$DB/GeoIP2-City-Test.mmdb" ] || { echo "no test databases in $DB: run tests/run first"; exit 1; }
run() {
  local name=$1; shift
  taskset -c 1 $BIN serve --listen 127.0.0.1:18092 --admin-listen 127.0.0.1:19097 --workers 1 "$@" > /tmp/geoip-$name.log 2>&1 &
  local pid=$!
  for i in $(seq 1 120); do curl -s -o /dev/null -w "%{http_code}" http://127.0.0.1:19097/readyz | grep -q 200 && break; sleep 0.5; done
  echo "== $name"
  taskset -c 0 wrk -t1 -c64 -d10s -H 'X-Real-IP: 89.160.20.128' http://127.0.0.1:18092/btv/live/hls/ch1 | grep -E "Requests/sec|Latency|Non-2xx"
  kill $pid; wait $pid 2>/dev/null
}
for round in 1 2; do
  run none-$round
  run geoip-$round --geoip "$DB/GeoIP2-City-Test.mmdb" --geoip "$DB/GeoLite2-ASN-Test.mmdb" --geoip "$DB/GeoIP2-Anonymous-IP-Test.mmdb"
done
