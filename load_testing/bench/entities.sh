#!/usr/bin/env bash
# Entity changes on a 1,000,000-subnet topology (with 200 channels and
# 50,000 programs of two records each) under player load: CHANGES
# single-entity changes through the admin API (programs, records, streams,
# channels, servers, and subnets created, moved and deleted), each timed
# from request to serving (the new snapshot serves before the journal's
# sync: the answer's time less what the engine did after serving, from its
# Server-Timing) and from request to answer (sent once the change is also
# synced to the state directory's journal), while
# wrk drives player traffic. Prints the apply latency by kind (p50, p99,
# max), the player p99 without and with the changes, errors, and resident
# memory before, after, and at its peak during the changes.
#
#   load_testing/bench/entities.sh [CHANGES] [SECONDS]
#   ETCD=1 load_testing/bench/entities.sh ...   the same on a node of a fleet
#     (a local etcd; each change is a change record, applied back by the
#     node's follower before the answer)
set -euo pipefail
cd "$(dirname "$0")/../.."
ulimit -n 65536 2>/dev/null || true
CHANGES=${1:-1000}
SECS=${2:-40}
OUT=$(mktemp -d /tmp/edgeward-entities.XXXXXX)
PORT=18480; ADMIN=18481
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -p edgeward >/dev/null 2>&1
EW=./target/release/edgeward
$EW synth-topology --v4 990000 --v6 10000 --regions 100 --seed 1 \
  --channels 200 --programs 50000 --msgpack > "$OUT/t.msgpack"
python3 - > "$OUT/clients.txt" <<'PY'
import random
rng = random.Random(7)
for _ in range(5000):
    if rng.random() < 0.25:
        print(f"100.{rng.randrange(64, 128)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")
    else:
        print(f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")
PY

FLEET=()
ETCD_PID=
if [ "${ETCD:-0}" = 1 ]; then
  command -v etcd >/dev/null || { apt-get update -qq && apt-get install -y -qq etcd-server >/dev/null; }
  etcd --data-dir "$OUT/etcd" --listen-client-urls http://127.0.0.1:18379 \
    --advertise-client-urls http://127.0.0.1:18379 --listen-peer-urls http://127.0.0.1:18380 \
    --quota-backend-bytes 4294967296 >"$OUT/etcd.log" 2>&1 &
  ETCD_PID=$!
  FLEET=(--etcd http://127.0.0.1:18379 --etcd-prefix /bench)
  until curl -sf http://127.0.0.1:18379/health >/dev/null; do sleep 0.2; done
fi
$EW serve --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$ADMIN --workers 1 \
  --topology "$OUT/t.msgpack" --state-dir "$OUT/state" --no-policy-header \
  --watch-interval-ms 0 "${FLEET[@]}" >"$OUT/ew.log" 2>&1 &
PID=$!
trap 'kill $PID $ETCD_PID 2>/dev/null || true; rm -rf "$OUT"' EXIT
until curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null; do sleep 0.2; done
if [ -n "$ETCD_PID" ]; then
  # The fleet's document: the seed written to etcd.
  curl -sf -X PUT --data-binary @"$OUT/t.msgpack" "http://127.0.0.1:$ADMIN/topology" >/dev/null
fi
mib() { awk -v k="^$1" '$0 ~ k {printf "%.0f MiB", $2/1024}' /proc/$PID/status; }
echo "serving: $(curl -s "http://127.0.0.1:$ADMIN/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["topology"]["summary"])')"
echo "RSS before: $(mib VmRSS) (peak while loading: $(mib VmHWM))"

drive() { CLIENTS="$OUT/clients.txt" wrk -t1 -c50 -d"$1s" --latency -s load_testing/bench/rotate.lua "http://127.0.0.1:$PORT/" > "$OUT/$2.wrk"; }
cat > "$OUT/changes.py" <<'PY'
import http.client, json, random, sys, time
admin, n, secs, seed = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
conn = http.client.HTTPConnection("127.0.0.1", int(admin))
rng = random.Random(seed)
def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    t = time.perf_counter()
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    text = r.read()
    ms = (time.perf_counter() - t) * 1000
    timing = dict(
        (m.split(";dur=")[0].strip(), float(m.split(";dur=")[1]))
        for m in r.getheader("Server-Timing", "apply;dur=nan").split(",")
    )
    inside.append(timing.get("apply", float("nan")))
    synced.append(timing.get("journal", float("nan")))
    # Serving began before the answer by what the engine did after it
    # (the journal's sync): request to serving, as the client saw it.
    served.append(ms - (timing.get("apply", 0.0) - timing.get("serve", timing.get("apply", 0.0))))
    return r.status, ms, text
kinds = ["program", "record", "stream", "channel", "server", "subnet"]
times = {k: [] for k in kinds}
serving = {k: [] for k in kinds}
served = []  # request to serving, per call
inside = []  # the engine's own figure (Server-Timing)
synced = []  # of which the journal's sync
errors = []
made = []  # subnets created and not deleted yet
pause = max(0.0, (secs - 6) / n - 0.002)
for i in range(n):
    kind = kinds[i % len(kinds)]
    # Program p is on channel p % 201 of ch1, ch-0 … ch-199.
    p = rng.randrange(50000)
    c = "ch1" if p % 201 == 0 else f"ch-{p % 201 - 1}"
    if kind == "program":
        hour = rng.randrange(1000)
        req = ("PATCH", f"/topology/programs/{c}-{p}", {"end": f"2026-12-{1 + hour % 28:02d}T{hour % 24:02d}:30:00Z", "start": None})
    elif kind == "record":
        req = ("PATCH", f"/topology/records/{c}-{p}/dvr-{p % 4}/hls/none", {"status": rng.choice(["completed", "running"])})
    elif kind == "stream":
        c = f"ch-{rng.randrange(200)}"
        req = ("PATCH", f"/topology/streams/{c}/hls/none", {"path": f"live/{c}/v{i}.m3u8"})
    elif kind == "channel":
        req = ("PATCH", f"/topology/channels/ch-{rng.randrange(200)}", {"name": f"Channel {i} of run {seed}"})
    elif kind == "server":
        req = ("PATCH", f"/topology/servers/edge-{rng.randrange(100)}-0", {"weight": rng.randrange(1, 5)})
    else:
        step = (i // len(kinds)) % 3
        if step == 0 or not made:
            net = f"192.168.{len(made) % 256}.{(i // 256) % 64 * 4}/30"
            req = ("POST", "/topology/subnets", {"cidr": net, "region": f"region-{rng.randrange(100)}"})
        elif step == 1:
            req = ("PATCH", f"/topology/subnets/{made[-1]}", {"region": f"region-{rng.randrange(100)}"})
        else:
            req = ("DELETE", f"/topology/subnets/{made.pop()}", None)
    status, ms, text = call(*req)
    if status >= 300:
        errors.append((req[0], req[1], status, text[:200]))
    else:
        times[kind].append(ms)
        serving[kind].append(served[-1])
        if req[0] == "POST":
            made.append(req[2]["cidr"])
    time.sleep(pause)
def pct(v, q):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")
every = [t for v in times.values() for t in v]
every_served = [t for v in serving.values() for t in v]
print(f"{n} changes, {len(errors)} errors")
for k in kinds + ["all"]:
    v = every if k == "all" else times[k]
    s = every_served if k == "all" else serving[k]
    print(f"  {k:<8} {len(v):>5}  serving p50 {pct(s, .5):6.2f} ms  p99 {pct(s, .99):6.2f} ms  |  answer p50 {pct(v, .5):6.2f} ms  p99 {pct(v, .99):6.2f} ms  max {max(v, default=float('nan')):6.2f} ms")
print(f"  engine's own apply time (Server-Timing): p50 {pct(inside, .5):.2f} ms  p99 {pct(inside, .99):.2f} ms  max {max(inside, default=float('nan')):.2f} ms")
print(f"    of which the journal's sync:             p50 {pct(synced, .5):.2f} ms  p99 {pct(synced, .99):.2f} ms  max {max(synced, default=float('nan')):.2f} ms")
for e in errors[:5]:
    print("  error:", e)
PY
echo "-- $((CHANGES / 5)) changes without player load:"
python3 "$OUT/changes.py" "$ADMIN" $((CHANGES / 5)) 8 1
drive 10 baseline
# Reset the peak, so that it is the peak during the changes.
echo 5 > /proc/$PID/clear_refs 2>/dev/null || true
drive "$SECS" during &
WRK=$!
sleep 1
echo "-- $CHANGES changes under player load:"
python3 "$OUT/changes.py" "$ADMIN" "$CHANGES" "$SECS" 2
wait $WRK
echo "RSS after: $(mib VmRSS) (peak during the changes: $(mib VmHWM))"
[ -n "$ETCD_PID" ] || echo "journal: $(ls "$OUT/state/topology")"
echo "players (requests/s, p50 us, p99 us, non-3xx):"
echo "  without changes: $(python3 load_testing/bench/wrk_summary.py "$OUT/baseline.wrk")"
echo "  with changes:    $(python3 load_testing/bench/wrk_summary.py "$OUT/during.wrk")"
