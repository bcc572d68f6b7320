#!/usr/bin/env bash
# Reproduces docs/BENCHMARKS.md: starts the servers itself (release builds),
# drives them with the Rust load generator, and prints its JSON reports.
#
#   loadtest/bench.sh single   # all-in-one binary, memory engine
#   loadtest/bench.sh cluster  # redis-server + gateway + 3 relays
#   loadtest/bench.sh idle     # memory per idle joined connection
#   loadtest/bench.sh connections  # CONNECTIONS (100000) idle joined
#                              # connections over RELAYS (6) relays + Redis,
#                              # from GENERATORS (6) generator processes
#
# Knobs (env): ROOMS (600), MEMBERS (10), RATE (0.9 msg/s per member),
# DURATION (20 s), PAYLOAD (256 bytes), BASE_PORT (17000); SKIP_BUILD=1 uses
# the release binaries already built; KEEP_RUN_DIR=1 keeps the processes'
# logs and the generators' reports; LOADGEN_ARGS adds generator flags, e.g.
# LOADGEN_ARGS="--mode churn" for join throughput (members leave and re-join
# on open connections).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-single}"
ROOMS="${ROOMS:-600}" MEMBERS="${MEMBERS:-10}" RATE="${RATE:-0.9}"
DURATION="${DURATION:-20}" PAYLOAD="${PAYLOAD:-256}" BASE_PORT="${BASE_PORT:-17000}"
# Every generated client comes from 127.0.0.1: lift the per-address limits
# (connections, handshakes, creations) and the per-connection room-change
# budget (churn mode), which exist to stop one abusive address, not a load test.
export ARTHAS_MAX_CONNECTIONS_PER_IP="${ARTHAS_MAX_CONNECTIONS_PER_IP:-1000000}"
export ARTHAS_HANDSHAKES_PER_IP_PER_SEC="${ARTHAS_HANDSHAKES_PER_IP_PER_SEC:-1000000}"
export ARTHAS_ROOM_CREATIONS_PER_MINUTE="${ARTHAS_ROOM_CREATIONS_PER_MINUTE:-1000000}"
export ARTHAS_ROOM_CHANGES_PER_MINUTE="${ARTHAS_ROOM_CHANGES_PER_MINUTE:-1000000}"
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bins -p arthas -p arthas-loadgen
bin=target/release
run_dir="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP_RUN_DIR:-}" ] && echo "run dir kept: $run_dir" >&2 || rm -rf "$run_dir"
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

# Redis and the gateway (cluster modes); sets redis_pid.
start_backend() {
  local redis_port=$((BASE_PORT + 9))
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$run_dir" --logfile "$run_dir/redis.log" --daemonize no &
  pids+=("$!")
  redis_pid="$!"
  until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.05; done
  export ARTHAS_INTERNAL_SECRET="$(head -c 24 /dev/urandom | base64)"
  export ARTHAS_REDIS_URL="redis://127.0.0.1:$redis_port"
  start gateway "$bin/gateway" --listen "127.0.0.1:$((BASE_PORT + 1))" \
    --internal-listen "127.0.0.1:$((BASE_PORT + 2))" \
    --admin-listen "127.0.0.1:$((BASE_PORT + 30))"
}

# start_relays N: relays on BASE_PORT+10.. (admin +40..); sets urls,
# relay_pids and admins (their /metrics).
start_relays() {
  urls=() relay_pids=() admins=()
  for i in $(seq 0 $(($1 - 1))); do
    start "relay$i" "$bin/relay" --listen "127.0.0.1:$((BASE_PORT + 10 + i))" \
      --admin-listen "127.0.0.1:$((BASE_PORT + 40 + i))" \
      --gateway-url "http://127.0.0.1:$((BASE_PORT + 2))"
    urls+=("ws://127.0.0.1:$((BASE_PORT + 10 + i))/ws")
    relay_pids+=("${pids[-1]}")
    admins+=("http://127.0.0.1:$((BASE_PORT + 40 + i))/metrics")
  done
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
    start_backend
    start_relays 3
    server_pids="$redis_pid,$(IFS=,; echo "${relay_pids[*]}")" # redis + relays
    loadgen --url "$(IFS=,; echo "${urls[*]}")" --pid "$server_pids"
    ;;
  connections)
    # Many idle joined connections on one machine. A process may hold at most
    # `ulimit -Hn` descriptors (20,000 here), so both the relays and the
    # generators are several processes; each generator spreads its rooms'
    # members over every relay.
    RELAYS="${RELAYS:-6}" GENERATORS="${GENERATORS:-6}" CONNECTIONS="${CONNECTIONS:-100000}"
    HOLD="${HOLD:-20}"
    start_backend
    start_relays "$RELAYS"
    rss() { # total VmRSS (KiB) of the given pids
      local t=0 p
      for p in "$@"; do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done
      echo "$t"
    }
    before_relays="$(rss "${relay_pids[@]}")" before_redis="$(rss "$redis_pid")"
    rooms=$((CONNECTIONS / GENERATORS / MEMBERS))
    started="$(date +%s.%N)"
    gen_pids=()
    for g in $(seq 0 $((GENERATORS - 1))); do
      "$bin/arthas-loadgen" --mode idle --rooms "$rooms" --members "$MEMBERS" \
        --warmup 0 --duration "$HOLD" --url "$(IFS=,; echo "${urls[*]}")" \
        >"$run_dir/gen$g.json" 2>"$run_dir/gen$g.err" &
      gen_pids+=("$!")
    done
    # Every generator says when all its members joined.
    for g in $(seq 0 $((GENERATORS - 1))); do
      until grep -q "joined in" "$run_dir/gen$g.err" 2>/dev/null; do
        kill -0 "${gen_pids[$g]}" 2>/dev/null || { cat "$run_dir/gen$g.err" >&2; exit 1; }
        sleep 0.2
      done
    done
    joined_at="$(date +%s.%N)"
    connected=0
    for url in "${admins[@]}"; do
      n="$(curl -fsS "$url" | awk '/^arthas_relay_connections / {print $2}')"
      connected=$((connected + ${n%.*}))
    done
    after_relays="$(rss "${relay_pids[@]}")" after_redis="$(rss "$redis_pid")"
    # Closes and error frames so far, by code, summed over the relays.
    for url in "${admins[@]}"; do curl -fsS "$url"; done |
      awk '/^arthas_relay_(closes|errors_out)_total\{/ {n[$1] += $2} END {for (k in n) print k, n[k]}' |
      sort >&2
    for p in "${gen_pids[@]}"; do wait "$p" || true; done
    errors="$(cat "$run_dir"/gen*.err | grep -c -i "fail" || true)"
    cat "$run_dir"/gen*.err | grep -i "fail" | sort | uniq -c | sort -rn | head -5 >&2 || true
    python3 - "$CONNECTIONS" "$connected" "$started" "$joined_at" "$before_relays" \
      "$after_relays" "$before_redis" "$after_redis" "$RELAYS" "$errors" <<'PY'
import json, sys
want, got, t0, t1, rb, ra, db, da, relays, errors = sys.argv[1:]
got, secs = int(got), float(t1) - float(t0)
print(json.dumps({
    "mode": "connections", "relays": int(relays), "connections_wanted": int(want),
    "connections_open": got, "join_failures": int(errors),
    "seconds_to_join_all": round(secs, 1), "joins_per_second": round(got / secs),
    "relays_rss_bytes_per_connection": round((int(ra) - int(rb)) * 1024 / max(got, 1)),
    "redis_rss_bytes_per_connection": round((int(da) - int(db)) * 1024 / max(got, 1)),
}, indent=2))
PY
    ;;
  *) echo "usage: $0 single|cluster|idle|connections" >&2; exit 2 ;;
esac
