#!/bin/sh
# DXFORGE-INSTALLER @@NAME@@ @@VERSION@@ (@@PLAT@@), a self-extracting installer made by dxforge.
# Run it with sh or bash (not `source`): sh @@FILENAME@@ -h
# NAME:    @@NAME@@
# VER:     @@VERSION@@
# PLAT:    @@PLAT@@
# PAYLOAD: @@PAYLOAD_SIZE@@ bytes, @@COMPRESSION@@, sha256 @@PAYLOAD_SHA256@@
# DECODER: @@DECODER_SIZE@@ bytes (gzip), sha256 @@DECODER_SHA256@@
__s=$(wc -c < "$0" 2>/dev/null) || __s=0; if [ "$((__s + 0))" -ne @@TOTAL_SIZE@@ ]; then printf 'ERROR: %s has %s bytes, not @@TOTAL_SIZE@@: it is truncated or damaged (download it again), or it was sourced (run it with sh)\n' "$0" "$((__s + 0))" >&2; exit 1; fi
set -eu
LC_ALL=C
export LC_ALL
unset LD_LIBRARY_PATH LD_PRELOAD LD_AUDIT PYTHONPATH PYTHONHOME PYTHONSTARTUP \
    PYTHON_SYSCONFIGDATA_NAME CONDARC MAMBARC CDPATH || true
umask 022

INSTALLER_NAME='@@NAME@@'
INSTALLER_VER='@@VERSION@@'
INSTALLER_PLAT='@@PLAT@@'
INSTALLER_COMPANY='@@COMPANY@@'
INSTALLER_TYPE=SH
HEADER_SIZE=@@HEADER_SIZE@@
PAYLOAD_SHA256=@@PAYLOAD_SHA256@@
COMPRESSION=@@COMPRESSION@@
DECODER_SIZE=@@DECODER_SIZE@@
DECODER_SHA256=@@DECODER_SHA256@@
DECODER_BIN_SHA256=@@DECODER_BIN_SHA256@@
LOCK_WAIT=${DXFORGE_LOCK_WAIT:-900}
MAX_PREFIX_LEN=@@MAX_PREFIX_LEN@@
INSTALLED_KB=@@INSTALLED_KB@@
PYTHON_REL=@@PYTHON_REL@@
POST_INSTALL_REL='@@POST_INSTALL_REL@@'
BATCH=@@BATCH@@
EXISTS_TEXT='@@EXISTS_TEXT@@'
export INSTALLER_NAME INSTALLER_VER INSTALLER_PLAT INSTALLER_TYPE
@@SCRIPT_ENV@@

say() { printf '%s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

case "$(head -n 2 "$0" 2>/dev/null || true)" in
    *DXFORGE-INSTALLER*) ;;
    *) say "ERROR: run this installer with sh or bash (sh @@FILENAME@@), do not source it."
       # shellcheck disable=SC2317  # exit when return is not allowed (not sourced)
       return 1 2>/dev/null || exit 1 ;;
esac
THIS_DIR=$(cd "$(dirname "$0")" && pwd)
THIS="$THIS_DIR/$(basename "$0")"
INSTALLER_PATH="$THIS"
export INSTALLER_PATH

set +u
PREFIX="@@DEFAULT_PREFIX@@"
set -u
FORCE=0
UPDATE=0
USAGE="usage: $0 [-b] [-u] [-f] [-p PREFIX] [-h]

Installs $INSTALLER_NAME $INSTALLER_VER ($INSTALLER_PLAT)${INSTALLER_COMPANY:+ by $INSTALLER_COMPANY}, offline.

-b           batch mode: no questions (the default of this installer: @@BATCH_WORD@@)
-p PREFIX    install prefix (default: $PREFIX); letters, digits and /._+@%,=- only
-u           update: replace an existing install of $INSTALLER_NAME in PREFIX
-f           no error if PREFIX exists: install into it, keeping files that are not ours
-h           print this help and exit"

while getopts "bfhp:u" opt; do
    case "$opt" in
        b) BATCH=1 ;;
        f) FORCE=1 ;;
        u) UPDATE=1 ;;
        p) PREFIX="$OPTARG" ;;
        h) printf '%s\n' "$USAGE"; exit 2 ;;
        *) printf '%s\n' "$USAGE" >&2; exit 1 ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || die "unexpected argument '$1'; see $0 -h"
INSTALLER_UNATTENDED=$BATCH
export INSTALLER_UNATTENDED FORCE

# ---- checks that write nothing -------------------------------------------------------------
# The platform, then the C library: the oldest glibc every file of this installer works with
# (constructor's check).
system_platform="$(uname -s 2>/dev/null || true) $(uname -m 2>/dev/null || true)"
[ "$system_platform" = "Linux @@MACHINE@@" ] || die "this installer is for $INSTALLER_PLAT \
(Linux @@MACHINE@@), but this system is $system_platform"
GLIBC_MIN='@@GLIBC_MIN@@'
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
if [ -n "$GLIBC_MIN" ]; then
    if [ -n "${CONDA_OVERRIDE_GLIBC:-}" ]; then
        system_glibc=$CONDA_OVERRIDE_GLIBC
    else
        system_glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{ print $NF }') \
            || system_glibc=
        if [ -z "$system_glibc" ]; then
            system_glibc=$(ldd --version 2>/dev/null | awk 'NR == 1 { print $NF }') \
                || system_glibc=
        fi
        # without getconf and ldd on PATH: the dynamic loader itself prints its release
        for loader in /lib64/ld-linux-x86-64.so.2 /lib/ld-linux-aarch64.so.1 \
                /lib64/ld64.so.2 /lib/ld-linux.so.2; do
            if [ -n "$system_glibc" ] || [ ! -x "$loader" ]; then continue; fi
            system_glibc=$("$loader" --version 2>/dev/null \
                | sed -n '1s/.* release version \([0-9][0-9.]*[0-9]\).*/\1/p') || system_glibc=
        done
    fi
    case "$system_glibc" in
        "" | *[!0-9.]* | .* | *.)
            die "Installer requires GLIBC >=$GLIBC_MIN, but the version of this system's C \
library cannot be read ('$system_glibc'); set CONDA_OVERRIDE_GLIBC=<version> to give it" ;;
    esac
    if older "$system_glibc" "$GLIBC_MIN"; then
        die "Installer requires GLIBC >=$GLIBC_MIN, but system has $system_glibc."
    fi
fi
# The kernel (constructor's __linux virtual spec), honouring CONDA_OVERRIDE_LINUX.
LINUX_MIN='@@LINUX_MIN@@'
if [ -n "$LINUX_MIN" ]; then
    system_linux=${CONDA_OVERRIDE_LINUX:-$(uname -r 2>/dev/null | sed 's/[^0-9.].*//')}
    case "$system_linux" in
        "" | *[!0-9.]* | .* | *.)
            die "Installer requires Linux >=$LINUX_MIN, but the kernel version of this system \
cannot be read ('$system_linux'); set CONDA_OVERRIDE_LINUX=<version> to give it" ;;
    esac
    if older "$system_linux" "$LINUX_MIN"; then
        die "Installer requires Linux >=$LINUX_MIN, but system has $system_linux."
    fi
fi
case "$COMPRESSION" in
    gzip | xz) DECOMP="$COMPRESSION -dc" ;;
    zstd) DECOMP= ;;  # the installer's own decoder, unpacked next to the prefix
    *) die "unknown payload compression '$COMPRESSION'" ;;
esac
for tool in tail head tar gzip ${DECOMP%% *}; do
    command -v "$tool" >/dev/null 2>&1 || die "this installer needs the '$tool' command, \
which is not installed here; install it"
done

# The decoder stage (a static zstd decoder, gzip'd), then the payload
decoder() { tail -c "+$((HEADER_SIZE + 1))" "$THIS" | head -c "$DECODER_SIZE"; }
payload() { tail -c "+$((HEADER_SIZE + DECODER_SIZE + 1))" "$THIS"; }
# openssl first: it uses the CPU's SHA extensions, two to three times coreutils' speed
if command -v openssl >/dev/null 2>&1 && [ "$(printf '' | openssl dgst -sha256 2>/dev/null \
        | sed 's/^.*= *//')" = e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 ]; then
    sha256() { openssl dgst -sha256 | sed 's/^.*= *//'; }
elif command -v sha256sum >/dev/null 2>&1; then
    sha256() { sha256sum | cut -d ' ' -f 1; }
elif command -v shasum >/dev/null 2>&1; then
    sha256() { shasum -a 256 | cut -d ' ' -f 1; }
else
    die "cannot verify the payload: none of sha256sum, shasum or openssl is installed"
fi
sum=$(payload | sha256)
[ "$sum" = "$PAYLOAD_SHA256" ] || die "$THIS is damaged: payload sha256 is $sum, expected \
$PAYLOAD_SHA256; download it again"
if [ "$DECODER_SIZE" -gt 0 ]; then
    sum=$(decoder | sha256)
    [ "$sum" = "$DECODER_SHA256" ] || die "$THIS is damaged: decoder sha256 is $sum, expected \
$DECODER_SHA256; download it again"
fi

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
export PREFIX

# What to do with PREFIX as it is now (decided again once the lock is ours)
decide_mode() {
    MODE=fresh
    if [ -e "$PREFIX" ] || [ -L "$PREFIX" ]; then
        [ -d "$PREFIX" ] || die "$PREFIX exists and is not a directory; remove it or choose \
another prefix with -p"
        if [ -z "$(ls -A "$PREFIX")" ]; then
            MODE=empty
        elif [ -d "$PREFIX/.dxforge" ] && [ ! -f "$PREFIX/.dxforge/installed" ]; then
            say "$PREFIX holds an unfinished install; it will be replaced"
            MODE=replace
        elif [ -d "$PREFIX/.dxforge" ] && { [ "$UPDATE" = 1 ] || [ "$FORCE" = 1 ]; }; then
            MODE=replace
        elif [ "$FORCE" = 1 ]; then
            MODE=merge
        elif [ "$UPDATE" = 1 ]; then
            die "-u updates an install made by a dxforge installer, and $PREFIX is not one (it \
has no .dxforge/); use -f to install into it anyway, or choose another prefix with -p"
        elif [ -n "$EXISTS_TEXT" ]; then
            die "$(printf '%s' "$EXISTS_TEXT" | sed "s#{CHOSEN_PATH}#$PREFIX#g")"
        else
            die "$PREFIX already exists and is not empty; use -u to update an existing install, \
-f to install into it anyway, or choose another prefix with -p"
        fi
    fi
}
decide_mode

# ---- from here on, files are written next to the prefix ------------------------------------
mkdir -p "$parent" 2>/dev/null || die "cannot create $parent; check its permissions"
parent=$(cd "$parent" && pwd)
PREFIX="${parent%/}/$base"
[ "${#PREFIX}" -le "$MAX_PREFIX_LEN" ] || die "prefix '$PREFIX' is ${#PREFIX} characters \
long; this installer allows at most $MAX_PREFIX_LEN: choose a shorter prefix"

if [ "$MODE" = empty ]; then
    if rmdir "$PREFIX" 2>/dev/null; then MODE=fresh; else MODE=merge; fi
fi
TMPBASE="$parent/.$base.dxforge-tmp"
if [ "$MODE" = merge ] && ! [ -w "$parent" ]; then
    TMPBASE="$PREFIX/.dxforge-tmp"
fi
[ -w "$parent" ] || [ "$MODE" = merge ] || die "cannot write in $parent; check its \
permissions or choose another prefix with -p"

if avail=$(df -Pk "$parent" 2>/dev/null | awk 'NR == 2 { print $4 }') && [ -n "$avail" ]; then
    need=$((INSTALLED_KB + 51200))
    [ "$avail" -ge "$need" ] || die "not enough space in $parent: $((avail / 1024)) MiB free, \
$((need / 1024)) MiB needed"
else
    say "warning: cannot tell the free space in $parent (no df); going on"
fi

# One install at a time per prefix: a lock next to it records its owner (host and pid). With
# the lock held, what earlier installs left next to the prefix is theirs, and they are gone.
LOCK="${TMPBASE%-tmp}-lock"
HOST=$(uname -n 2>/dev/null || echo unknown)
ME="$HOST $$"
waited=0
owner() {  # the holder writes itself just after taking the lock: give it a moment
    __i=0
    while [ ! -s "$1" ] && [ "$__i" -lt 20 ]; do
        sleep 0.1 2>/dev/null || sleep 1
        __i=$((__i + 1))
    done
    [ -s "$1" ] && cat "$1" 2>/dev/null || echo "an unknown installer"
}
if command -v flock >/dev/null 2>&1; then
    # the lock file is removed by its holder when done; a waiter that got the lock of a removed
    # file takes the new one
    while :; do
        exec 9>>"$LOCK" || die "cannot create the lock $LOCK; check the permissions of $parent"
        if ! flock -n 9; then
            [ "$waited" = 1 ] || say "waiting for the install into $PREFIX by $(owner "$LOCK") \
to finish (at most $LOCK_WAIT s; lock $LOCK)"
            waited=1
            flock -w "$LOCK_WAIT" 9 || die "$PREFIX is being installed by $(owner "$LOCK") \
(lock $LOCK); it did not finish within $LOCK_WAIT s: wait for it, or set DXFORGE_LOCK_WAIT"
        fi
        held=$(stat -Lc %i /dev/fd/9 2>/dev/null) || break  # cannot tell: take it as ours
        [ "$held" = "$(stat -c %i "$LOCK" 2>/dev/null)" ] && break
        exec 9>&-
    done
    printf '%s\n' "$ME" > "$LOCK"
    unlock() { rm -f "$LOCK"; }
else  # no flock: a lock directory, taken over when its owner's process is gone
    deadline=$(( $(date +%s) + LOCK_WAIT ))
    until mkdir "$LOCK.d" 2>/dev/null; do
        other=$(owner "$LOCK.d/owner")
        case "$other" in
            "$HOST "*)
                if [ ! -d "/proc/${other#"$HOST "}" ]; then
                    say "taking over the lock of $other, which is gone"
                    mv "$LOCK.d" "$LOCK.d.stale.$$" 2>/dev/null && rm -rf "$LOCK.d.stale.$$"
                    continue
                fi ;;
        esac
        [ "$waited" = 1 ] || say "waiting for the install into $PREFIX by $other to finish (at \
most $LOCK_WAIT s; lock $LOCK.d)"
        waited=1
        [ "$(date +%s)" -lt "$deadline" ] || die "$PREFIX is being installed by $other (lock \
$LOCK.d); it did not finish within $LOCK_WAIT s: wait for it, or set DXFORGE_LOCK_WAIT"
        sleep 1
    done
    printf '%s\n' "$ME" > "$LOCK.d/owner"
    unlock() { rm -rf "$LOCK.d"; }
fi
trap unlock EXIT
if [ "$waited" = 1 ] && [ -f "$PREFIX/.dxforge/installed" ] \
        && [ "$(cat "$PREFIX/.dxforge/installed")" = "$INSTALLER_NAME $INSTALLER_VER $PAYLOAD_SHA256" ]; then
    unlock
    say "$INSTALLER_NAME $INSTALLER_VER was installed in $PREFIX by the install we waited for"
    exit 0
fi
if [ "$waited" = 1 ]; then
    decide_mode
    if [ "$MODE" = empty ]; then
        if rmdir "$PREFIX" 2>/dev/null; then MODE=fresh; else MODE=merge; fi
    fi
fi
for stale in "$TMPBASE".* "$parent/.$base.dxforge-old".*; do
    if [ -e "$stale" ]; then
        say "removing $stale, left by an interrupted install"
        chmod -R u+w "$stale" 2>/dev/null || true
        rm -rf "$stale"
    fi
done

T="$TMPBASE.$$"
OLD="$parent/.$base.dxforge-old.$$"
DONE=0
# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
    if [ "$DONE" != 1 ]; then
        if [ -d "$OLD" ] && ! [ -e "$PREFIX" ]; then mv "$OLD" "$PREFIX" || true; fi
        rm -rf "$T" "$T.post" "$T.unzstd" 2>/dev/null || true
    fi
    unlock
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

mkdir "$T" || die "cannot create $T"
TMPDIR="$T.post"
TMP="$TMPDIR"
TEMP="$TMPDIR"
export TMPDIR TMP TEMP

say "Unpacking $INSTALLER_NAME $INSTALLER_VER ..."
if [ -z "$DECOMP" ]; then
    decoder | gzip -dc > "$T.unzstd" || die "cannot write the decoder $T.unzstd (disk full?)"
    sum=$(sha256 < "$T.unzstd")
    [ "$sum" = "$DECODER_BIN_SHA256" ] || die "the unpacked decoder $T.unzstd has sha256 $sum, \
expected $DECODER_BIN_SHA256; download the installer again"
    chmod 700 "$T.unzstd"
    DECOMP="$T.unzstd -dcq"
fi
# shellcheck disable=SC2086  # DECOMP is a command and its options
if ! payload | $DECOMP | (cd "$T" && tar -xf -); then
    if avail=$(df -Pk "$parent" 2>/dev/null | awk 'NR == 2 { print $4 }') \
            && [ -n "$avail" ] && [ "$avail" -lt 1024 ]; then
        die "unpacking the payload into $T failed: $parent is full"
    fi
    die "unpacking the payload into $T failed (see tar's messages above)"
fi
rm -f "$T.unzstd"
[ -x "$T/$PYTHON_REL" ] || die "the payload has no $PYTHON_REL; the installer is broken"
"$T/$PYTHON_REL" -I -B "$T/.dxforge/relocate.py" --root "$T" --prefix "$PREFIX" --install \
    || die "relocation to $PREFIX failed"

case "$MODE" in
    fresh) mv "$T" "$PREFIX" || die "cannot move $T to $PREFIX" ;;
    replace)
        mv "$PREFIX" "$OLD" || die "cannot move the old install $PREFIX aside"
        mv "$T" "$PREFIX" || die "cannot move $T to $PREFIX" ;;
    merge)
        (cd "$T" && tar -cf - .) | (cd "$PREFIX" && tar -xf -) \
            || die "cannot copy the files into $PREFIX"
        rm -rf "$T" ;;
esac

mkdir -p "$TMPDIR"
if [ -n "$POST_INSTALL_REL" ]; then
    script="$PREFIX/$POST_INSTALL_REL"
    first=$(head -n 1 "$script")
    case "$first" in
        "#!"*) interp="${first#\#!}" ;;
        *) interp=/bin/sh ;;
    esac
    # shellcheck disable=SC2086
    if ! $interp "$script"; then
        case "$MODE" in
            fresh | replace)
                mv "$PREFIX" "$T" || die "the post-install script failed; $PREFIX is unfinished"
                if [ -d "$OLD" ]; then
                    mv "$OLD" "$PREFIX" && say "restored the previous install in $PREFIX"
                fi
                die "the post-install script failed; nothing was installed" ;;
            *) die "the post-install script failed; $PREFIX holds an unfinished install" ;;
        esac
    fi
fi
rm -rf "$TMPDIR"
printf '%s %s %s\n' "$INSTALLER_NAME" "$INSTALLER_VER" "$PAYLOAD_SHA256" > "$PREFIX/.dxforge/installed"
DONE=1
if [ -d "$OLD" ]; then
    chmod -R u+w "$OLD" 2>/dev/null || true
    rm -rf "$OLD" || say "warning: could not remove the old install $OLD"
fi
say "$INSTALLER_NAME $INSTALLER_VER installed in $PREFIX"
exit 0
