#!/bin/sh
# Post-install script of the DIRACOS installer (construct.yaml `post_install`).
# The installer runs it with PREFIX, INSTALLER_NAME, INSTALLER_VER and INSTALLER_PLAT set.
# It writes $PREFIX/.diracos_version, then $PREFIX/diracosrc last (atomically), so a
# diracosrc only exists in a finished install.
set -eu

: "${PREFIX:?PREFIX is not set; run this through the installer}"
: "${INSTALLER_NAME:=DIRACOS}"
: "${INSTALLER_VER:?INSTALLER_VER is not set; run this through the installer}"

# Sites may set these; they break the bundled Python, libraries and grid tools.
harmful="GFAL_CONFIG_DIR GFAL_PLUGIN_DIR GLEXEC_LOCATION GLITE_LOCATION_VAR GLITE_LOCATION"
harmful="$harmful GLOBUS_LOCATION JAVA_HOME LCG_LOCATION LD_LIBRARY_PATH LESSOPEN MANPATH"
harmful="$harmful PERL5LIB PYTHONPATH PYTHONHOME SRM_PATH"

rc="$PREFIX/diracosrc"
tmp="$PREFIX/.diracosrc.tmp.$$"
trap 'rm -f "$tmp"' EXIT

printf '%s %s\n' "$INSTALLER_NAME" "$INSTALLER_VER" > "$PREFIX/.diracos_version"

cat > "$tmp" <<EOF
# $INSTALLER_NAME $INSTALLER_VER environment: source this file from sh, bash, zsh or ksh.
# Safe under \`set -u\` and \`set -e\`; quiet under \`set -x\`.
case \$- in *x*) set +x; __diracos_x=1 ;; *) __diracos_x=0 ;; esac

export DIRACOS='$PREFIX'

# Some sites set variables which are actively harmful
unset $harmful
unset CONDA_SHLVL

case ":\${PATH:-}:" in
    *":\$DIRACOS/bin:"*) ;;
    *) PATH="\$DIRACOS/bin\${PATH:+:\$PATH}" ;;
esac
export PATH
export CONDA_PREFIX="\$DIRACOS"
# activation scripts of the packages (no glob: zsh fails on one that matches nothing)
if [ -d "\$DIRACOS/etc/conda/activate.d" ]; then
    for __diracos_f in \$(ls "\$DIRACOS/etc/conda/activate.d"); do
        case \$__diracos_f in *.sh) . "\$DIRACOS/etc/conda/activate.d/\$__diracos_f" ;; esac
    done
fi

# CA bundles a site names that do not exist here would hide the installer's own
for __diracos_v in SSL_CERT_FILE SSL_CERT_DIR CURL_CA_BUNDLE GIT_SSL_CAINFO REQUESTS_CA_BUNDLE; do
    eval "__diracos_p=\\\${\$__diracos_v:-}"
    if [ -n "\$__diracos_p" ] && [ ! -e "\$__diracos_p" ]; then unset "\$__diracos_v"; fi
done
unset __diracos_v __diracos_p

# Davix and XRootD options (as DIRACOS2)
export DAVIX_USE_LIBCURL=1
export DAVIX_DISABLE_REDIRECT_CACHING=1
export XRD_WRITERECOVERY=0

# X509: keep a non-empty site value, else the host's /etc/grid-security, else our own
__diracos_nonempty() {
    [ -n "\${1:-}" ] && [ -e "\$1" ] && [ -n "\$(ls -A "\$1" 2>/dev/null | head -n 1)" ]
}
if ! __diracos_nonempty "\${X509_CERT_DIR:-}"; then
    if __diracos_nonempty /etc/grid-security/certificates; then
        X509_CERT_DIR=/etc/grid-security/certificates
    else
        X509_CERT_DIR="\$DIRACOS/etc/grid-security/certificates"
    fi
    export X509_CERT_DIR
fi
if ! __diracos_nonempty "\${X509_VOMS_DIR:-}"; then
    if __diracos_nonempty /etc/grid-security/vomsdir; then
        X509_VOMS_DIR=/etc/grid-security/vomsdir
    else
        X509_VOMS_DIR="\$DIRACOS/etc/grid-security/vomsdir"
    fi
    export X509_VOMS_DIR
fi
if ! __diracos_nonempty "\${X509_VOMSES:-}"; then
    if __diracos_nonempty /etc/grid-security/vomses; then
        X509_VOMSES=/etc/grid-security/vomses
    else
        X509_VOMSES="\$DIRACOS/etc/grid-security/vomses"
    fi
    export X509_VOMSES
fi
unset -f __diracos_nonempty
unset __diracos_f
case \$__diracos_x in 1) unset __diracos_x; set -x ;; *) unset __diracos_x ;; esac
EOF
mv -f "$tmp" "$rc"
trap - EXIT

# the installer relays this; a closed or full output fails nothing
printf '\n%s %s has been installed in %s\n\n' "$INSTALLER_NAME" "$INSTALLER_VER" "$PREFIX" || true
printf ' * Activate it with:\n       source %s/diracosrc\n\n' "$PREFIX" || true
printf ' * Then check it with:\n       dirac --help\n\n' || true
