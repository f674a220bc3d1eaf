#!/usr/bin/env bash
# Set up and run the whole test suite (unit and end-to-end) plus the linters.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# shellcheck source=scripts/env.sh
. scripts/env.sh
.venv/bin/ruff check src tests scripts benchmarks
.venv/bin/ruff format --check src tests scripts benchmarks
# coverage over the whole suite: this process (the CLI is called in-process) and every Python
# child started from .venv (dxforge commands, build workers), through coverage's
# `patch = subprocess` (pyproject.toml's [tool.coverage.run]) and its .pth in .venv
export COVERAGE_FILE="$PWD/.coverage"
rm -f .coverage .coverage.*
.venv/bin/python -m pytest -ra --durations=15 --cov --cov-report=term "$@"
total=$(.venv/bin/python -m coverage report --format=total --ignore-errors 2>/dev/null || true)
case "$total" in '' | *[!0-9.]*) total="?" ;; esac
echo "total coverage of src/dxforge (subprocesses included): ${total:-?}% (at least 85%, or pytest fails)"
