#!/usr/bin/env bash
# Set up a fresh machine: system tools (as root) and a virtual environment with dxforge in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # the Debian tools dxforge runs (src/dxforge/data/debian-tools.txt says what each is for)
    need=()
    while read -r tool package; do
        case "$tool" in '' | '#'*) continue ;; esac
        command -v "$tool" >/dev/null || need+=("$package")
    done < src/dxforge/data/debian-tools.txt
    if [ "${#need[@]}" -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
fi
# .venv: dxforge editable, its dependencies from a base environment in the user cache
"${PYTHON:-python3}" scripts/make_venv.py
