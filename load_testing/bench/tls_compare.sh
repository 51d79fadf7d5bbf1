#!/usr/bin/env bash
# edgeward's HTTPS listener against nginx (`listen ... ssl`, `http2 on`)
# with the same ECDSA P-256 certificate, the same synthetic topology and
# client addresses as compare.sh. Each server gets one worker pinned to
# CPU 0, wrk is pinned to CPU 1; runs are interleaved and the verdict is
# the median.
#
#   keep-alive:  redirects/s and p99 over TLS keep-alive connections
#   handshakes:  one request per connection (`Connection: close`): new
#                TLS handshakes/s, no session resumption (wrk keeps no
#                session cache)
#
#   load_testing/bench/tls_compare.sh [REPETITIONS] [SECONDS]
#
# Installs wrk and nginx from Debian's packages when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
ulimit -n 65536 2>/dev/null || true
REPS=${1:-3}
SECS=${2:-10}
CONNS=${CONNS:-64}
OUT=$(mktemp -d /tmp/edgeward-tls-bench.XXXXXX)
EW_PORT=18190; NGINX_PORT=18192

need() { command -v "$1" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need nginx nginx-light

cargo build --release -p edgeward >/dev/null 2>&1
EW=./target/release/edgeward
$EW synth-topology --v4 9700 --v6 300 --regions 100 > "$OUT/topology.json"
python3 load_testing/bench/gen_peers.py "$OUT/topology.json" "$OUT" 18191 18193
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=bench.test -addext subjectAltName=DNS:bench.test \
  -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>/dev/null
# One nginx worker, TLS with HTTP/2, no session reuse.
python3 - "$OUT" "$NGINX_PORT" "$(nginx -v 2>&1)" <<'PY'
import re, sys
out, port, version = sys.argv[1], sys.argv[2], sys.argv[3]
# `http2 on;` exists from nginx 1.25.1; before, `listen ... http2`.
v = tuple(int(x) for x in re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", version).groups())
h2 = ("ssl reuseport backlog=4096;\n        http2 on;" if v >= (1, 25, 1)
      else "ssl http2 reuseport backlog=4096;")
conf = open(f"{out}/nginx.conf").read()
conf = conf.replace("worker_processes 2;", "worker_processes 1;")
conf = re.sub(r"listen 127\.0\.0\.1:\d+ reuseport backlog=4096;",
    f"listen 127.0.0.1:{port} {h2}\n"
    f"        ssl_certificate {out}/cert.pem;\n        ssl_certificate_key {out}/key.pem;\n"
    "        ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_session_cache off;\n        ssl_session_tickets off;", conf)
open(f"{out}/nginx-tls.conf", "w").write(conf)
PY

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; nginx -c "$OUT/nginx-tls.conf" -s stop 2>/dev/null || true; }
trap cleanup EXIT

taskset -c 0 $EW serve --listen 127.0.0.1:18189 --tls-listen 127.0.0.1:$EW_PORT \
  --tls-cert "$OUT/cert.pem,$OUT/key.pem" --admin-listen off --workers 1 \
  --topology "$OUT/topology.json" --no-policy-header >"$OUT/ew.log" 2>&1 & pids+=($!)
taskset -c 0 nginx -c "$OUT/nginx-tls.conf"
sleep 2

for port in $EW_PORT $NGINX_PORT; do
  for proto in --http1.1 --http2; do
    loc=$(curl -sk $proto -o /dev/null -w '%{http_version} %{http_code} %{redirect_url}' -H 'X-Real-IP: 10.1.2.3' "https://127.0.0.1:$port/btv/live/hls/ch1.m3u8?token=abc")
    echo "check :$port $proto -> $loc"
  done
done

run() { # name port mode -> "rps p50_us p99_us non3xx"
  local close=""
  [ "$3" = handshakes ] && close=1
  CLOSE=$close CLIENTS="$OUT/clients.txt" taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" --latency \
    -s load_testing/bench/rotate.lua "https://127.0.0.1:$2/" > "$OUT/$1.wrk"
  python3 load_testing/bench/wrk_summary.py "$OUT/$1.wrk"
}

for rep in $(seq "$REPS"); do
  for mode in keepalive handshakes; do
    for name in edgeward nginx; do
      port=$EW_PORT; [ $name = nginx ] && port=$NGINX_PORT
      r=$(run "$name-$mode-$rep" $port $mode)
      echo "rep $rep $mode $name: $r"
      echo "$r" >> "$OUT/$name-$mode.results"
    done
  done
done

python3 - "$OUT" <<'PY'
import statistics, sys
out = sys.argv[1]
print(f"\n{'mode':<12}{'server':<10}{'req/s (median)':>16}{'p50 us':>10}{'p99 us':>10}{'non-3xx':>9}")
for mode in ("keepalive", "handshakes"):
    med = {}
    for name in ("edgeward", "nginx"):
        rows = [l.split() for l in open(f"{out}/{name}-{mode}.results") if l.strip()]
        med[name] = [statistics.median(float(r[i]) for r in rows) for i in range(3)]
        bad = sum(int(r[3]) for r in rows)
        print(f"{mode:<12}{name:<10}{med[name][0]:>16.0f}{med[name][1]:>10.0f}{med[name][2]:>10.0f}{bad:>9}")
    e, n = med["edgeward"], med["nginx"]
    print(f"{mode:<12}edgeward / nginx req/s {e[0] / n[0]:.2f}; p99 {e[2]:.0f} vs {n[2]:.0f} us")
PY
