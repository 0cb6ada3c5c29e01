#!/usr/bin/env bash
# Runs every Herald test: formatting, lints, the packaging checks, unit tests, and the integration
# tests against a real Kafka-protocol broker. Installs what it needs when missing (the nisshi
# broker into ~/.cargo/bin, the packaging tools through tests/tools.sh); build outputs are cached
# in $CARGO_TARGET_DIR (default ~/.cache/herald-target).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/herald-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
NISSHI_VERSION="0.7.0-pre.2"
NISSHI_BIN="${NISSHI_BIN:-$HOME/.cargo/bin/nisshi}"
export NISSHI_BIN

step() { printf '\n==> %s\n' "$*"; }

if ! "$NISSHI_BIN" --version 2>/dev/null | grep -qF "$NISSHI_VERSION"; then
  step "installing the nisshi broker $NISSHI_VERSION (about 12 minutes on 2 cores, once)"
  CARGO_TARGET_DIR="$HOME/.cache/nisshi-build" cargo install nisshi --version "$NISSHI_VERSION" \
    --locked --no-default-features --features dynostore,libsql --root "$(dirname "$(dirname "$NISSHI_BIN")")"
fi
"$NISSHI_BIN" --version

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "packaging: chart, manifests, alert rules, Dockerfile, scripts (tests/packaging/check.sh)"
tests/packaging/check.sh

step "building the binaries the integration tests start"
cargo build --workspace --bins --locked

step "cargo test"
cargo test --workspace --locked -- "$@"
