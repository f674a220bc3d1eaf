#!/bin/sh
# Set up this distribution project on a fresh machine (written by `dxforge extension init`;
# the CI jobs `dxforge ci` renders start with it): .venv with dxforge, then, as root, the
# Debian tools dxforge runs (dxforge's data/debian-tools.txt).
#   DXFORGE_SPEC  what pip installs (default: the dxforge that wrote this project); a wheel's
#                 path or any pip requirement
#   PYTHON        the interpreter .venv is made from (default: python3)
set -eu
cd "$(dirname "$0")/.."
spec=${DXFORGE_SPEC:-"dxforge==@DXFORGE_VERSION@"}
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check "$spec"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    tools=$(.venv/bin/python -c 'from importlib.resources import files
print(files("dxforge").joinpath("data/debian-tools.txt").read_text())')
    need=$(printf '%s\n' "$tools" | while read -r tool package; do
        case "$tool" in '' | '#'*) continue ;; esac
        command -v "$tool" >/dev/null || printf '%s\n' "$package"
    done | sort -u)
    if [ -n "$need" ]; then
        apt-get update -qq
        # shellcheck disable=SC2086  # one word per package
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
    fi
fi
.venv/bin/dxforge --help >/dev/null
