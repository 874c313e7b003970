#!/usr/bin/env bash
# Bring up the multi-kind-cluster rig: three kind clusters (us-east, eu-west, ap-south), the runtime image loaded
# into each, a gateway on this host, one agent per cluster; then run the brief's examples across them.
# Needs docker, kind, kubectl and this repository installed (`pip install -e .`). Undo with down.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
state="${FLYTE_KIND_STATE:-$HOME/.flyte/kind}"
port="${FLYTE_KIND_PORT:-8090}"
image="flyte-federation-runtime:latest"
clusters=(us-east eu-west ap-south)

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "up.sh: $1 is not installed ($2)" >&2; exit 1; }
}
need docker "the container engine kind runs on"
need kind "https://kind.sigs.k8s.io"
need kubectl "to install the agents"
need flyte "pip install -e . in the repository"

# The region label of a cluster's nodes, read from its kind config: one source of truth.
region_of() {
  sed -n 's/^ *topology.kubernetes.io\/region: *//p' "$here/kind-$1.yaml" | head -n 1
}

# 1. The clusters.
for cluster in "${clusters[@]}"; do
  if kind get clusters | grep -qx "$cluster"; then
    echo "cluster $cluster exists"
  else
    kind create cluster --config "$here/kind-$cluster.yaml" --wait 120s
  fi
done

# 2. One image for the agent and the workers, loaded into every cluster's nodes (no registry needed).
docker build -f "$here/Dockerfile" -t "$image" "$repo"
for cluster in "${clusters[@]}"; do
  kind load docker-image "$image" --name "$cluster"
done

# 3. The gateway on this host, listening where kind's containers reach it: the kind network's gateway address.
mkdir -p "$state"
store="sqlite:$state/state.db"
host_ip="$(docker network inspect kind -f '{{(index .IPAM.Config 0).Gateway}}')"
if [ -f "$state/gateway.pid" ] && kill -0 "$(cat "$state/gateway.pid")" 2>/dev/null; then
  echo "gateway already running (pid $(cat "$state/gateway.pid"))"
else
  flyte gateway serve --store "$store" --blobs "$state/blobs" --host 0.0.0.0 --port "$port" \
    --no-write-config >"$state/gateway.log" 2>&1 &
  echo $! >"$state/gateway.pid"
  for _ in $(seq 1 100); do
    grep -q "listening on" "$state/gateway.log" && break
    sleep 0.2
  done
  grep -q "listening on" "$state/gateway.log" || { cat "$state/gateway.log" >&2; exit 1; }
fi

# 4. Tokens: an admin token for you and the examples, one agent token per cluster.
admin="$(flyte gateway token create --scope admin --description "kind rig admin")"
export FLYTE_ENDPOINT="http://127.0.0.1:$port" FLYTE_API_KEY="$admin"
printf 'export FLYTE_ENDPOINT=%q FLYTE_API_KEY=%q\n' "$FLYTE_ENDPOINT" "$FLYTE_API_KEY" >"$state/env.sh"

# 5. One agent per cluster: the manifests with their __PLACEHOLDERS__ filled in.
for cluster in "${clusters[@]}"; do
  token="$(flyte gateway token create --scope "agent:$cluster" --description "kind agent $cluster")"
  for manifest in namespace serviceaccount rbac agent-token agent; do
    sed -e "s|__CLUSTER__|$cluster|g" -e "s|__REGION__|$(region_of "$cluster")|g" \
      -e "s|__GATEWAY__|http://$host_ip:$port|g" -e "s|__TOKEN__|$token|g" "$here/manifests/$manifest.yaml"
    echo "---"
  done | kubectl --context "kind-$cluster" apply -f -
  kubectl --context "kind-$cluster" -n flyte rollout restart deployment/flyte-agent
  kubectl --context "kind-$cluster" -n flyte rollout status deployment/flyte-agent --timeout 180s
done

# 6. The brief's examples, placed across the clusters by the gateway.
flyte get clusters
for example in "$repo"/examples/*.py; do
  echo "== $(basename "$example")"
  (cd "$repo/examples" && python "$example")
done
echo "rig up: gateway http://127.0.0.1:$port; source $state/env.sh to use it; down.sh removes everything"
