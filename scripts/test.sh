#!/usr/bin/env bash
# The whole check, as CI runs it: lint, format, types (strict for the SDK), then the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check .
ruff format --check .
mypy
python -m pytest "$@"
