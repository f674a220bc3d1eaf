#!/bin/sh
# The VOMS clients (voms-proxy-init/-info/-destroy/-fake/-list, voms-verify) and libvomsapi from
# upstream's release archive (a git tag archive: no configure script, hence autogen.sh with the
# build root's autoconf, automake and libtool; the parsers come pre-generated): no server (so
# no gSOAP), no docs, our OpenSSL, the build root's expat.
set -eu
cd "$WORK"
tar -xf "$SRC"/voms-*.tar.gz
cd voms-*/
# -version embeds __DATE__ and __TIME__: the release's own time, not the build's
SOURCE_DATE_EPOCH=$(stat -c %Y configure.ac)
export SOURCE_DATE_EPOCH
./autogen.sh
# configure finds OpenSSL with pkg-config, but no Makefile uses OPENSSL_CFLAGS: hence CPPFLAGS
PKG_CONFIG_PATH=$PH/lib/pkgconfig
export PKG_CONFIG_PATH
# shellcheck disable=SC2016  # $ORIGIN is for the dynamic loader
./configure --prefix="$PH" --disable-static --with-clients --without-server --without-config \
    --disable-docs --disable-parser-gen \
    CPPFLAGS="-I$PH/include" \
    LDFLAGS='-Wl,-rpath,\$$ORIGIN/../lib -Wl,--enable-new-dtags'
make -j"$JOBS"
make install
rmdir "$PH/share/man/man8" 2>/dev/null || true
