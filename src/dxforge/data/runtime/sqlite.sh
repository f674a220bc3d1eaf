#!/bin/sh
# The SQLite library from Debian's sqlite3 source package (the upstream source tree) with
# Debian's fixes from $PATCHES_FROM on; the library and its headers only, as conda-forge's
# libsqlite (the command-line shell is conda-forge's sqlite package, not built here).
set -eu
PATCHES_FROM=41-fix_a_bug_in_the_NOT_NULL-IS_NULL_optimization.patch
cd "$WORK"
tar -xf "$SRC"/sqlite3_*.orig.tar.[gx]z
mkdir debian-dir
tar -C debian-dir -xf "$SRC"/sqlite3_*.debian.tar.[gx]z
series=debian-dir/debian/patches/series
grep -qx "$PATCHES_FROM" "$series" || {
    echo "$series has no $PATCHES_FROM: review which of Debian's patches to apply" >&2
    exit 1
}
cd sqlite3-*/
sed -n "/^$PATCHES_FROM\$/,\$p" "../$series" | grep -v '^#' | while read -r patch; do
    [ -z "$patch" ] || patch -p1 -s --no-backup-if-mismatch < "../debian-dir/debian/patches/$patch"
done
# shellcheck disable=SC2016  # $ORIGIN is for the dynamic loader
./configure --prefix="$PH" --disable-static --disable-tcl --enable-threadsafe \
    --enable-load-extension --enable-fts3 --enable-fts4 --enable-fts5 --enable-rtree \
    CFLAGS="-O2 -DSQLITE_ENABLE_COLUMN_METADATA=1 -DSQLITE_ENABLE_UNLOCK_NOTIFY \
-DSQLITE_ENABLE_DBSTAT_VTAB=1 -DSQLITE_SECURE_DELETE -DSQLITE_MAX_VARIABLE_NUMBER=250000 \
-DSQLITE_MAX_EXPR_DEPTH=10000 -DSQLITE_ENABLE_MATH_FUNCTIONS" \
    LDFLAGS='-Wl,-rpath,\$$ORIGIN/../lib -Wl,--enable-new-dtags'
make -j"$JOBS" libsqlite3.la sqlite3.pc
make lib_install
mkdir -p "$PH/include" "$PH/lib/pkgconfig"
cp sqlite3.h sqlite3ext.h "$PH/include/"
cp sqlite3.pc "$PH/lib/pkgconfig/"
