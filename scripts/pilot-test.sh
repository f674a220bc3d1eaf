#!/bin/sh
# Pilot smoke test of a DIRACOS installer, as a grid pilot meets it: install into a new prefix
# with the installer alone, then check that the environment works. Needs only POSIX sh and the
# base tools of a minimal Linux (coreutils, tar, gzip); runs as any user; HOME may be read-only.
# The one list of pilot checks: `dxforge release`, the OS-matrix tests and CI all run this.
#
# usage: pilot-test.sh INSTALLER PREFIX
set -eu

[ $# -eq 2 ] || { echo "usage: $0 INSTALLER PREFIX" >&2; exit 2; }
installer=$1
prefix=$2
fail() { printf 'pilot: FAILED: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N 2>/dev/null | sed 's/\.N$//' || date +%s; }

start=$(now)
sh "$installer" -b -p "$prefix" || fail "the installer exited with $?"
end=$(now)
printf 'pilot: install seconds %s\n' "$(echo "$start $end" | awk '{ printf "%.2f", $2 - $1 }')"

# shellcheck disable=SC1091  # written by the installer
. "$prefix/diracosrc"
[ "$(command -v python)" = "$prefix/bin/python" ] || fail "diracosrc does not put $prefix/bin first"

python - <<'EOF' || fail "python checks"
import sys
import bz2, ctypes, lzma, readline, sqlite3, ssl, uuid, zlib  # noqa: F401
import diracx.core  # noqa: F401

assert ssl.OPENSSL_VERSION_INFO >= (3,), f"OpenSSL older than 3: {ssl.OPENSSL_VERSION}"
cas = ssl.create_default_context().cert_store_stats()["x509_ca"]
assert cas > 0, "the default SSL context loads no CA certificate"
ctypes.CDLL(None)
uuid.uuid4()
print(f"pilot: python {sys.version.split()[0]}, {ssl.OPENSSL_VERSION}, {cas} CA certificates,"
      f" sqlite {sqlite3.sqlite_version}")
EOF

dirac --help > /dev/null || fail "dirac --help"
if [ -e "$prefix/bin/voms-proxy-init" ]; then
    voms-proxy-init --version || fail "voms-proxy-init --version"
else
    echo "pilot: no voms in this installer"
fi
git --version || fail "git --version"
pip --version || fail "pip --version"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/pilot-git.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
git init -q "$scratch/src" || fail "git init"
git -C "$scratch/src" -c user.name=pilot -c user.email=pilot@localhost \
    commit -q --allow-empty -m "pilot" || fail "git commit"
git clone -q "$scratch/src" "$scratch/dst" || fail "git clone of a local repository"
[ "$(git -C "$scratch/dst" log --format=%s)" = pilot ] || fail "the clone has not the commit"
if out=$(git ls-remote https://127.0.0.1:1/x 2>&1); then
    fail "git ls-remote of a closed port succeeded"
fi
case "$out" in
    *"not a git command"* | *remote-https*) fail "git has no https remote helper: $out" ;;
    *onnect*) printf 'pilot: git https reaches the network layer (%s)\n' "$(echo "$out" | tail -n 1)" ;;
    *) fail "git ls-remote failed for another reason than the connection: $out" ;;
esac
echo "pilot: all checks passed"
