#!/usr/bin/env bash
# The whole check, as CI runs it: the machine's prerequisites, lint, format, types, then the test suite.
#
#   bash scripts/test.sh [--skip-missing] [--lowest] [PYTEST ARGS...]
#
# The tests need Debian's etcd-server, chromium and iproute2. As root with apt-get, the missing ones are installed
# here; elsewhere the script stops with one line per missing prerequisite and the command that installs it.
#   --skip-missing  run anyway: tests needing a missing prerequisite skip, and the summary lists them
#   --lowest        run against the lowest versions pyproject.toml declares, in .venv-lowest (made with uv)
set -euo pipefail
cd "$(dirname "$0")/.."

skip_missing=0
lowest=0
pytest_args=()
for arg in "$@"; do
  case "$arg" in
    --skip-missing) skip_missing=1 ;;
    --lowest) lowest=1 ;;
    *) pytest_args+=("$arg") ;;
  esac
done

if [ "$lowest" -eq 1 ]; then
  venv=.venv-lowest
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q uv
  fi
  # lowest-direct: our own lower bounds, exactly; what they depend on resolves as usual.
  "$venv/bin/python" -m uv pip install -q --python "$venv/bin/python" --resolution lowest-direct -e '.[dev]'
  rerun=()
  [ "$skip_missing" -eq 1 ] && rerun+=(--skip-missing)
  PATH="$PWD/$venv/bin:$PATH" exec bash scripts/test.sh "${rerun[@]}" "${pytest_args[@]}"
fi

# command -> Debian package that provides it
declare -A package_of=([etcd]=etcd-server [chromium]=chromium [ip]=iproute2 [tc]=iproute2)
missing=()
for command in etcd chromium ip tc; do
  command -v "$command" >/dev/null 2>&1 || missing+=("$command")
done
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  packages=$(for command in "${missing[@]}"; do echo "${package_of[$command]}"; done | sort -u | tr '\n' ' ')
  echo "installing missing prerequisites: $packages"
  apt-get update -qq
  # shellcheck disable=SC2086  # one word per package
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null
  # Debian's etcd-server starts a system etcd on the default ports; the tests start their own, on free ports.
  if command -v systemctl >/dev/null 2>&1; then systemctl stop etcd >/dev/null 2>&1 || true; fi
  missing=()
  for command in etcd chromium ip tc; do
    command -v "$command" >/dev/null 2>&1 || missing+=("$command")
  done
fi
for tool in ruff mypy lint-imports pytest; do
  command -v "$tool" >/dev/null 2>&1 || { echo "no \`$tool\` on PATH: pip install -e '.[dev]'"; exit 2; }
done
if [ "${#missing[@]}" -gt 0 ]; then
  for command in "${missing[@]}"; do
    echo "missing prerequisite: \`$command\` (install it with: apt-get install ${package_of[$command]})"
  done
  if [ "$skip_missing" -eq 0 ]; then
    echo "as root, this script installs them itself; or pass --skip-missing to skip the tests that need them"
    exit 2
  fi
fi
if [ "$skip_missing" -eq 1 ]; then
  export FLYTE_TESTS_SKIP_MISSING=1
fi

ruff check .
ruff format --check .
mypy
lint-imports
# The suite starts hundreds of gateways, agents, workers and CLI commands, each importing the project. Where
# PYTHONDONTWRITEBYTECODE is set none of them writes bytecode, and each compiles what it imports from source again
# (0.05-0.1 s a process); compiled once here instead.
python -m compileall -q sdk gateway agent policies
if [ "${#pytest_args[@]}" -gt 0 ]; then
  exec python -m pytest "${pytest_args[@]}"
fi
# The tests that share nothing beyond their own ports and folders (unit, integration, security) run on two workers,
# which halves the integration tests' time. The rigs (e2e) run on two workers too, a test module to each (a module's
# rig is started once): they wait on conditions with generous deadlines and a rig's processes are its own, and
# together they took 390 s against 570 s one at a time. The fault matrix, and whatever else is added, runs one test
# at a time: its rows bound recovery times, pause processes and cut network namespaces. Each part runs whatever the
# one before gives, and prints its own summary.
parallel=(tests/unit tests/integration tests/security)
rigs=(tests/e2e)
status=0
python -m pytest -n 2 "${parallel[@]}" || status=1
python -m pytest -n 2 --dist loadfile "${rigs[@]}" || status=1
python -m pytest "${parallel[@]/#/--ignore=}" "${rigs[@]/#/--ignore=}" || status=1
exit "$status"
