#!/usr/bin/env bash
# Counts the instructions a server process executes for a fixed workload
# (valgrind callgrind): exact and repeatable on a noisy machine, so a
# hot-path change is judged by its before/after count, not by timings.
#
#   loadtest/callgrind.sh chat-single   # the all-in-one binary, chatting
#   loadtest/callgrind.sh chat-relay    # relay 0 of RELAYS (3) (+ Redis), chatting
#   loadtest/callgrind.sh joins-single  # the all-in-one binary, joins
#   loadtest/callgrind.sh joins-relay   # relay 0 of RELAYS (3) (+ Redis), joins
#
# The workload: ROOMS (20) rooms of MEMBERS (10), every member sending RATE
# (0.9) messages per second for DURATION (20) s after every room is open
# (chat), or ROOMS rooms opened (joins). Counting starts once the rooms are
# open (chat) or before the first connection (joins) and stops at the end;
# the report gives instructions in total and per delivery or per join, and
# the heaviest functions (inclusive). BIN_DIR (target/release) picks the
# server binaries, so two builds can be compared in one sitting; the load
# generator is always target/release/arthas-loadgen. REDIS_MASTERS (0: one
# standalone redis-server; N: a Redis Cluster of N masters, sharded pub/sub,
# as in loadtest/bench.sh) is the relay modes' Redis. KEEP_RUN_DIR=1 keeps
# the callgrind output.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-chat-single}"
ROOMS="${ROOMS:-20}" MEMBERS="${MEMBERS:-10}" RATE="${RATE:-0.9}" DURATION="${DURATION:-20}"
BASE_PORT="${BASE_PORT:-18000}" BIN_DIR="${BIN_DIR:-target/release}" RELAYS="${RELAYS:-3}"
# shellcheck source=loadtest/lift-per-address-limits.sh
source loadtest/lift-per-address-limits.sh
# shellcheck source=loadtest/start-redis.sh
source loadtest/start-redis.sh
loadgen=target/release/arthas-loadgen
run_dir="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP_RUN_DIR:-}" ] && echo "run dir kept: $run_dir" >&2 || rm -rf "$run_dir"
}
trap cleanup EXIT

wait_listening() { # name
  for _ in $(seq 1 600); do
    grep -q "listening on" "$run_dir/$1.out" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$1 did not start:" >&2; cat "$run_dir/$1.err" >&2; exit 1
}

# Starts a server under callgrind, instrumented only from `-i on` to `-i off`.
start_counted() { # name binary args...
  local name="$1"; shift
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$run_dir/$name.cg" \
    "$@" >"$run_dir/$name.out" 2>"$run_dir/$name.err" &
  pids+=("$!")
  counted_pid="$!"
  wait_listening "$name"
}

start_plain() { # name binary args...
  local name="$1"; shift
  "$@" >"$run_dir/$name.out" 2>"$run_dir/$name.err" &
  pids+=("$!")
  wait_listening "$name"
}

start_cluster() {
  start_redis
  export ARTHAS_INTERNAL_SECRET="$(head -c 24 /dev/urandom | base64)"
  start_plain gateway "$BIN_DIR/gateway" --listen "127.0.0.1:$((BASE_PORT + 1))" \
    --internal-listen "127.0.0.1:$((BASE_PORT + 2))" --admin-listen "127.0.0.1:$((BASE_PORT + 3))"
  urls=()
  for i in $(seq 0 $((RELAYS - 1))); do
    local relay=(relay "$BIN_DIR/relay" --listen "127.0.0.1:$((BASE_PORT + 10 + i))"
      --admin-listen "127.0.0.1:$((BASE_PORT + 20 + i))"
      --gateway-url "http://127.0.0.1:$((BASE_PORT + 2))")
    if [ "$i" = 0 ]; then start_counted "relay$i" "${relay[@]:1}"; else start_plain "relay$i" "${relay[@]:1}"; fi
    urls+=("ws://127.0.0.1:$((BASE_PORT + 10 + i))/ws")
  done
  url="$(IFS=,; echo "${urls[*]}")"
}

case "$mode" in
  chat-single|joins-single)
    start_counted arthas "$BIN_DIR/arthas" --listen "127.0.0.1:$BASE_PORT"
    url="ws://127.0.0.1:$BASE_PORT/ws"
    ;;
  chat-relay|joins-relay) start_cluster ;;
  *) echo "usage: $0 chat-single|chat-relay|joins-single|joins-relay" >&2; exit 2 ;;
esac

case "$mode" in
  chat-*)
    "$loadgen" --rooms "$ROOMS" --members "$MEMBERS" --rate "$RATE" --warmup 0 \
      --duration "$DURATION" --url "$url" --connect-concurrency 4 \
      >"$run_dir/loadgen.json" 2>"$run_dir/loadgen.err" &
    gen="$!"
    until grep -q "joined in" "$run_dir/loadgen.err" 2>/dev/null; do sleep 0.1; done
    callgrind_control -i on "$counted_pid" >/dev/null
    wait "$gen"
    ;;
  joins-*)
    callgrind_control -i on "$counted_pid" >/dev/null
    "$loadgen" --mode joins --rooms "$ROOMS" --members "$MEMBERS" --url "$url" \
      --connect-concurrency 4 >"$run_dir/loadgen.json" 2>"$run_dir/loadgen.err"
    ;;
esac
callgrind_control -i off "$counted_pid" >/dev/null
callgrind_control -d "$counted_pid" >/dev/null
sleep 1
kill "$counted_pid" 2>/dev/null || true
wait "$counted_pid" 2>/dev/null || true
# The dump (part 1) holds the counted window; the part written at exit is
# empty (instrumentation was off by then).
out="$(ls "$run_dir"/*.cg.1)"
python3 - "$out" "$run_dir/loadgen.json" "$mode" "$MEMBERS" "$RELAYS" <<'PY'
import json, re, sys
out, report, mode, members, relays = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
text = open(out, errors="replace").read()
m = re.findall(r"^totals:\s*(\d+)", text, re.M)
total = int(m[-1]) if m else 0
r = json.load(open(report))
if mode.startswith("chat"):
    # Deliveries the counted process made: all of them on the all-in-one,
    # one in RELAYS on relay 0 (members are spread evenly).
    share = 1.0 if mode == "chat-single" else 1 / relays
    ops = r["received_deliveries"] * share
    unit = "delivery"
else:
    # Relay 0 of RELAYS holds its share of the sockets and of the bus
    # traffic: its count per share of the joins is the relays' per join.
    ops = r["joins"] if mode == "joins-single" else r["joins"] / relays
    unit = "join"
print(json.dumps({"mode": mode, "instructions": total, f"{unit}s_counted": round(ops),
                  f"instructions_per_{unit}": round(total / ops) if ops else 0}, indent=2))
PY
callgrind_annotate --inclusive=yes "$out" 2>/dev/null | sed -n '1,60p' | grep -E "^ *[0-9,]+ " | head -40 >&2 || true
