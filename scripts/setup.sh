#!/usr/bin/env bash
# Set up a fresh machine: system tools (as root) and a virtual environment with dxforge in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # Debian tools dxforge runs: roots (mmdebstrap), .deb and source packages (dpkg-dev),
    # stripping (binutils), a pilot's site (util-linux, iproute2), payloads (zstd, xz), lint
    need=()
    for tool in zstd:zstd xz:xz-utils dpkg-deb:dpkg dpkg-source:dpkg-dev shellcheck:shellcheck \
            mmdebstrap:mmdebstrap strip:binutils setpriv:util-linux nsenter:util-linux \
            ip:iproute2 flock:util-linux; do
        command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
    done
    if [ "${#need[@]}" -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# pip's notes about extra index locations without this project are noise here
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 \
    | { grep -v "^WARNING: Location '.*' is ignored" || true; }
