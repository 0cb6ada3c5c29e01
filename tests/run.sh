#!/usr/bin/env bash
# Runs every Herald test: formatting, lints, the packaging checks, unit tests, and the integration
# tests against a real Kafka-protocol broker. Installs what it needs when missing (the nisshi
# broker into ~/.cargo/bin, the packaging tools through tests/tools.sh); build outputs are cached
# in $CARGO_TARGET_DIR (default ~/.cache/herald-target).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/herald-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

# shellcheck source=tests/nisshi.sh
. tests/nisshi.sh

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
