#!/usr/bin/env bash
# Starts two simulated FreeSWITCH nodes (fsim, with SIP over WebSocket for browsers) and Switchyard
# pointed at them, in demo mode. Ctrl-C stops both.
#
# The demo page: open http://127.0.0.1:8080/demo/ in two browsers (or a normal and a private
# window), log in as two users, invite one from the other. fsim carries no media: calls connect
# (JsSIP REGISTER + INVITE) but stay silent. "Talking" is simulated on fsim's control port:
#   curl -s localhost:18031/nodes/fs1        # conferences, members and their channel_uuid
#   curl -s -X POST -d '{"talking":true}' localhost:18031/nodes/fs1/calls/<channel_uuid>/talking
#
# Watch the log for both nodes' "heartbeat" lines. To see a registration go through the directory:
#   curl -s -X PUT -H 'Authorization: Bearer demo-key-not-for-production-0001' \
#        -H 'Content-Type: application/json' -d '{"display_name":"Alice"}' localhost:8080/v1/users/alice
#   curl -s -X POST -H 'Authorization: Bearer demo-key-not-for-production-0001' \
#        localhost:8080/v1/users/alice/sip-credentials        # -> username, password
#   curl -s -X POST -d '{"user":"<username>","password":"<password>"}' localhost:18031/nodes/fs1/register
# The pool: node states and load, placing a conference, draining a node, metrics:
#   curl -s -H 'Authorization: Bearer demo-key-not-for-production-0001' localhost:8080/v1/nodes
#   curl -s -X PUT -H 'Authorization: Bearer demo-key-not-for-production-0001' localhost:8080/v1/conferences/room1
#   curl -s -X POST -H 'Authorization: Bearer demo-key-not-for-production-0001' localhost:8080/v1/nodes/fs1/drain
#   curl -s localhost:8080/metrics
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p target/demo
cargo build -p fsim -p switchyard
# The demo page's JsSIP, bundled into examples/web/vendor/ by `npm ci` (see examples/web/package.json).
if [ ! -f examples/web/vendor/jssip.js ]; then
  (cd examples/web && npm ci --no-audit --no-fund)
fi
"${CARGO_TARGET_DIR:-target}/debug/fsim" --nodes 2 --esl 127.0.0.1:18021 --password ClueCon --heartbeat-interval 5 \
  --sip-ws 127.0.0.1:15066 \
  --xml-curl http://127.0.0.1:8080/freeswitch/directory \
  --xml-curl-dialplan http://127.0.0.1:8080/freeswitch/dialplan \
  --xml-curl-credentials freeswitch:demo-xml-curl-password --control 127.0.0.1:18031 &
fsim_pid=$!
trap 'kill $fsim_pid 2>/dev/null || true; wait $fsim_pid 2>/dev/null || true' EXIT
echo "demo page: http://127.0.0.1:8080/demo/  (open it in two browsers)"
exec_status=0
"${CARGO_TARGET_DIR:-target}/debug/switchyard" --config examples/demo/switchyard.toml || exec_status=$?
exit $exec_status
