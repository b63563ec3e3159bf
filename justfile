# Switchyard developer tasks. `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]

db_url := env_var_or_default("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
redis_url := env_var_or_default("REDIS_URL", "redis://127.0.0.1:6379")

# Run the service on its embedded default (SQLite file, no other server).
run *ARGS:
    cargo run -p switchyard -- {{ARGS}}

# The whole test suite (PostgreSQL and Redis from DATABASE_URL / REDIS_URL, local defaults;
# installs the browser test's Chromium and npm packages when missing).
test *ARGS:
    DATABASE_URL={{db_url}} REDIS_URL={{redis_url}} bash tests/run {{ARGS}}

# Everything CI runs: fmt, clippy, tests.
ci:
    bash .ci/run

# schemathesis (PyPI) against /openapi.json on the real binaries; also run by the e2e tests.
schemathesis:
    bash tests/schemathesis/run.sh

fmt:
    cargo fmt --all

clippy:
    cargo clippy --workspace --all-targets -- -D warnings

# Benchmarks: ESL ingest against memchr, a raw socket reader and peer Rust libraries. The
# service's own benchmarks are separate recipes: bench-directory, bench-api and bench-events.
bench:
    cargo run --release -p esl-bench --bin esl-ingest

# mod_xml_curl directory (`sip_auth`) against nginx `return 200` over loopback, keep-alive and
# connection per request; ~2 min, table in target/bench-data/directory.md. Not part of `just
# bench` (different subject, needs nginx). Options: just bench-directory --users 100000 (--help).
bench-directory *ARGS:
    [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || { apt-get update && apt-get install -y nginx-light; }
    cargo build --release -p switchyard -p switchyard-bench
    target/release/directory-bench {{ARGS}}

# Conference API (issue 5) against nginx serving the same bytes, with fsim as the node pool:
# POST …/invitations (placement + store + notification) and GET …/members / /v1/members with
# 10,000 live members; ~2.5 min per store, table in target/bench-data/api.md. SQLite, plus
# PostgreSQL when DATABASE_URL is set (a fresh database, dropped after). Options: --help, --quick.
bench-api *ARGS:
    [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || { apt-get update && apt-get install -y nginx-light; }
    cargo build --release -p switchyard -p fsim -p switchyard-bench
    target/release/api-bench {{ARGS}}

# Browser event channel (`GET /v1/events`) against a tokio-tungstenite broadcast server in the
# same run: chat fan-out (frames/s, send→receive latency, CPU per frame) and RSS per open
# channel; SQLite, one fsim node; ~1 min, table in target/bench-data/events.md. Options: --help,
# --quick (< 30 s).
bench-events *ARGS:
    cargo build --release -p switchyard -p fsim -p switchyard-bench
    target/release/events-bench {{ARGS}}

# Peer libraries outside Rust on the same stream (greenswitch from PyPI, modesl from npm).
bench-peers:
    bash crates/esl-bench/peers/run.sh

# Fuzz an ESL parser (needs nightly + cargo-fuzz): just fuzz frame_decoder 600
fuzz TARGET="frame_decoder" SECONDS="600":
    cd crates/esl/fuzz && cargo +nightly fuzz run {{TARGET}} -- -max_total_time={{SECONDS}} -max_len=65536

# Fuzz the mod_xml_curl form → directory/dialplan answers (seeded from the recorded requests): just fuzz-xmlcurl 600
fuzz-xmlcurl SECONDS="600":
    cd crates/switchyard/fuzz && bash seed.sh && cargo +nightly fuzz run xml_curl_form -- -max_total_time={{SECONDS}} -max_len=8192 -dict=xml_curl_form.dict

# Demo: the service plus two simulated FreeSWITCH nodes; watch both nodes' HEARTBEATs in the log.
demo:
    bash examples/demo/run.sh

# Browser tests' prerequisites: Debian's Chromium (+ emoji font for the screenshots) and the npm
# packages of the demo page/SDK (jssip, bundled to examples/web/vendor/) and of the tests
# (playwright-core). Idempotent.
browser-setup:
    [ -x /usr/bin/chromium ] || { apt-get update && apt-get install -y chromium; }
    dpkg -s fonts-noto-color-emoji >/dev/null 2>&1 || apt-get install -y fonts-noto-color-emoji || true
    cd examples/web && npm ci
    cd tests/browser && npm ci

# The demo page and the JS SDK in headless Chromium against the real binaries (tests/browser.rs);
# screenshots and console logs in target/browser-artifacts/.
test-browser *ARGS: browser-setup
    cargo test -p switchyard-e2e --test browser {{ARGS}} -- --nocapture
