#!/usr/bin/env bash
# `just bench-peers`: the ESL ingest stream consumed by peers outside Rust (greenswitch from PyPI,
# modesl from npm) and by our client, against the same `esl-ingest --serve` replay server.
#
# Installs the peers under target/bench-peers (a Python venv and a node prefix; nothing outside
# target/), prints a table and writes target/bench-data/esl-peers.{jsonl,md}. `just bench` then
# adds these rows to its peer table.
#
# The replay server runs pinned to CPU 0, each consumer pinned to CPU 1 (when there are 2 CPUs).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
ENVDIR="$TARGET/bench-peers"
OUT="$TARGET/bench-data"
BIN="$TARGET/release/esl-ingest"
PER_CONSUMER_TIMEOUT="${ESL_BENCH_PEER_TIMEOUT:-300}"
mkdir -p "$ENVDIR" "$OUT"

echo "== installing peers under $ENVDIR" >&2
if [ ! -x "$ENVDIR/venv/bin/python" ]; then
    python3 -m venv "$ENVDIR/venv"
fi
"$ENVDIR/venv/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
mkdir -p "$ENVDIR/node"
cp "$HERE/package.json" "$ENVDIR/node/package.json"
(cd "$ENVDIR/node" && npm install --silent --no-audit --no-fund --no-package-lock >&2)

echo "== building esl-ingest (release)" >&2
(cd "$ROOT" && cargo build --release -p esl-bench --bin esl-ingest >&2)

PIN=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    PIN=(taskset -c 1)
fi

SERVE_LOG="$OUT/esl-peers-serve.log"
"$BIN" --serve 127.0.0.1:0 --reps 1 >"$SERVE_LOG" 2>"$OUT/esl-peers-serve.err" &
SERVER_PID=$!
cleanup() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
trap cleanup EXIT

# Wait for "LISTENING 127.0.0.1:PORT events=N conference=M bytes=B" (the corpus may be generated
# on the first run).
for _ in $(seq 1 600); do
    if grep -q '^LISTENING' "$SERVE_LOG" 2>/dev/null; then break; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        cat "$OUT/esl-peers-serve.err" >&2
        echo "replay server exited" >&2
        exit 1
    fi
    sleep 0.2
done
LINE="$(grep '^LISTENING' "$SERVE_LOG")"
ADDR="$(echo "$LINE" | awk '{print $2}')"
HOST="${ADDR%:*}"
PORT="${ADDR##*:}"
EVENTS="$(echo "$LINE" | sed -E 's/.*events=([0-9]+).*/\1/')"
echo "== replay server $ADDR, $EVENTS events per connection" >&2

RESULTS="$OUT/esl-peers.jsonl"
: >"$RESULTS"

run_consumer() {
    local kind="$1"
    shift
    echo "== $kind" >&2
    local line
    if line="$(timeout "$PER_CONSUMER_TIMEOUT" "$@")"; then
        echo "$line" | tail -n 1 | tee -a "$RESULTS" >&2
    else
        local rc=$?
        echo "{\"kind\":\"$kind\",\"note\":\"failed (exit $rc)\"}" | tee -a "$RESULTS" >&2
    fi
}

CPU_ARGS=()
if [ "${#PIN[@]}" -gt 0 ]; then CPU_ARGS=(--cpu 1); fi
run_consumer ours "$BIN" --child ours "$ADDR" --expect "$EVENTS" "${CPU_ARGS[@]}"
run_consumer greenswitch "${PIN[@]}" "$ENVDIR/venv/bin/python" "$HERE/greenswitch_consumer.py" "$HOST" "$PORT" "$EVENTS"
run_consumer modesl env NODE_PATH="$ENVDIR/node/node_modules" "${PIN[@]}" node "$HERE/modesl_consumer.js" "$HOST" "$PORT" "$EVENTS"

"$BIN" --peers-report "$RESULTS"
