#!/usr/bin/env bash
# The main job on a fresh machine: set up, seed the offline channel if needed, build all recipes,
# build the installer. Extra arguments go to the build and installer steps (for instance
# `--channel conda-forge`: then the seed is not used).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# shellcheck source=scripts/env.sh
. scripts/env.sh
if [[ " $* " != *" --channel "* ]]; then .venv/bin/dxforge seed; fi
.venv/bin/dxforge build "$@"
.venv/bin/dxforge installer "$@"
