#!/usr/bin/env bash
# The main job on a fresh machine: set up, seed the offline channel if needed, build all recipes,
# build the installer. Extra arguments go to every dxforge step (for instance --channel).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/dxforge seed
.venv/bin/dxforge build
.venv/bin/dxforge installer
