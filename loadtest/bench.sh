#!/usr/bin/env bash
# Reproduces docs/BENCHMARKS.md: starts the servers itself (release builds),
# drives them with the Rust load generator, and prints its JSON reports.
#
#   loadtest/bench.sh single   # all-in-one binary, memory engine
#   loadtest/bench.sh cluster  # redis-server + gateway + 3 relays
#   loadtest/bench.sh idle     # memory per idle joined connection
#
# Knobs (env): ROOMS (600), MEMBERS (10), RATE (0.9 msg/s per member),
# DURATION (20 s), PAYLOAD (256 bytes), BASE_PORT (17000); SKIP_BUILD=1 uses
# the release binaries already built; LOADGEN_ARGS adds generator flags, e.g.
# LOADGEN_ARGS="--mode churn" for join throughput (members leave and re-join
# on open connections).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-single}"
ROOMS="${ROOMS:-600}" MEMBERS="${MEMBERS:-10}" RATE="${RATE:-0.9}"
DURATION="${DURATION:-20}" PAYLOAD="${PAYLOAD:-256}" BASE_PORT="${BASE_PORT:-17000}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bins -p arthas -p arthas-loadgen
bin=target/release
run_dir="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$run_dir"
}
trap cleanup EXIT

# Starts a binary, waits for its "listening on" line, records its pid.
start() {
  local name="$1"; shift
  "$@" >"$run_dir/$name.out" 2>"$run_dir/$name.err" &
  pids+=("$!")
  for _ in $(seq 1 200); do
    grep -q "listening on" "$run_dir/$name.out" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "$name did not start:" >&2; cat "$run_dir/$name.err" >&2; exit 1
}

loadgen() {
  "$bin/arthas-loadgen" --rooms "$ROOMS" --members "$MEMBERS" --rate "$RATE" \
    --duration "$DURATION" --payload "$PAYLOAD" "$@" ${LOADGEN_ARGS:-}
}

case "$mode" in
  single|idle)
    start arthas "$bin/arthas" --listen "127.0.0.1:$BASE_PORT"
    [ "$mode" = idle ] && RATE=0 DURATION=5
    loadgen --url "ws://127.0.0.1:$BASE_PORT/ws" --pid "${pids[0]}"
    ;;
  cluster)
    redis_port=$((BASE_PORT + 9))
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$run_dir" --logfile "$run_dir/redis.log" --daemonize no &
    pids+=("$!")
    until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.05; done
    secret="$(head -c 24 /dev/urandom | base64)"
    export ARTHAS_INTERNAL_SECRET="$secret" ARTHAS_REDIS_URL="redis://127.0.0.1:$redis_port"
    start gateway "$bin/gateway" --listen "127.0.0.1:$((BASE_PORT + 1))" \
      --internal-listen "127.0.0.1:$((BASE_PORT + 2))"
    urls=()
    for i in 0 1 2; do
      start "relay$i" "$bin/relay" --listen "127.0.0.1:$((BASE_PORT + 3 + i))" \
        --admin-listen "127.0.0.1:$((BASE_PORT + 6 + i))" \
        --gateway-url "http://127.0.0.1:$((BASE_PORT + 2))"
      urls+=("ws://127.0.0.1:$((BASE_PORT + 3 + i))/ws")
    done
    server_pids="${pids[0]},${pids[2]},${pids[3]},${pids[4]}" # redis + relays
    loadgen --url "$(IFS=,; echo "${urls[*]}")" --pid "$server_pids"
    ;;
  *) echo "usage: $0 single|cluster|idle" >&2; exit 2 ;;
esac
