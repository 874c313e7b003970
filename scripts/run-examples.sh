#!/usr/bin/env bash
# The main job: the brief's five programs, unchanged, each in its own process, across a local multi-cluster rig
# (a gateway and two agents as separate processes). `--local` runs them in-process instead, with no servers.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-rig}"
if [ "$mode" = "rig" ]; then
  flyte rig up --clusters us-east,eu-west
  trap 'flyte rig down' EXIT
fi

status=0
for program in examples/*.py; do
  printf '\n== %s\n' "$program"
  if [ "$mode" = "--local" ]; then
    # No config file is found from a fresh temporary directory: local mode.
    (cd "$(mktemp -d)" && python "$OLDPWD/$program") || status=1
  else
    python "$program" || status=1
  fi
done
if [ "$status" -eq 0 ]; then
  echo; flyte get runs --limit 5
fi
exit "$status"
