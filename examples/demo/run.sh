#!/usr/bin/env bash
# Starts two simulated FreeSWITCH nodes (fsim) and Switchyard pointed at them. Ctrl-C stops both.
# Watch the log for both nodes' "heartbeat" lines. The directory URL fsim is given is served once
# the mod_xml_curl endpoint lands (issue 3); until then a REGISTER through the fsim control port
# (127.0.0.1:18031) fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p target/demo
cargo build -p fsim -p switchyard
./target/debug/fsim --nodes 2 --esl 127.0.0.1:18021 --password ClueCon --heartbeat-interval 5 \
  --xml-curl http://127.0.0.1:8080/freeswitch/directory --control 127.0.0.1:18031 &
fsim_pid=$!
trap 'kill $fsim_pid 2>/dev/null || true; wait $fsim_pid 2>/dev/null || true' EXIT
exec_status=0
./target/debug/switchyard --config examples/demo/switchyard.toml || exec_status=$?
exit $exec_status
