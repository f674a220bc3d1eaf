#!/bin/sh
# OpenSSL 3 from Debian's source package (the upstream tarball), shared, into $PH.
# Run by dxforge inside the Debian build root: PH, JOBS and SRC (this package's sources) are set.
set -eu
cd "$WORK"
tar -xf "$SRC"/openssl_*.orig.tar.[gx]z
cd openssl-*/
# shellcheck disable=SC2016  # $ORIGIN is for the dynamic loader
./Configure linux-x86_64 shared no-tests --prefix="$PH" --openssldir="$PH/ssl" --libdir=lib \
    '-Wl,-rpath,\$$ORIGIN/../lib' -Wl,--enable-new-dtags
make -j"$JOBS" build_sw
make install_sw install_ssldirs
