#!/usr/bin/env bash
# Seeds corpus/xml_curl_form with the bodies of the recorded mod_xml_curl requests
# (tests/fixtures/freeswitch/xml-curl-requests.txt: the line after each request's blank line)
# and two dialplan requests in the shape of crates/switchyard/tests/it/directory.rs.
# Idempotent: seeds are named by content, like libFuzzer's own corpus files.
set -euo pipefail
cd "$(dirname "$0")"
out=corpus/xml_curl_form
mkdir -p "$out"
fixtures=../../../tests/fixtures/freeswitch/xml-curl-requests.txt

seed() {
    local tmp
    tmp=$(mktemp)
    printf '%s' "$1" >"$tmp"
    mv "$tmp" "$out/$(sha1sum "$tmp" | cut -d' ' -f1)"
}

count=0
while IFS= read -r body; do
    seed "$body"
    count=$((count + 1))
done < <(awk '/^===== xml_curl request/ { inreq = 1; blank = 0; next }
              /^===== end of request/ { inreq = 0; next }
              inreq && blank { print; blank = 0; next }
              inreq && /^\r?$/ { blank = 1 }' "$fixtures")
if [ "$count" -ne 7 ]; then
    echo "expected 7 request bodies in $fixtures, found $count" >&2
    exit 1
fi

dialplan='hostname=vm&section=dialplan&tag_name=&key_name=&key_value=&Event-Name=REQUEST_PARAMS&Caller-Context=default&Caller-Destination-Number=conf*room-1&Hunt-Context=default&Hunt-Destination-Number=conf*room-1'
seed "$dialplan&variable_switchyard_user_id=alice"
seed "$dialplan"
