#!/usr/bin/env bash
# Remove the rig: the three kind clusters and the gateway that up.sh started. Its state directory stays
# (the gateway's store and log) unless --purge is given.
set -euo pipefail

state="${FLYTE_KIND_STATE:-$HOME/.flyte/kind}"
clusters=(us-east eu-west ap-south)

for cluster in "${clusters[@]}"; do
  if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
    kind delete cluster --name "$cluster"
  fi
done
if [ -f "$state/gateway.pid" ]; then
  pid="$(cat "$state/gateway.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
  fi
  rm -f "$state/gateway.pid"
fi
if [ "${1:-}" = "--purge" ]; then
  rm -rf "$state"
fi
echo "rig down"
