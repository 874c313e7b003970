#!/usr/bin/env bash
# The main job: the brief's five programs, unchanged, each in its own process. With no config they run in local
# mode (everything in-process); the rig issue will point them at a gateway and agents instead.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
for program in examples/*.py; do
  printf '\n== %s\n' "$program"
  if ! python "$program"; then
    echo "FAILED: $program" >&2
    status=1
  fi
done
exit "$status"
