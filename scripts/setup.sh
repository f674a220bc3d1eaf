#!/usr/bin/env bash
# Set up a fresh machine: system tools (as root) and a virtual environment with dxforge in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # Debian tools dxforge runs: roots (mmdebstrap), .deb and source packages (dpkg-dev),
    # stripping (binutils; aarch64's for the linux-aarch64 seed, its cross gcc for the tests),
    # a pilot's site (util-linux, iproute2), payloads (zstd, xz), lint;
    # container images: written by umoci, pushed by skopeo, run by podman with runc (tests:
    # slirp4netns, a loopback docker-registry, redis-server; buildah for the writer benchmark)
    need=()
    for tool in zstd:zstd xz:xz-utils dpkg-deb:dpkg dpkg-source:dpkg-dev shellcheck:shellcheck \
            mmdebstrap:mmdebstrap strip:binutils \
            aarch64-linux-gnu-strip:binutils-aarch64-linux-gnu \
            aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu setpriv:util-linux nsenter:util-linux \
            ip:iproute2 flock:util-linux umoci:umoci skopeo:skopeo podman:podman runc:runc \
            slirp4netns:slirp4netns docker-registry:docker-registry redis-server:redis-server \
            buildah:buildah; do
        command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
    done
    if [ "${#need[@]}" -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
fi
# .venv: dxforge editable, its dependencies from a base environment in the user cache
"${PYTHON:-python3}" scripts/make_venv.py
