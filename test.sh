#!/usr/bin/env bash
# The project's test command (README): formatting, lints, every Rust test
# (real binaries, real WebSockets, real redis-server processes), and the web
# client's unit and browser tests (Debian's Chromium via playwright-core).
set -euo pipefail
cd "$(dirname "$0")"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
cargo test --workspace --all-features

# The web client: the browser tests start the all-in-one binary built above.
if [ ! -d web/node_modules/playwright-core ]; then
  npm ci --prefix web --no-audit --no-fund
fi
ARTHAS_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/arthas" npm test --prefix web
