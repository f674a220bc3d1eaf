#!/usr/bin/env bash
# Set up a fresh machine: system tools (as root) and a virtual environment with dxforge in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # Always refresh the package lists: the seed asks apt for voms (apt-cache show, apt-get download).
    apt-get update -qq
    need=""
    for tool in zstd:zstd xz:xz-utils dpkg-deb:dpkg shellcheck:shellcheck mmdebstrap:mmdebstrap \
            dpkg-source:dpkg-dev; do
        command -v "${tool%%:*}" >/dev/null || need="$need ${tool#*:}"
    done
    if [ -n "$need" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
    fi
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# pip's notes about extra index locations without this project are noise here
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 \
    | { grep -v "^WARNING: Location '.*' is ignored" || true; }
