#!/bin/sh
# libcurl from Debian's curl source package (the upstream tarball), with our OpenSSL and zlib
# only, and the CA bundle of the prefix.
set -eu
cd "$WORK"
tar -xf "$SRC"/curl_*.orig.tar.[gx]z
cd curl-*/
PKG_CONFIG_PATH=$PH/lib/pkgconfig
export PKG_CONFIG_PATH
# shellcheck disable=SC2016  # $ORIGIN is for the dynamic loader
./configure --prefix="$PH" --disable-static --with-openssl="$PH" --with-zlib \
    --without-libpsl --without-brotli --without-zstd --without-nghttp2 --without-nghttp3 \
    --without-ngtcp2 --without-libidn2 --without-librtmp --without-libssh2 --without-libssh \
    --without-gssapi --without-hyper --without-libgsasl --disable-ldap --disable-ldaps \
    --disable-manual --with-ca-bundle="$PH/ssl/cacert.pem" --without-ca-path \
    LDFLAGS='-Wl,-rpath,\$$ORIGIN/../lib -Wl,--enable-new-dtags'
make -j"$JOBS"
make install
