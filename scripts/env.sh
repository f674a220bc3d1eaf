# shellcheck shell=bash
# Sourced by the run scripts: where dxforge reads upstream archives no registry serves when
# their URL cannot be reached (see README: the source mirror). Keeps a value already set.
if [ -z "${DXFORGE_SOURCE_MIRROR:-}" ] && [ -d ../shared/sources ]; then
    DXFORGE_SOURCE_MIRROR=$(cd ../shared/sources && pwd)
    export DXFORGE_SOURCE_MIRROR
fi
