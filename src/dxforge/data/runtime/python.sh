#!/bin/sh
# CPython from Debian's python3.11 source package: the upstream tarball with Debian's security
# and bug-fix patches (the series from $PATCHES_FROM on), not its packaging patches (which move
# the install layout to dist-packages). Shared libpython, our OpenSSL, the system expat.
set -eu
PATCHES_FROM=shutdown-deadlock.diff
cd "$WORK"
tar -xf "$SRC"/python3.11_*.orig.tar.[gx]z
mkdir debian-dir
tar -C debian-dir -xf "$SRC"/python3.11_*.debian.tar.[gx]z
series=debian-dir/debian/patches/series
grep -qx "$PATCHES_FROM" "$series" || {
    echo "$series has no $PATCHES_FROM: review which of Debian's patches to apply" >&2
    exit 1
}
cd Python-*/
sed -n "/^$PATCHES_FROM\$/,\$p" "../$series" | grep -v '^#' | while read -r patch; do
    [ -z "$patch" ] || patch -p1 -s --no-backup-if-mismatch < "../debian-dir/debian/patches/$patch"
done
# Debian's expat fix includes a core header in pyexpat.c, which Debian builds as a core module
sed -i "s/Extension('pyexpat', sources=\['pyexpat.c'\])/Extension('pyexpat', sources=['pyexpat.c'], define_macros=[('Py_BUILD_CORE_MODULE', '1')])/" setup.py
grep -q "Extension('pyexpat', sources=\['pyexpat.c'\], define_macros" setup.py
# setup.py's import check of _ssl and _hashlib finds our libcrypto through this (RUNSHARED)
LD_LIBRARY_PATH=$PH/lib
export LD_LIBRARY_PATH
# shellcheck disable=SC2016  # $ORIGIN is for the dynamic loader
./configure --prefix="$PH" --enable-shared --without-static-libpython --disable-test-modules \
    --with-openssl="$PH" --with-system-expat --with-ensurepip=no --with-dbmliborder= \
    py_cv_module_nis=n/a py_cv_module__gdbm=n/a py_cv_module__dbm=n/a \
    py_cv_module__tkinter=n/a \
    LDFLAGS='-Wl,-rpath,\$$ORIGIN/../lib -Wl,--enable-new-dtags'
make -j"$JOBS"
make install
