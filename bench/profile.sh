#!/usr/bin/env bash
# Where the gateway's, the agent's and its workers' time goes during a fan-out or a chain: py-spy profiles of each,
# their top frames, and the share of their samples spent tracing.
#
#   bash bench/profile.sh [N]         # N-way fan-out of no-op children on a warm pool (default 2000)
#   bash bench/profile.sh chain [N]   # N sequential child calls on the warm pool (default 3000)
#
# A chain is profiled with py-spy's --gil: only samples that hold the GIL, so time a process waits in an fsync or a
# socket write (the chain's processes are mostly waiting for each other) does not count as its own. The fan-out's
# profile counts every active sample, as earlier passes' figures in docs/performance.md did.
#
# Runs bench/vs_ray.py's workload (--skip-ray) on a rig of its own, attaches py-spy to the gateway and the agent
# once they are up, and to each process the agent starts (spare and pool workers; the pool worker runs the parent
# and its children) as it appears, and prints the frames with the most samples, by self time and (our own frames) by
# total time. Samples taken while a process imports (its start-up, a module first used) are left out and counted.
# The raw profiles (collapsed stacks, for flamegraph tools or speedscope) stay in the printed folder. A thread that
# waits for a socket shows in py-spy's samples: the tracing share overstates the span export thread's CPU. py-spy is installed on first
# use into a virtualenv of its own (~/.cache/flyte-bench/py-spy); attaching needs root or ptrace permission.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = chain ]; then
  workload=(--fanout 10 --chain "${2:-3000}")
  sampling=(--gil)
else
  workload=(--fanout "${1:-2000}" --chain 20)
  sampling=()
fi

tools="$HOME/.cache/flyte-bench/py-spy"
if [ ! -x "$tools/bin/py-spy" ]; then
  python3 -m venv "$tools"
  # Forced: a virtualenv whose py-spy package survived without its binary would otherwise be "already satisfied".
  "$tools/bin/python" -m pip install -q --force-reinstall py-spy
fi

root=$(mktemp -d /tmp/flyte-profile-XXXXXX)
python bench/vs_ray.py --skip-ray --root "$root" "${workload[@]}" >"$root/bench.txt" 2>&1 &
bench=$!
state="$root/home/rig/rig.json"
for _ in $(seq 300); do [ -s "$state" ] && break; sleep 0.2; done
[ -s "$state" ] || { echo "the rig did not come up; see $root/bench.txt"; exit 1; }

recorders=()
record() {  # record PID NAME
  "$tools/bin/py-spy" record --pid "$1" --rate 200 "${sampling[@]}" --format raw --output "$root/$2.txt" --nonblocking \
    >/dev/null 2>&1 &
  recorders+=($!)
}
for part in gateway agent; do
  pid=$(python3 -c "import json,sys; p=json.load(open(sys.argv[1]))['pids']; print(next(v for k, v in p.items() if k.startswith(sys.argv[2])))" "$state" "$part")
  record "$pid" "$part"
  [ "$part" = agent ] && agent=$pid
done
parts=(gateway agent)
while kill -0 "$bench" 2>/dev/null; do
  for pid in $(ps -eo pid=,ppid=,sid= | awk -v agent="$agent" '$2 == agent || $3 == agent {print $1}'); do
    if [[ " ${parts[*]} " != *" worker-$pid "* ]] && grep -q "flyte._runtime" "/proc/$pid/cmdline" 2>/dev/null; then
      record "$pid" "worker-$pid"
      parts+=("worker-$pid")
    fi
  done
  sleep 0.5
done
for recorder in "${recorders[@]}"; do wait "$recorder" || true; done
cat "$root/bench.txt"

for part in "${parts[@]}"; do
  if [ ! -s "$root/$part.txt" ]; then
    # A worker may have come and gone between two looks; the gateway and the agent are always there.
    [[ "$part" == worker-* ]] && continue
    echo "py-spy recorded no profile of the $part (attaching needs root or ptrace permission)"
    exit 1
  fi
  python3 - "$root/$part.txt" "$part" <<'PY'
import collections
import re
import sys

TRACING = ("flyte/_otel.py", "flyte/_spans.py", "agent/_tracing.py", "gateway/_tracing.py", "gateway/_otlp.py")
# Our own frames: the total-time listing shows these, not the loop and click frames every sample passes through.
OURS = re.compile(r"\((?:gateway|agent|policies|flyte)/")
self_time: collections.Counter[str] = collections.Counter()
total_time: collections.Counter[str] = collections.Counter()
samples = tracing = importing = 0
for line in open(sys.argv[1]):
    stack, _, count = line.rstrip().rpartition(" ")
    if not stack:
        continue
    frames = stack.split(";")
    if any("_find_and_load " in frame for frame in frames):
        # A process's start-up, or a module imported on first use: not what it costs per action.
        importing += int(count)
        continue
    samples += int(count)
    tracing += int(count) if any(name in frame for frame in frames for name in TRACING) else 0
    self_time[frames[-1]] += int(count)
    for frame in set(frames):
        if OURS.search(frame):
            total_time[frame] += int(count)
print(
    f"\n== {sys.argv[2]}: {samples} samples ({importing} more while importing, left out),"
    f" {100 * tracing / max(samples, 1):.1f}% under tracing's modules"
)
for title, counter in (("self time", self_time), ("total time, our own frames", total_time)):
    print(f"-- top frames by {title}")
    for frame, count in counter.most_common(15):
        print(f"{100 * count / max(samples, 1):6.1f}%  {frame[:150]}")
PY
done
echo
echo "raw profiles: $root/*.txt"
