#!/bin/sh
# git from Debian's git source package (the upstream tarball): relocatable (RUNTIME_PREFIX: it
# finds its exec path and templates from its own location), https through our libcurl, no perl,
# python, tcl or gettext, symlinks instead of hard-linked copies of the builtins.
set -eu
cd "$WORK"
tar -xf "$SRC"/git_*.orig.tar.[gx]z
cd git-*/
cat > config.mak <<MAK
CC=$CC
prefix=$PH
sysconfdir=etc
RUNTIME_PREFIX=YesPlease
NO_PERL=YesPlease
NO_PYTHON=YesPlease
NO_TCLTK=YesPlease
NO_GETTEXT=YesPlease
NO_INSTALL_HARDLINKS=YesPlease
INSTALL_SYMLINKS=YesPlease
SKIP_DASHED_BUILT_INS=YesPlease
OPENSSLDIR=$PH
CURL_CONFIG=$PH/bin/curl-config
CC_LD_DYNPATH=-L
CFLAGS=-O2
LDFLAGS=-Wl,-rpath,\\\$\$ORIGIN/../../lib -Wl,--enable-new-dtags
MAK
make -j"$JOBS" all
make install
# local clones run these by name from the exec path
for p in git-upload-pack git-receive-pack git-upload-archive; do
    ln -sf ../../bin/git "$PH/libexec/git-core/$p"
done
