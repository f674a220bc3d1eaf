#!/bin/sh
# The main job of this distribution project on a fresh machine (written by `dxforge extension
# init`): set up, then the seed of what the extension needs beyond DiracX, its packages built on
# DiracX's channel at the version they pin, and its installer in build/installer/. Arguments go
# to the installer (for instance --compression gzip).
set -eu
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/dxforge seed
.venv/bin/dxforge extension build
.venv/bin/dxforge installer "$@"
