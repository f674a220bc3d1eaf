#!/usr/bin/env bash
# Set up and run the whole test suite (unit and end-to-end) plus the linters.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# shellcheck source=scripts/env.sh
. scripts/env.sh
.venv/bin/ruff check src tests scripts benchmarks installer
.venv/bin/python -m pytest -ra --durations=15 "$@"
