#!/usr/bin/env bash
# Runs every test of the workspace on this machine, installing what the tests need first.
#
#   tests/run-all.sh
#
# Idempotent: packages and the Python venv are installed only when missing. Needs root (or
# sudo) only the first time, for apt.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

step() { printf '\n==> %s\n' "$*"; }

# --- system packages -------------------------------------------------------------------
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# The outrigger build compiles its own OpenSSL and zlib (rdkafka's vendored features); tansu's
# build looks for zlib with pkg-config.
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
    step "installing ${missing[*]} (apt)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The distribution's redis service is not used by the tests (they start their own servers).
command -v redis-server >/dev/null

# The Kafka-protocol broker the Kafka tests start, with SQLite storage so that the broker
# outage test can restart it without losing data (about 25 minutes to build on 2 cores, once).
TANSU_ROOT="${TANSU_ROOT:-$HOME/.cache/outrigger/tansu}"
if [ ! -x "$TANSU_ROOT/bin/tansu" ]; then
    step "installing the tansu Kafka-protocol broker into $TANSU_ROOT (cargo install, once)"
    cargo install tansu --locked --features dynostore,libsql --root "$TANSU_ROOT"
fi
export TANSU_BIN="$TANSU_ROOT/bin/tansu"

# --- Rust ------------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo build (the outrigger binary the process tests start)"
cargo build --workspace --bins --locked

step "cargo test --workspace"
cargo test --workspace --locked

# --- the official Dapr Python SDK against the built binary -------------------------------
step "Dapr Python SDK end-to-end tests"
OUTRIGGER_BIN="$repo/target/debug/outrigger" tests/python/run.sh
