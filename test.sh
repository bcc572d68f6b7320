#!/usr/bin/env bash
# The project's test command (README): formatting, lints, every Rust test
# (real binaries, real WebSockets, real redis-server processes), and the web
# client's unit and browser tests (Debian's Chromium via playwright-core).
set -euo pipefail
cd "$(dirname "$0")"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
cargo test --workspace --all-features
# The conformance suite again on a cluster (a gateway and three relays per test, each room's
# members on different relays), over standalone Redis and over a 3-master Redis Cluster.
ARTHAS_TEST_TOPOLOGY=redis cargo test --all-features --test conformance -- --test-threads=4
ARTHAS_TEST_TOPOLOGY=redis-cluster cargo test --all-features --test conformance -- --test-threads=4
# Its smoke subset over TLS (wss:// and https:// with a CA the tests make; the relays call the
# gateway's internal API over mutual TLS).
ARTHAS_TEST_TLS=1 ARTHAS_TEST_TOPOLOGY=redis cargo test --all-features --test conformance -- \
  --test-threads=4 chat:: files:: passwords:: connection::

# Deployment: the Helm chart (rendered, linted, schema-validated, and its
# rendered relay/gateway run against a real redis-server), the Dockerfile,
# alert rules (promtool) and the dashboard.
bash deploy/test.sh

# The web client: the browser tests start the binaries built above; the
# conversation runs again on a cluster (Redis, a gateway, two relays), each
# browser on its own relay.
if [ ! -d web/node_modules/playwright-core ]; then
  npm ci --prefix web --no-audit --no-fund
fi
export ARTHAS_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/arthas"
npm test --prefix web
(cd web && ARTHAS_WEB_CLUSTER=1 node --test tests/browser/conversation.test.mjs)
