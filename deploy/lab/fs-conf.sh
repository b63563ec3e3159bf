#!/bin/sh
# Prepares the lab FreeSWITCH node's configuration directory (the "fs-conf" service of
# deploy/docker-compose.yml; POSIX sh, runs in busybox).
#
#   1. copies freeswitch-conf/ (mounted read-only at $FS_CONF_SRC) verbatim into the node's
#      configuration volume ($FS_CONF_DST, the node's /etc/freeswitch), replacing what an
#      earlier run left there, except tls/ (FreeSWITCH writes dtls-srtp.pem into it);
#   2. sets the vars.xml values of this node: every environment variable FSVAR_<name>
#      replaces the value of the existing `set` line of <name> (the names are the ones of
#      freeswitch-conf/README.md, e.g. FSVAR_switchyard_esl_password); a name vars.xml does
#      not set is an error, so a renamed variable cannot be silently ignored;
#   3. installs the WSS certificate ($FS_CERTS_SRC/fs1-wss.pem from deploy/lab/make-certs.sh)
#      as tls/wss.pem; without it FreeSWITCH would generate a self-signed one that nginx's
#      upstream check (and any browser) rejects.
# It fails while a value still says CHANGE-ME, like freeswitch-conf/check.sh --strict.
#
# Why a copy instead of mounting freeswitch-conf/ as /etc/freeswitch directly: FreeSWITCH
# writes into its certificate directory, which is inside the configuration directory
# (/etc/freeswitch/tls), and the passwords must come from deploy/.env, not from a file in git.
set -eu

src="${FS_CONF_SRC:-/src/freeswitch-conf}"
dst="${FS_CONF_DST:-/etc/freeswitch}"
certs="${FS_CERTS_SRC:-/certs}"

die() {
    echo "fs-conf: $*" >&2
    exit 1
}

[ -f "$src/freeswitch.xml" ] || die "$src/freeswitch.xml not found (is freeswitch-conf/ mounted?)"
[ -f "$certs/fs1-wss.pem" ] || die "$certs/fs1-wss.pem not found: run deploy/lab/make-certs.sh first"
mkdir -p "$dst"

# 1. Fresh copy; tls/ survives (the node's DTLS certificate stays the same across restarts).
for entry in "$dst"/* "$dst"/.[!.]*; do
    [ -e "$entry" ] || continue
    [ "$entry" = "$dst/tls" ] && continue
    rm -rf "$entry"
done
cp -R "$src"/. "$dst"/

# 2. vars.xml values. Values are raw text for FreeSWITCH's pre-processor (see vars.xml): only
# letters, digits and . _ - ~ : / , are accepted, which also keeps them inert in sed.
vars="$dst/vars.xml"
names="$(env | sed -n 's/^FSVAR_\([A-Za-z0-9_]*\)=.*/\1/p' | sort)"
[ -n "$names" ] || die "no FSVAR_<name> variables set: nothing to configure"
for name in $names; do
    eval "value=\${FSVAR_$name}"
    case "$value" in
        *[!A-Za-z0-9._~:/,-]*) die "FSVAR_$name: only letters, digits and . _ - ~ : / , are allowed" ;;
    esac
    count="$(grep -c "cmd=\"set\" data=\"$name=" "$vars" || true)"
    [ "$count" = 1 ] || die "vars.xml has $count set lines for $name (expected exactly 1)"
    sed -i "s|cmd=\"set\" data=\"$name=[^\"]*\"|cmd=\"set\" data=\"$name=$value\"|" "$vars"
    if [ "$name" = "${name#*pass}" ]; then
        echo "fs-conf: $name=$value"
    else
        echo "fs-conf: $name=(set, ${#value} characters)"
    fi
done
if grep -n 'CHANGE-ME' "$vars" >&2; then
    die "vars.xml still has CHANGE-ME values (set them in deploy/.env)"
fi

# 3. WSS certificate: certificate chain then key, one file, readable by FreeSWITCH only.
mkdir -p "$dst/tls"
cp "$certs/fs1-wss.pem" "$dst/tls/wss.pem"
chmod 0600 "$dst/tls/wss.pem"
chmod 0640 "$vars"
echo "fs-conf: $dst ready"
