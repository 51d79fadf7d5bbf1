#!/usr/bin/env bash
# What health checking costs: an engine checking 1,000 servers at a 2 s
# interval (500 probes/s, one new connection each) against a local
# always-OK endpoint; prints the engine's CPU use over 20 s and its RSS.
#
#   load_testing/bench/health_load.sh [SERVERS]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000}
OUT=$(mktemp -d /tmp/edgeward-health.XXXXXX)
cargo build --release -p edgeward >/dev/null 2>&1

python3 - "$N" > "$OUT/topology.json" <<'PY'
import json, sys
n = int(sys.argv[1])
servers = [{"id": f"e{i}", "kind": "edge", "host": "127.0.0.1", "port": 18290,
            "healthcheck": {"path": f"/health/{i}", "interval": "2s", "timeout": "1s"}} for i in range(n)]
print(json.dumps({"regions": [{"id": "r", "server_groups": ["g"]}],
                  "subnets": [{"cidr": "10.0.0.0/8", "region": "r"}],
                  "server_groups": [{"id": "g", "servers": [s["id"] for s in servers]}],
                  "servers": servers, "channels": []}))
PY

python3 - <<'PY' &
import asyncio
async def handle(r, w):
    try:
        await r.readuntil(b"\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
        await w.drain()
    except Exception:
        pass
    w.close()
async def main():
    s = await asyncio.start_server(handle, "127.0.0.1", 18290, backlog=4096)
    async with s:
        await s.serve_forever()
asyncio.run(main())
PY
edge=$!
./target/release/edgeward serve --listen 127.0.0.1:18291 --admin-listen 127.0.0.1:18292 --topology "$OUT/topology.json" >/dev/null 2>"$OUT/engine.log" &
engine=$!
trap 'kill $edge $engine 2>/dev/null || true' EXIT
sleep 6
kill -0 $engine || { echo "engine exited:"; tail -5 "$OUT/engine.log"; exit 1; }
t1=$(awk '{print $14+$15}' /proc/$engine/stat)
sleep 20
t2=$(awk '{print $14+$15}' /proc/$engine/stat)
ticks=$(getconf CLK_TCK)
up=$(curl -s localhost:18292/servers | grep -c '"state": "up"' || true)
echo "$N servers checked every 2 s: $up up; engine CPU $(python3 -c "print(f'{($t2-$t1)/$ticks/20*100:.1f}')") % of one core; $(grep VmRSS /proc/$engine/status)"
