#!/bin/sh
# Pilot test of a DIRACOS installer, as a grid pilot meets it: install into a new prefix with
# the installer alone, then check that the environment does its job. Needs only POSIX sh and
# the base tools of a minimal Linux (coreutils, tar, gzip); runs as any user; HOME may be
# read-only; no network but loopback. The one list of pilot checks: `dxforge release`, the OS
# matrix and CI all run this. Each check that passes prints "pilot: ok ...".
#
# usage: pilot-test.sh INSTALLER PREFIX
set -eu

[ $# -eq 2 ] || { echo "usage: $0 INSTALLER PREFIX" >&2; exit 2; }
installer=$1
prefix=$2
fail() { printf 'pilot: FAILED: %s\n' "$*" >&2; printf 'pilot: FAILED: %s\n' "$*"; exit 1; }
ok() { printf 'pilot: ok %s\n' "$*"; }
now() { date +%s.%N 2>/dev/null | sed 's/\.N$//' || date +%s; }

start=$(now)
sh "$installer" -b -p "$prefix" || fail "the installer exited with $?"
end=$(now)
printf 'pilot: install seconds %s\n' "$(echo "$start $end" | awk '{ printf "%.2f", $2 - $1 }')"

# shellcheck disable=SC1091  # written by the installer
. "$prefix/diracosrc"
[ "$(command -v python)" = "$prefix/bin/python" ] || fail "diracosrc does not put $prefix/bin first"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/pilot.XXXXXX")
server=
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
    rm -rf "$scratch"
}
trap cleanup EXIT

python - <<'EOF' || fail "python checks"
import sys
import bz2, ctypes, lzma, readline, sqlite3, ssl, tarfile, uuid, zlib  # noqa: F401
import diracx.core  # noqa: F401

assert ssl.OPENSSL_VERSION_INFO >= (3,), f"OpenSSL older than 3: {ssl.OPENSSL_VERSION}"
cas = ssl.create_default_context().cert_store_stats()["x509_ca"]
assert cas > 0, "the default SSL context loads no CA certificate"
assert hasattr(tarfile, "data_filter"), "tarfile has no extraction filters (PEP 706)"
ctypes.CDLL(None)
uuid.uuid4()
print(f"pilot: ok python {sys.version.split()[0]}, {ssl.OPENSSL_VERSION}, {cas} CA certificates,"
      f" sqlite {sqlite3.sqlite_version}")
EOF

# DIRACOS2's import test: every top-level module of the environment (site-packages and the
# standard library's extension modules) imports, from files inside the prefix
python - "$prefix" <<'EOF' || fail "importing every module of the environment"
import importlib, os, pkgutil, sys, sysconfig

prefix = os.path.realpath(sys.argv[1])
places = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib"),
          os.path.join(sysconfig.get_path("stdlib"), "lib-dynload")}
names = sorted({m.name for m in pkgutil.iter_modules(sorted(places))})
outside, broken = [], []
for name in names:
    try:
        mod = importlib.import_module(name)
    except Exception as e:  # every failure is reported, none stops the others
        broken.append(f"{name}: {type(e).__name__}: {e}")
        continue
    files = [getattr(mod, "__file__", None), *getattr(mod, "__path__", [])]
    for f in filter(None, files):
        if not os.path.realpath(f).startswith(prefix + os.sep):
            outside.append(f"{name}: {f}")
assert not broken, "modules that do not import:\n  " + "\n  ".join(broken)
assert not outside, "modules loaded from outside the prefix:\n  " + "\n  ".join(outside)
print(f"pilot: ok {len(names)} top-level modules import from inside {prefix}")
EOF

dirac --help > /dev/null || fail "dirac --help"
ok "dirac --help"

# A DiracX extension: at most one besides DiracX itself (`extension` in the `diracx` entry-point
# group), first in DiracX's priority, and `dirac --help` lists its commands (`diracx.cli`)
ext=$(python - <<'EOF'
from importlib.metadata import entry_points

found = sorted({ep.module for ep in entry_points(group="diracx", name="extension")})
others = [m for m in found if m != "diracx"]
assert len(others) <= 1, f"more than one DiracX extension installed: {others}"
if others:
    from diracx.core.extensions import extensions_by_priority

    assert extensions_by_priority()[0] == others[0], extensions_by_priority()
    cli = sorted({ep.name for ep in entry_points(group="diracx.cli")
                  if ep.module.split(".")[0] == others[0]})
    print(others[0], *cli)
EOF
) || fail "the diracx extension entry points"
if [ -n "$ext" ]; then
    help=$(dirac --help) || fail "dirac --help"
    # shellcheck disable=SC2086  # the extension's name, then its commands: words
    set -- $ext
    name=$1
    shift
    for command in "$@"; do
        printf '%s\n' "$help" | grep -qw -- "$command" \
            || fail "dirac --help does not list the extension's command $command"
    done
    ok "extension $name, the only one, first in priority; dirac --help lists: $*"
fi

git --version > /dev/null || fail "git --version"
case "$(git --exec-path)" in
    "$prefix"/*) ok "git --exec-path is inside the prefix ($(git --exec-path))" ;;
    *) fail "git --exec-path is $(git --exec-path), outside $prefix" ;;
esac
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
    *onnect*) ok "git clone, and https reaches the network layer ($(echo "$out" | tail -n 1))" ;;
    *) fail "git ls-remote failed for another reason than the connection: $out" ;;
esac

# VOMS: a throwaway CA, a user and a VOMS host certificate made with the prefix's openssl
command -v voms-proxy-init > /dev/null || fail "no voms-proxy-init in the installer"
[ "$(command -v openssl)" = "$prefix/bin/openssl" ] || fail "openssl is not the prefix's"
v=$scratch/voms
mkdir -p "$v/certificates" "$v/vomsdir/testvo"
cat > "$v/ext.cnf" <<'CNF'
[req]
distinguished_name=dn
[dn]
[ca]
basicConstraints=critical,CA:true
keyUsage=critical,keyCertSign,cRLSign
subjectKeyIdentifier=hash
[user]
basicConstraints=critical,CA:false
keyUsage=critical,digitalSignature,keyEncipherment,dataEncipherment
extendedKeyUsage=clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[host]
basicConstraints=critical,CA:false
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
subjectAltName=DNS:voms.example.org
CNF
dn=/DC=org/DC=dxforge
ossl() { openssl "$@" > "$v/openssl.log" 2>&1 || fail "openssl $1: $(cat "$v/openssl.log")"; }
ossl req -x509 -newkey rsa:2048 -nodes -keyout "$v/ca.key" -out "$v/ca.pem" -days 2 \
    -subj "$dn/CN=dxforge Test CA" -config "$v/ext.cnf" -extensions ca
for who in user:Test_User host:voms.example.org; do
    kind=${who%%:*}
    ossl req -new -newkey rsa:2048 -nodes -keyout "$v/${kind}key.pem" -out "$v/$kind.csr" \
        -config "$v/ext.cnf" -subj "$dn/CN=${who#*:}"
    ossl x509 -req -in "$v/$kind.csr" -CA "$v/ca.pem" -CAkey "$v/ca.key" -CAcreateserial \
        -days 2 -extfile "$v/ext.cnf" -extensions "$kind" -out "$v/${kind}cert.pem"
done
chmod 600 "$v"/*key.pem
cp "$v/ca.pem" "$v/certificates/dxforge-test-ca.pem"
ossl rehash "$v/certificates"
{ openssl x509 -in "$v/hostcert.pem" -noout -subject -nameopt compat | sed 's/^subject=//'
  openssl x509 -in "$v/hostcert.pem" -noout -issuer -nameopt compat | sed 's/^issuer=//'
} > "$v/vomsdir/testvo/voms.example.org.lsc"
X509_CERT_DIR=$v/certificates
X509_VOMS_DIR=$v/vomsdir
X509_USER_CERT=$v/usercert.pem
X509_USER_KEY=$v/userkey.pem
X509_USER_PROXY=$v/proxy.pem
export X509_CERT_DIR X509_VOMS_DIR X509_USER_CERT X509_USER_KEY X509_USER_PROXY

voms-proxy-init -rfc > "$v/init.log" 2>&1 || fail "voms-proxy-init -rfc: $(cat "$v/init.log")"
voms-proxy-info -all > "$v/info.log" 2>&1 || fail "voms-proxy-info -all: $(cat "$v/info.log")"
grep -q "RFC compliant proxy" "$v/info.log" || fail "voms-proxy-init made no RFC proxy: $(cat "$v/info.log")"
ok "voms-proxy-init made an RFC proxy from the user certificate"

voms-proxy-fake -rfc -cert "$X509_USER_CERT" -key "$X509_USER_KEY" \
    -hostcert "$v/hostcert.pem" -hostkey "$v/hostkey.pem" -voms testvo \
    -uri voms.example.org:15000 -fqan /testvo/analysis/Role=NULL/Capability=NULL \
    -out "$X509_USER_PROXY" > "$v/fake.log" 2>&1 || fail "voms-proxy-fake: $(cat "$v/fake.log")"
voms-proxy-info -all > "$v/info.log" 2>&1 || fail "voms-proxy-info -all: $(cat "$v/info.log")"
grep -q "^VO  *: testvo" "$v/info.log" || fail "voms-proxy-info shows no VO testvo: $(cat "$v/info.log")"
grep -q "^attribute : /testvo/analysis/Role=NULL/Capability=NULL" "$v/info.log" \
    || fail "voms-proxy-info shows no FQAN: $(cat "$v/info.log")"
voms-proxy-info -acexists testvo || fail "voms-proxy-info -acexists testvo exited $?"
if voms-proxy-info -acexists othervo; then fail "voms-proxy-info -acexists othervo succeeded"; fi
X509_USER_CERT=$X509_USER_PROXY voms-verify > "$v/verify.log" 2>&1 \
    || fail "voms-verify: $(cat "$v/verify.log")"
python -c "import os, ssl; ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(os.environ['X509_USER_PROXY'])" \
    || fail "python's ssl does not load the VOMS proxy as a client certificate"
voms-proxy-destroy || fail "voms-proxy-destroy exited $?"
[ ! -e "$X509_USER_PROXY" ] || fail "voms-proxy-destroy left $X509_USER_PROXY"
ok "voms-proxy-fake: a VOMS proxy for VO testvo and its FQAN, shown by voms-proxy-info," \
    "verified, loaded by python's ssl, removed by voms-proxy-destroy"

# DIRACOS2's pip check: a real package installs into the environment with pip, from an index
# on 127.0.0.1 (made here), then imports
pip --version > /dev/null || fail "pip --version"
python - "$scratch/index" <<'EOF' || fail "making the probe package"
import base64, hashlib, os, sys, zipfile

index = sys.argv[1]
name, version = "dxforge_pilot_probe", "1.0"
files = {f"{name}/__init__.py": "VALUE = 42\n",
         f"{name}-{version}.dist-info/METADATA":
             f"Metadata-Version: 2.1\nName: dxforge-pilot-probe\nVersion: {version}\n",
         f"{name}-{version}.dist-info/WHEEL":
             "Wheel-Version: 1.0\nGenerator: pilot-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
record = f"{name}-{version}.dist-info/RECORD"
lines = []
for path, text in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
    lines.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
files[record] = "\n".join([*lines, f"{record},,"]) + "\n"
project = os.path.join(index, "simple", "dxforge-pilot-probe")
os.makedirs(project)
wheel = f"{name}-{version}-py3-none-any.whl"
with zipfile.ZipFile(os.path.join(project, wheel), "w") as z:
    for path, text in files.items():
        z.writestr(path, text)
with open(os.path.join(project, "index.html"), "w") as f:
    f.write(f'<a href="{wheel}">{wheel}</a>\n')
EOF
python -u -m http.server --bind 127.0.0.1 0 --directory "$scratch/index" > "$scratch/http.log" 2>&1 &
server=$!
port=
for _ in $(seq 100); do
    port=$(sed -n 's/.* port \([0-9][0-9]*\).*/\1/p' "$scratch/http.log" | head -n 1)
    [ -z "$port" ] || break
    sleep 0.1
done
[ -n "$port" ] || fail "the local index did not start: $(cat "$scratch/http.log")"
pip install -q --no-cache-dir --disable-pip-version-check \
    --index-url "http://127.0.0.1:$port/simple/" dxforge-pilot-probe \
    || fail "pip install from the index on 127.0.0.1"
where=$(python -c "import dxforge_pilot_probe as m; assert m.VALUE == 42; print(m.__file__)") \
    || fail "importing the package pip installed"
case "$where" in
    "$prefix"/*) ok "pip installed a package from an index on 127.0.0.1 into the prefix" ;;
    *) fail "pip installed the package outside the prefix: $where" ;;
esac
echo "pilot: all checks passed"
