# Switchyard developer tasks. `just --list` shows them all.

set shell := ["bash", "-euo", "pipefail", "-c"]

db_url := env_var_or_default("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
redis_url := env_var_or_default("REDIS_URL", "redis://127.0.0.1:6379")

# Run the service on its embedded default (SQLite file, no other server).
run *ARGS:
    cargo run -p switchyard -- {{ARGS}}

# The whole test suite (PostgreSQL and Redis from DATABASE_URL / REDIS_URL, local defaults).
test *ARGS:
    DATABASE_URL={{db_url}} REDIS_URL={{redis_url}} cargo test --workspace {{ARGS}}

# Everything CI runs: fmt, clippy, tests.
ci:
    bash .ci/run

fmt:
    cargo fmt --all

clippy:
    cargo clippy --workspace --all-targets -- -D warnings

# Benchmarks: ESL ingest against memchr, a raw socket reader and peer Rust libraries.
bench:
    cargo run --release -p esl-bench --bin esl-ingest

# Peer libraries outside Rust on the same stream (greenswitch from PyPI, modesl from npm).
bench-peers:
    bash crates/esl-bench/peers/run.sh

# Fuzz an ESL parser (needs nightly + cargo-fuzz): just fuzz frame_decoder 600
fuzz TARGET="frame_decoder" SECONDS="600":
    cd crates/esl/fuzz && cargo +nightly fuzz run {{TARGET}} -- -max_total_time={{SECONDS}} -max_len=65536

# Demo: the service plus two simulated FreeSWITCH nodes; watch both nodes' HEARTBEATs in the log.
demo:
    bash examples/demo/run.sh
