#!/usr/bin/env bash
# Herald's benchmarks (figures, not pass/fail): builds the release binaries and runs
# herald-bench against a nisshi broker it starts itself. Arguments go to herald-bench, e.g.
#   tests/bench.sh send --duration 30s
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/herald-target}"
cargo build --release --workspace --bins --locked
exec "$CARGO_TARGET_DIR/release/herald-bench" "$@"
