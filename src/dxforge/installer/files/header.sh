#!/bin/sh
# @@SELF_SHA256@@
ERROR=;if [ -f "$0" ];then for __c in 'openssl dgst -sha256 -r' sha256sum 'shasum -a 256';do case $(command -v "${__c%% *}";printf ''|$__c) in *e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855*) __h=$({ head -n 1 -- "$0";tail -c +78 -- "$0";}|$__c);[ "# ${__h%% *}" = "$(head -n 2 -- "$0"|tail -n 1)" ]&&ERROR=1;break;;esac;done;fi;(: "${ERROR:?cannot verify $0: it is damaged or truncated (download it again), or it was sourced (run it with sh), or no sha256sum, openssl or shasum is here}")||return 3 2>/dev/null||exit 3
unset ERROR; [ "$(head -n 3 -- "$0" | tail -n 1 | cksum)" = '@@CHECK_CKSUM@@' ] || { printf 'ERROR: %s is damaged (line 3): download it again\n' "$0" >&2; exit 3; }
# Lines 1-3: the whole file (without line 2) has the sha256 in line 2; line 4: line 3 is intact.
# DXFORGE-INSTALLER @@NAME@@ @@VERSION@@ (@@PLAT@@), a self-extracting installer made by dxforge.
# Run it with sh or bash (not `source`): sh @@FILENAME@@ -h
# NAME:    @@NAME@@
# VER:     @@VERSION@@
# PLAT:    @@PLAT@@
# PAYLOAD: @@PAYLOAD_SIZE@@ bytes, @@COMPRESSION@@, sha256 @@PAYLOAD_SHA256@@
# DECODER: @@DECODER_SIZE@@ bytes (gzip)
# Only checks that write nothing, the extraction into a private staging directory, and then
# .dxforge/install.py (run by the payload's python) for everything else: lock, install mode,
# the transaction and its rollback, the post-install script, the stamp.
set -eu
trap '' PIPE
# a closed stdin, stdout or stderr: /dev/null, so that nothing we open lands on it
[ -e /dev/fd/0 ] || exec 0</dev/null
[ -e /dev/fd/1 ] || exec 1>/dev/null
[ -e /dev/fd/2 ] || exec 2>/dev/null
LC_ALL=C
export LC_ALL
unset LD_LIBRARY_PATH LD_PRELOAD LD_AUDIT PYTHONPATH PYTHONHOME PYTHONSTARTUP \
    PYTHON_SYSCONFIGDATA_NAME CONDARC MAMBARC CDPATH || true

INSTALLER_NAME='@@NAME@@'
INSTALLER_VER='@@VERSION@@'
INSTALLER_PLAT='@@PLAT@@'
INSTALLER_COMPANY='@@COMPANY@@'
INSTALLER_TYPE=SH
HEADER_SIZE=@@HEADER_SIZE@@
PAYLOAD_SHA256=@@PAYLOAD_SHA256@@
COMPRESSION=@@COMPRESSION@@
DECODER_SIZE=@@DECODER_SIZE@@
MAX_PREFIX_LEN=@@MAX_PREFIX_LEN@@
INSTALLED_KB=@@INSTALLED_KB@@
PYTHON_REL=@@PYTHON_REL@@
POST_INSTALL_REL='@@POST_INSTALL_REL@@'
BATCH=@@BATCH@@
EXISTS_TEXT='@@EXISTS_TEXT@@'
export INSTALLER_NAME INSTALLER_VER INSTALLER_PLAT INSTALLER_TYPE
@@SCRIPT_ENV@@

say() { printf '%s\n' "$*" >&2 || true; }
die() { say "ERROR: $*"; exit 1; }

THIS_DIR=$(cd "$(dirname "$0")" && pwd)
INSTALLER_PATH="$THIS_DIR/$(basename "$0")"
export INSTALLER_PATH
set +u
PREFIX="@@DEFAULT_PREFIX@@"
set -u
FORCE=0
UPDATE=0
DOWNGRADE=0
USAGE="usage: $0 [-b] [-u] [-f] [-d] [-p PREFIX] [-h]

Installs $INSTALLER_NAME $INSTALLER_VER ($INSTALLER_PLAT)${INSTALLER_COMPANY:+ by $INSTALLER_COMPANY}, offline.

-b           batch mode: no questions (the default of this installer: @@BATCH_WORD@@)
-p PREFIX    install prefix (default: $PREFIX); letters, digits and /._+@%,=- only
-u           update an install of this installer in PREFIX: installs over it and keeps what
             is not its own (files it did not ship: pip-installed packages, configuration,
             site files); shipped files you edited are kept aside as FILE.dxforge-saved and
             named; a package you installed that the new version also ships stops the update
             before anything changes, naming it
-d           with -u: allow installing an older version than the installed one
-f           no error if PREFIX exists: on an install of this installer, as -u; in any other
             folder, install into it, changing nothing that is there (existing files in the way
             stop it before anything is written); a later -u touches only what it installed
-h           print this help and exit

The installer checks its own sha256 before it writes anything. An interrupted install or
update is rolled back by the next run. PREFIX keeps its mode, group and symlink; files get the
modes your umask allows."

while getopts "bdfhp:u" opt; do
    case "$opt" in
        b) BATCH=1 ;;
        d) DOWNGRADE=1 ;;
        f) FORCE=1 ;;
        u) UPDATE=1 ;;
        p) PREFIX="$OPTARG" ;;
        h) printf '%s\n' "$USAGE" || true; exit 2 ;;
        *) say "$USAGE"; exit 1 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || die "unexpected argument '$1'; see $0 -h"
INSTALLER_UNATTENDED=$BATCH
export INSTALLER_UNATTENDED FORCE

# ---- checks that write nothing -------------------------------------------------------------
# The platform, then the C library: the oldest glibc every file of this installer works with
# (constructor's check), then the kernel (constructor's __linux virtual spec).
system_platform="$(uname -s 2>/dev/null || true) $(uname -m 2>/dev/null || true)"
[ "$system_platform" = "Linux @@MACHINE@@" ] || die "this installer is for $INSTALLER_PLAT \
(Linux @@MACHINE@@), but this system is $system_platform"
older() {  # whether dotted version $1 is lower than $2
    a=$1
    b=$2
    while [ -n "$a$b" ]; do
        x=${a%%.*}
        y=${b%%.*}
        [ "${x:-0}" -lt "${y:-0}" ] && return 0
        [ "${x:-0}" -gt "${y:-0}" ] && return 1
        case "$a" in *.*) a=${a#*.} ;; *) a= ;; esac
        case "$b" in *.*) b=${b#*.} ;; *) b= ;; esac
    done
    return 1
}
need() {  # need WHAT MIN HAVE VARIABLE
    case "$3" in
        "" | *[!0-9.]* | .* | *.)
            die "Installer requires $1 >=$2, but the version of this system's $1 cannot be \
read ('$3'); set $4=<version> to give it" ;;
    esac
    if older "$3" "$2"; then die "Installer requires $1 >=$2, but system has $3."; fi
}
GLIBC_MIN='@@GLIBC_MIN@@'
if [ -n "$GLIBC_MIN" ]; then
    need GLIBC "$GLIBC_MIN" "${CONDA_OVERRIDE_GLIBC:-$(getconf GNU_LIBC_VERSION 2>/dev/null \
        | sed 's/.* //')}" CONDA_OVERRIDE_GLIBC
fi
LINUX_MIN='@@LINUX_MIN@@'
if [ -n "$LINUX_MIN" ]; then
    need Linux "$LINUX_MIN" "${CONDA_OVERRIDE_LINUX:-$(uname -r 2>/dev/null \
        | sed 's/[^0-9.].*//')}" CONDA_OVERRIDE_LINUX
fi
case "$COMPRESSION" in
    gzip | xz) DECOMP="$COMPRESSION -dc" ;;
    zstd) DECOMP= ;;  # the installer's own decoder, unpacked into the staging directory
    *) die "unknown payload compression '$COMPRESSION'" ;;
esac
for tool in tail head tar gzip mktemp df ${DECOMP%% *}; do
    command -v "$tool" >/dev/null 2>&1 || die "this installer needs the '$tool' command, \
which is not installed here; install it"
done

if [ "$BATCH" = 0 ] && [ -t 0 ]; then
    printf '\nWelcome to %s %s%s\n\n' "$INSTALLER_NAME" "$INSTALLER_VER" \
        "${INSTALLER_COMPANY:+ by $INSTALLER_COMPANY}"
@@LICENSE_PROMPT@@
    printf '%s will be installed into %s\n' "$INSTALLER_NAME" "$PREFIX"
    printf 'Press ENTER to confirm, CTRL-C to abort, or type another prefix:\n[%s] >>> ' "$PREFIX"
    read -r answer || exit 2
    [ -z "$answer" ] || PREFIX="$answer"
fi

case "$PREFIX" in
    "") die "empty prefix; pass -p PREFIX" ;;
    /*) ;;
    *) PREFIX="$PWD/$PREFIX" ;;
esac
case "$PREFIX" in
    *[!A-Za-z0-9/._+@%,=-]*)
        die "prefix '$PREFIX' contains a blank or a shell-special character; use only \
letters, digits and /._+@%,=-" ;;
esac
while [ "${PREFIX%/}" != "$PREFIX" ] && [ "$PREFIX" != / ]; do PREFIX="${PREFIX%/}"; done
base="${PREFIX##*/}"
parent="${PREFIX%/*}"
[ -n "$parent" ] || parent=/
case "$base" in
    "" | . | ..) die "prefix '$PREFIX' must end in a directory name" ;;
esac
if [ -d "$parent" ]; then
    parent=$(cd "$parent" && pwd)
    PREFIX="${parent%/}/$base"
fi
[ "${#PREFIX}" -le "$MAX_PREFIX_LEN" ] || die "prefix '$PREFIX' is ${#PREFIX} characters \
long; this installer allows at most $MAX_PREFIX_LEN: choose a shorter prefix"

# ---- extraction into a new private staging directory ---------------------------------------
# Next to the prefix when it does not exist yet (renamed into place at the end), else inside it
# (so that an update works when the parent is not ours, and through a symlinked prefix).
if [ -d "$PREFIX" ]; then
    where=$PREFIX
    STAGING_PATTERN="$PREFIX/.dxforge-tmp.$$."
else
    [ -e "$PREFIX" ] || [ -L "$PREFIX" ] && die "$PREFIX exists and is not a directory; \
remove it or choose another prefix with -p"
    mkdir -p "$parent" 2>/dev/null || die "cannot create $parent; check its permissions"
    where=$parent
    STAGING_PATTERN="$parent/.$base.dxforge-tmp.$$."
fi
if avail=$(df -Pk "$where" 2>/dev/null | awk 'NR == 2 { print $4 }') && [ -n "$avail" ]; then
    need=$((INSTALLED_KB + 51200))
    [ "$avail" -ge "$need" ] || die "not enough space in $where: $((avail / 1024)) MiB free, \
$((need / 1024)) MiB needed"
fi
STAGING=$(mktemp -d "${STAGING_PATTERN}XXXXXXXXXX" 2>/dev/null) || die "cannot write in \
$where; check its permissions or choose another prefix with -p"
# shellcheck disable=SC2317  # called by the traps
gone() { rm -rf "$STAGING" 2>/dev/null || true; }
trap gone EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

say "Unpacking $INSTALLER_NAME $INSTALLER_VER ..."
payload() { tail -c "+$((HEADER_SIZE + DECODER_SIZE + 1))" "$0"; }
if [ -z "$DECOMP" ]; then
    if ! tail -c "+$((HEADER_SIZE + 1))" "$0" | head -c "$DECODER_SIZE" | gzip -dc \
            > "$STAGING/.unzstd" 2>/dev/null || ! chmod 700 "$STAGING/.unzstd"; then
        gone
        die "cannot write the decoder into $STAGING (no space left in $where?)"
    fi
    DECOMP="$STAGING/.unzstd -dcq"
fi
# shellcheck disable=SC2086  # DECOMP is a command and its options
if ! errors=$( { payload | $DECOMP | (cd "$STAGING" && tar -xf -); } 2>&1 ); then
    kb=$(df -Pk "$where" 2>/dev/null | awk 'NR == 2 { print $4 }') || kb=
    inodes=$(df -Pi "$where" 2>/dev/null | awk 'NR == 2 { print $4 }') || inodes=
    gone
    case "$errors" in
        *"No space left"* | *"Disk quota"*)
            die "no space or inodes left in $where: ${kb:+$((kb / 1024)) MiB and }${inodes:-?} \
inodes free; this install needs $((INSTALLED_KB / 1024)) MiB" ;;
    esac
    die "unpacking the payload into $STAGING failed: $(printf '%s\n' "$errors" | head -n 3)"
fi
rm -f "$STAGING/.unzstd"
[ -x "$STAGING/$PYTHON_REL" ] || die "the payload has no $PYTHON_REL; the installer is broken"
trap - EXIT INT TERM HUP
# shellcheck disable=SC2016  # python code, literally
exec "$STAGING/$PYTHON_REL" -I -B -c 'import sys; sys.path.insert(0, sys.argv.pop(1)); import \
install; sys.exit(install.main(sys.argv[1:]))' "$STAGING/.dxforge" --staging "$STAGING" \
    --prefix "$PREFIX" --update "$UPDATE" --force "$FORCE" --downgrade "$DOWNGRADE" \
    --name "$INSTALLER_NAME" --version "$INSTALLER_VER" --payload "$PAYLOAD_SHA256" \
    --post-install "$POST_INSTALL_REL" --exists-text "$EXISTS_TEXT"
