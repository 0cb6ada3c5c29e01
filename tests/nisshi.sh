#!/usr/bin/env bash
# Sourced by the test scripts: makes sure the nisshi broker the integration tests start is
# installed (into ~/.cargo/bin, once) and exports NISSHI_BIN.
NISSHI_VERSION="0.7.0-pre.2"
NISSHI_BIN="${NISSHI_BIN:-$HOME/.cargo/bin/nisshi}"
export NISSHI_BIN

if ! "$NISSHI_BIN" --version 2>/dev/null | grep -qF "$NISSHI_VERSION"; then
  printf '\n==> installing the nisshi broker %s (about 12 minutes on 2 cores, once)\n' "$NISSHI_VERSION"
  CARGO_TARGET_DIR="$HOME/.cache/nisshi-build" cargo install nisshi --version "$NISSHI_VERSION" \
    --locked --no-default-features --features dynostore,libsql --root "$(dirname "$(dirname "$NISSHI_BIN")")"
fi
"$NISSHI_BIN" --version
