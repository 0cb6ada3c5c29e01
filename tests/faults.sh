#!/usr/bin/env bash
# Herald's fault suites (tests/tests/faults.rs) against a real nisshi broker, one at a time, then
# each suite's figures (the `FAULTS ...` lines). Arguments filter the tests, e.g.
#   tests/faults.sh broker_restart
# Fault timing is random; a run prints its seeds, and HERALD_FAULT_SEED=<seed> repeats one.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/herald-target}"
# shellcheck source=tests/nisshi.sh
. tests/nisshi.sh
cargo build --workspace --bins --locked
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test -p herald-tests --test faults --locked -- --nocapture --test-threads=1 "$@" 2>&1 | tee "$log" || status=$?
printf '\n==> figures\n'
grep -oE '(FAULTS .*|[a-z-]+: HERALD_FAULT_SEED=[0-9]+)' "$log" || true
exit "$status"
