#!/usr/bin/env bash
# Self-signed certificates for the docker-compose lab (never for production: use a real CA,
# e.g. Let's Encrypt, there).
#
# Usage: deploy/lab/make-certs.sh [--force] [--out DIR] [NAME...]
#   NAME...  host names (or IPv4 addresses) browsers and backends use for the lab; default
#            $LAB_HOST, else "localhost". $LAB_PUBLIC_IP, when set, is added too.
#   --out    where to write (default: deploy/lab/certs next to this script).
#   --force  replace existing files (otherwise existing certificates are kept).
#
# Writes:
#   ca.crt, ca.key        the lab CA. Import ca.crt into a browser (or pass it to curl
#                         --cacert) to trust the lab without warnings.
#   server.crt, server.key nginx's certificate: the API (443) and the node's WSS (7443).
#   fs1.crt, fs1.key      FreeSWITCH's WSS certificate (name "fs1", only nginx connects to it
#                         and verifies it against ca.crt).
#   fs1-wss.pem           fs1.crt, ca.crt, fs1.key in one file: the format of FreeSWITCH's
#                         tls/wss.pem (certificate, chain, unencrypted key).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/certs"
force=0
names=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --force) force=1 ;;
        --out) out="${2:?--out needs a directory}"; shift ;;
        -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}"; exit 0 ;;
        -*) echo "make-certs.sh: unknown option $1" >&2; exit 2 ;;
        *) names+=("$1") ;;
    esac
    shift
done
if [[ ${#names[@]} -eq 0 ]]; then
    names=("${LAB_HOST:-localhost}")
fi
if [[ -n "${LAB_PUBLIC_IP:-}" ]]; then
    names+=("$LAB_PUBLIC_IP")
fi
names+=("localhost" "127.0.0.1")

command -v openssl >/dev/null || { echo "make-certs.sh: openssl not found" >&2; exit 2; }

if [[ -f "$out/server.crt" && -f "$out/fs1-wss.pem" && $force -eq 0 ]]; then
    echo "make-certs.sh: $out already has certificates (--force replaces them)"
    exit 0
fi
mkdir -p "$out"
umask 077
days=825 # the longest validity browsers accept for a server certificate

# subjectAltName list: DNS: for names, IP: for IPv4 addresses, each once.
san_list() {
    local seen=" " entry list=""
    for entry in "$@"; do
        [[ "$seen" == *" $entry "* ]] && continue
        seen+="$entry "
        if [[ "$entry" =~ ^[0-9]+(\.[0-9]+){3}$ ]]; then
            list+="${list:+,}IP:$entry"
        else
            list+="${list:+,}DNS:$entry"
        fi
    done
    printf '%s' "$list"
}

# The CA.
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" \
    -subj "/CN=Switchyard lab CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null

# leaf NAME CN SAN: a server certificate signed by the CA.
leaf() {
    local name="$1" cn="$2" san="$3" ext
    ext="$(mktemp)"
    printf '%s\n' \
        "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=$san" >"$ext"
    openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/CN=$cn" \
        -keyout "$out/$name.key" -out "$out/$name.csr" 2>/dev/null
    openssl x509 -req -sha256 -days "$days" -in "$out/$name.csr" \
        -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
        -extfile "$ext" -out "$out/$name.crt" 2>/dev/null
    rm -f "$ext" "$out/$name.csr"
}

leaf server "${names[0]}" "$(san_list "${names[@]}")"
leaf fs1 fs1 "DNS:fs1"
cat "$out/fs1.crt" "$out/ca.crt" "$out/fs1.key" >"$out/fs1-wss.pem"
rm -f "$out/ca.srl"
# The containers read these as root; the CA key never leaves this directory.
chmod 0644 "$out"/*.crt
chmod 0600 "$out"/*.key "$out/fs1-wss.pem"

echo "make-certs.sh: wrote $out (server names: $(san_list "${names[@]}"))"
openssl x509 -in "$out/server.crt" -noout -subject -enddate
