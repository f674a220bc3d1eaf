#!/usr/bin/env bash
# Set up and run the whole test suite (unit and end-to-end) plus the linter.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check src tests scripts benchmarks installer
.venv/bin/python -m pytest -ra "$@"
