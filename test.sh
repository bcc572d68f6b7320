#!/usr/bin/env bash
# The project's test command (README). It first prepares the machine: what
# the tests need and is missing gets installed (Debian packages, the web
# client's npm packages); when everything is there this takes a moment and
# changes nothing. Then: formatting, lints, every Rust test (real binaries,
# real WebSockets, real redis-server processes), the deployment files, and
# the web client's unit and browser tests (Debian's Chromium via
# playwright-core).
set -euo pipefail
cd "$(dirname "$0")"

# ------------------------------------------------------------ prepare the machine

# Runs a command as root (sudo when not root already).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages: redis-server and redis-cli (tests start their own
# redis-server processes), Chromium and its driver (the browser tests).
apt_missing=()
command -v redis-server >/dev/null 2>&1 || apt_missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || apt_missing+=(redis-tools)
# tests/netns.rs drops packets with nftables inside its namespaces (as root; skipped otherwise).
if [ "$(id -u)" = 0 ]; then command -v nft >/dev/null 2>&1 || apt_missing+=(nftables); fi
[ -x /usr/bin/chromium ] || apt_missing+=(chromium chromium-driver)
# tests/hostile.rs reads the relay's listen queue with ss.
command -v ss >/dev/null 2>&1 || apt_missing+=(iproute2)
if [ "${#apt_missing[@]}" -gt 0 ]; then
  echo "test.sh: installing ${apt_missing[*]} from Debian" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi

# The web client's npm packages, exactly as web/package-lock.json pins them:
# installed when web/node_modules is missing or was installed from another
# lock file (the stamp holds the lock file's hash at the last install).
if ! command -v npm >/dev/null 2>&1; then
  echo "test.sh: needs Node.js >= 20 with npm on PATH (the web client's tests)" >&2
  exit 1
fi
npm_stamp=web/node_modules/.installed-from-lock.sha256
npm_lock_sum="$(sha256sum web/package-lock.json | cut -d' ' -f1)"
if [ "$(cat "$npm_stamp" 2>/dev/null)" != "$npm_lock_sum" ]; then
  echo "test.sh: installing the web client's npm packages (npm ci)" >&2
  npm ci --prefix web --no-audit --no-fund
  echo "$npm_lock_sum" >"$npm_stamp"
fi

# ------------------------------------------------------------ docs

# Every relative Markdown link and heading resolves; every cited path exists.
python3 tests/doc_links.py

# ------------------------------------------------------------ Rust

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
# The code's own docs, private items included (what the next engineer reads): every intra-doc
# link resolves.
RUSTDOCFLAGS="-D warnings -A rustdoc::private_intra_doc_links" \
  cargo doc --workspace --no-deps --all-features --document-private-items
cargo test --workspace --all-features
# The conformance suite again on a cluster (a gateway and three relays per test, each room's
# members on different relays), over standalone Redis and over a 3-master Redis Cluster.
ARTHAS_TEST_TOPOLOGY=redis cargo test --all-features --test conformance -- --test-threads=4
ARTHAS_TEST_TOPOLOGY=redis-cluster cargo test --all-features --test conformance -- --test-threads=4
# Its smoke subset over TLS (wss:// and https:// with a CA the tests make; the relays call the
# gateway's internal API over mutual TLS).
ARTHAS_TEST_TLS=1 ARTHAS_TEST_TOPOLOGY=redis cargo test --all-features --test conformance -- \
  --test-threads=4 chat:: files:: passwords:: connection::

# ------------------------------------------------------------ hostile input

# schemathesis against the gateway's public and internal OpenAPI documents
# (no 5xx, every response as documented), and every cargo-fuzz target for
# FUZZ_SECONDS (60) each, failing on a crash.
bash tests/schemathesis.sh
bash fuzz/run.sh

# ------------------------------------------------------------ deployment

# The Helm chart (rendered, linted, schema-validated, and its rendered
# relay/gateway run against a real redis-server), the Dockerfile, alert
# rules (promtool) and the dashboard.
bash deploy/test.sh

# ------------------------------------------------------------ web client

# Unit tests, then the browser tests against the binaries built above; the
# conversation runs again on a cluster (Redis, a gateway, two relays), each
# browser on its own relay.
export ARTHAS_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/arthas"
npm test --prefix web
(cd web && ARTHAS_WEB_CLUSTER=1 node --test tests/browser/conversation.test.mjs)

# ------------------------------------------------------------ load test

# The k6 scenario's own MessagePack codec (byte vectors).
node --test loadtest/k6/
