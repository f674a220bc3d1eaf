#!/bin/sh
# A static zstd decoder from Debian's libzstd source package (the upstream tarball), for the
# installer's first stage: it runs on systems that have no zstd command.
set -eu
cd "$WORK"
tar -xf "$SRC"/libzstd_*.orig.tar.[gx]z
cd zstd-*/
make -C programs -j"$JOBS" zstd-decompress CC="$CC" MOREFLAGS="-O3" LDFLAGS="-static" \
    HAVE_THREAD=0 HAVE_ZLIB=0 HAVE_LZMA=0 HAVE_LZ4=0 ZSTD_LEGACY_SUPPORT=0
mkdir -p "$PH/libexec/dxforge"
cp programs/zstd-decompress "$PH/libexec/dxforge/zstd-decompress"
