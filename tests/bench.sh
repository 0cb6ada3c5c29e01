#!/usr/bin/env bash
# Herald's benchmarks (figures, not pass/fail): builds the release binaries and runs
# herald-bench against a nisshi broker it starts itself. Arguments go to herald-bench, e.g.
#   tests/bench.sh send --duration 30s
# `tests/bench.sh operator [--pipelines N]` runs the reconcile benchmark instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/herald-target}"
# shellcheck source=tests/nisshi.sh
. tests/nisshi.sh
cargo build --release --workspace --bins --locked
if [ "${1:-}" = operator ]; then
  shift
  exec "$CARGO_TARGET_DIR/release/herald-bench-operator" "$@"
fi
exec "$CARGO_TARGET_DIR/release/herald-bench" "$@"
