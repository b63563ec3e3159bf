#!/usr/bin/env bash
# Checks the FreeSWITCH node configuration in this directory (or in DIR):
#   1. every .xml file is well-formed (xmllint --noout);
#   2. the lines FreeSWITCH's pre-processor acts on are safe (check_preprocess.py);
#   3. freeswitch.xml, assembled the way FreeSWITCH assembles it (includes pasted,
#      vars.xml values expanded), is well-formed, includes every file exactly once,
#      uses no undefined variable, and holds what Switchyard needs.
#
# Usage: ./check.sh [--strict] [DIR]
#   --strict  also fail while a value still says CHANGE-ME (run it on a node's copy,
#             e.g. ./check.sh --strict /etc/freeswitch, before starting FreeSWITCH).
# Needs xmllint (Debian: apt-get install libxml2-utils) and python3.
set -euo pipefail

strict=""
if [[ "${1:-}" == "--strict" ]]; then
    strict="--strict"
    shift
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${1:-$here}"

command -v xmllint >/dev/null || { echo "check.sh: xmllint not found (apt-get install libxml2-utils)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "check.sh: python3 not found" >&2; exit 2; }

status=0
count=0
while IFS= read -r -d '' file; do
    count=$((count + 1))
    if ! xmllint --noout "$file"; then
        status=1
    fi
done < <(find "$dir" -name '*.xml' -type f -print0 | sort -z)
echo "xmllint: $count files checked"

assembled="$(mktemp)"
trap 'rm -f "$assembled"' EXIT
if ! python3 "$here/check_preprocess.py" $strict "$dir" "$assembled"; then
    status=1
fi
if [[ -s "$assembled" ]] && ! xmllint --noout "$assembled"; then
    echo "assembled freeswitch.xml is not well-formed" >&2
    status=1
fi

if [[ $status -eq 0 ]]; then
    echo "OK"
fi
exit $status
