#!/bin/sh
# CPython from Debian's python3.X source package: the upstream tarball with Debian's security
# and bug-fix patches (the series from $PATCHES_FROM on, but for Debian's own $PATCHES_SKIP),
# not its packaging patches (which move the install layout to dist-packages). Shared libpython,
# our OpenSSL and SQLite, the build root's expat and mpdecimal.
set -eu
PATCHES_FROM=gchead-alignment.diff
PATCHES_SKIP="Add-Debian-specific-documentation-path-to-IDLE-menu.diff no-sphinx-8.2.diff"
cd "$WORK"
tar -xf "$SRC"/python3.*_*.orig.tar.[gx]z
mkdir debian-dir
tar -C debian-dir -xf "$SRC"/python3.*_*.debian.tar.[gx]z
series=debian-dir/debian/patches/series
grep -qx "$PATCHES_FROM" "$series" || {
    echo "$series has no $PATCHES_FROM: review which of Debian's patches to apply" >&2
    exit 1
}
cd Python-*/
sed -n "/^$PATCHES_FROM\$/,\$p" "../$series" | grep -v '^#' | while read -r patch; do
    case " $PATCHES_SKIP " in *" $patch "*) continue ;; esac
    [ -z "$patch" ] || patch -p1 -s --no-backup-if-mismatch < "../debian-dir/debian/patches/$patch"
done
# configure's checks and the build's import of _ssl and _sqlite3 find our libraries through these
LD_LIBRARY_PATH=$PH/lib
PKG_CONFIG_PATH=$PH/lib/pkgconfig
export LD_LIBRARY_PATH PKG_CONFIG_PATH
# shellcheck disable=SC2016  # $ORIGIN is for the dynamic loader
./configure --prefix="$PH" --enable-shared --without-static-libpython --disable-test-modules \
    --with-openssl="$PH" --with-system-expat --with-system-libmpdec --with-ensurepip=no \
    --with-dbmliborder= py_cv_module__gdbm=n/a py_cv_module__dbm=n/a \
    py_cv_module__tkinter=n/a \
    LDFLAGS='-Wl,-rpath,\$$ORIGIN/../lib -Wl,--enable-new-dtags'
make -j"$JOBS"
make install
