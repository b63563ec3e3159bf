#!/usr/bin/env bash
# Property-based API test: schemathesis (PyPI) generates requests from /openapi.json and checks
# that the service never answers 5xx and that every answer matches the document (status codes,
# content types, response schemas, headers). Runs the real binaries: one fsim node, the service
# on a temporary SQLite file. Node drain/removal is left out so that placement always has a node
# (a drained pool answers 503 no_node_available, by design).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v schemathesis >/dev/null || python3 -m pip install --quiet 'schemathesis>=4,<5'
cargo build --quiet -p switchyard -p fsim
bin="${CARGO_TARGET_DIR:-target}/debug"
work=$(mktemp -d)
esl_port=$((20000 + RANDOM % 10000))
http_port=$((esl_port + 1))
key="schemathesis-key-0123456789abcdef"
cat > "$work/switchyard.toml" <<TOML
[http]
listen = "127.0.0.1:$http_port"
[database]
url = "sqlite://$work/sy.db?mode=rwc"
[log]
filter = "warn"
[api]
keys = [{ id = "schemathesis", key = "$key", scopes = ["users:read", "users:write", "credentials:issue", "nodes:read", "nodes:write", "conferences:read", "conferences:write"] }]
[freeswitch]
password = "schemathesis-node-password"
[[nodes]]
id = "fs1"
esl_addr = "127.0.0.1:$esl_port"
esl_password = "ClueCon"
wss_url = "wss://fs1.example.com:7443"
TOML
"$bin/fsim" --nodes 1 --esl "127.0.0.1:$esl_port" --password ClueCon --heartbeat-interval 5 \
  >"$work/fsim.log" 2>&1 &
fsim_pid=$!
"$bin/switchyard" --config "$work/switchyard.toml" >"$work/switchyard.log" 2>&1 &
sy_pid=$!
trap 'kill $sy_pid $fsim_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
ready=""
for _ in $(seq 1 150); do
  if curl -sf "http://127.0.0.1:$http_port/readyz" | grep -q '"state":"up"'; then ready=1; break; fi
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "switchyard or its fsim node did not come up within 30 s; logs:" >&2
  cat "$work/switchyard.log" "$work/fsim.log" >&2
  exit 1
fi
schemathesis run "http://127.0.0.1:$http_port/openapi.json" \
  -H "Authorization: Bearer $key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-30}" \
  --exclude-path-regex '^/freeswitch|^/v1/nodes/' \
  --seed 1
