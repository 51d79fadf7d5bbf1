#!/usr/bin/env bash
# Deploy edgeward to every node of an environment:
#
#   deploy/deploy.sh <environment> [topology.json] [policy.wasm]
#
# Builds a release, copies binary, policy and topology to each node over
# ssh, restarts the unit, waits for /readyz, and rolls back to the previous
# binary if the node does not become ready. Nodes are done one at a time,
# and a failure stops the rollout. Secrets (the admin token) are never
# copied from here: they live on the nodes, in /etc/edgeward/admin-token.
set -euo pipefail
cd "$(dirname "$0")/.."

env=${1:?usage: deploy/deploy.sh <environment> [topology.json] [policy.wasm]}
topology=${2:-}
policy=${3:-}
inventory=${INVENTORY:-deploy/inventory}
ready_timeout=${READY_TIMEOUT:-30}

hosts=$(awk -v e="$env" '$1 == e { $1 = ""; print }' "$inventory")
[ -n "$hosts" ] || { echo "no environment '$env' in $inventory" >&2; exit 2; }

cargo build --release -p edgeward
bin=target/release/edgeward
if [ -z "$policy" ]; then
  policy=$(mktemp)
  "$bin" policy export "$policy"
fi
if [ -n "$topology" ]; then
  "$bin" check-topology "$topology"
fi
"$bin" policy check "$policy" ${topology:+--topology "$topology"} >/dev/null

for host in $hosts; do
  echo "==> $host"
  scp -q "$bin" "$host:/tmp/edgeward.new"
  scp -q "$policy" "$host:/tmp/edgeward-policy.wasm"
  [ -n "$topology" ] && scp -q "$topology" "$host:/tmp/edgeward-topology.json"
  scp -q deploy/systemd/edgeward.service "$host:/tmp/edgeward.service"
  ssh "$host" sudo bash -s -- "$ready_timeout" <<'REMOTE'
set -euo pipefail
timeout=$1
install -d -m 0755 /etc/edgeward
[ -f /etc/edgeward/edgeward.env ] || printf 'EDGEWARD_LISTEN=0.0.0.0:80\nEDGEWARD_ADMIN_LISTEN=127.0.0.1:9090\n' > /etc/edgeward/edgeward.env
[ -f /etc/edgeward/admin-token ] || { head -c 32 /dev/urandom | base64 > /etc/edgeward/admin-token; chmod 0644 /etc/edgeward/admin-token; }
[ -f /tmp/edgeward-topology.json ] && install -m 0644 /tmp/edgeward-topology.json /etc/edgeward/topology.json
install -m 0644 /tmp/edgeward-policy.wasm /etc/edgeward/policy.wasm
[ -f /usr/local/bin/edgeward ] && cp -p /usr/local/bin/edgeward /usr/local/bin/edgeward.previous
install -m 0755 /tmp/edgeward.new /usr/local/bin/edgeward
install -m 0644 /tmp/edgeward.service /etc/systemd/system/edgeward.service
systemctl daemon-reload
systemctl enable --quiet edgeward
systemctl restart edgeward
admin=$(. /etc/edgeward/edgeward.env; echo "${EDGEWARD_ADMIN_LISTEN:-127.0.0.1:9090}")
for _ in $(seq "$timeout"); do
  if curl -fsS "http://$admin/readyz" >/dev/null 2>&1; then echo "ready"; exit 0; fi
  sleep 1
done
echo "not ready after ${timeout}s: rolling back" >&2
if [ -f /usr/local/bin/edgeward.previous ]; then
  install -m 0755 /usr/local/bin/edgeward.previous /usr/local/bin/edgeward
  systemctl restart edgeward
fi
exit 1
REMOTE
done
echo "deployed to $env"
