#!/usr/bin/env bash
# A local Arthas cluster on loopback: redis-server (standalone, or a 3-master
# Redis Cluster with --cluster), one gateway and three relays, sharing a random
# internal secret. Builds the release binaries first, waits until every process
# is ready, prints the addresses, and leaves the processes running in the
# background (pid files and logs in the run directory).
#
#   deploy/local-cluster.sh [start] [--cluster] [--no-build] [--bin-dir DIR] [--run-dir DIR]
#                           [--redis-port N] [--gateway-port N] [--internal-port N]
#                           [--gateway-admin-port N]
#                           [--relay-ports A,B,C] [--admin-ports A,B,C]
#   deploy/local-cluster.sh stop   [--run-dir DIR]
#   deploy/local-cluster.sh status [--run-dir DIR]
#
# Defaults: run dir target/local-cluster, Redis 6390 (cluster: 6390-6392, bus
# ports +10000), gateway 8081 (public: web client, /api/hub, /v1), 8082
# (internal) and 9089 (admin: /healthz, /readyz, /metrics), relays 8090-8092 (/ws) with admin ports 9090-9092 (/healthz,
# /readyz, /metrics). Every option is also an environment variable
# (LOCAL_CLUSTER_REDIS_PORT, ..., LOCAL_CLUSTER_RUN_DIR). Other ARTHAS_*
# variables reach the binaries as usual (e.g. ARTHAS_LOG=debug,
# ARTHAS_MAX_ROOM_MEMBERS=100). `cluster.env` in the run directory lists the
# addresses for scripts (load tests source it). --bin-dir takes the relay and
# gateway binaries from DIR (e.g. target/debug) instead of building release ones.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cmd=start
if [[ $# -gt 0 && $1 != -* ]]; then
  cmd=$1
  shift
fi

run_dir=${LOCAL_CLUSTER_RUN_DIR:-$root/target/local-cluster}
redis_port=${LOCAL_CLUSTER_REDIS_PORT:-6390}
gateway_port=${LOCAL_CLUSTER_GATEWAY_PORT:-8081}
internal_port=${LOCAL_CLUSTER_INTERNAL_PORT:-8082}
gateway_admin_port=${LOCAL_CLUSTER_GATEWAY_ADMIN_PORT:-9089}
relay_ports=${LOCAL_CLUSTER_RELAY_PORTS:-8090,8091,8092}
admin_ports=${LOCAL_CLUSTER_ADMIN_PORTS:-9090,9091,9092}
cluster=${LOCAL_CLUSTER_REDIS_CLUSTER:-0}
build=1
bin_dir=${LOCAL_CLUSTER_BIN_DIR:-}
ready_timeout=${LOCAL_CLUSTER_READY_TIMEOUT_SECS:-30}

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "local-cluster: $*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --cluster) cluster=1 ;;
    --no-build) build=0 ;;
    --bin-dir) bin_dir=$2; build=0; shift ;;
    --run-dir) run_dir=$2; shift ;;
    --redis-port) redis_port=$2; shift ;;
    --gateway-port) gateway_port=$2; shift ;;
    --internal-port) internal_port=$2; shift ;;
    --gateway-admin-port) gateway_admin_port=$2; shift ;;
    --relay-ports) relay_ports=$2; shift ;;
    --admin-ports) admin_ports=$2; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option $1" >&2; usage 2 ;;
  esac
  shift
done
IFS=, read -r -a relays <<<"$relay_ports"
IFS=, read -r -a admins <<<"$admin_ports"
[[ ${#relays[@]} -eq ${#admins[@]} ]] || die "--relay-ports and --admin-ports differ in length"

# Processes of a run, in stop order (relays drain first, Redis last).
names() {
  local f
  for f in "$run_dir"/relay*.pid "$run_dir"/gateway.pid "$run_dir"/redis*.pid; do
    [[ -e $f ]] && basename "$f" .pid
  done
  return 0
}

# The pid of a named process if it is running (and is what we started).
alive() {
  local pid
  pid=$(cat "$run_dir/$1.pid" 2>/dev/null) || return 1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
  # The pid may have been reused: it must still be the program we started.
  grep -qF "$(cat "$run_dir/$1.cmd")" "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

# SIGTERM to a group of processes at once, then wait for each (SIGKILL after 30 s).
stop_group() {
  local name pid deadline
  local -a pids=() labels=()
  for name in "$@"; do
    if pid=$(alive "$name"); then
      kill -TERM "$pid"
      pids+=("$pid")
      labels+=("$name")
    fi
    rm -f "$run_dir/$name.pid" "$run_dir/$name.cmd"
  done
  deadline=$((SECONDS + 30))
  for i in "${!pids[@]}"; do
    while kill -0 "${pids[$i]}" 2>/dev/null; do
      if ((SECONDS > deadline)); then
        echo "${labels[$i]} (${pids[$i]}) did not exit within 30 s of SIGTERM: SIGKILL" >&2
        kill -KILL "${pids[$i]}" 2>/dev/null || true
      fi
      sleep 0.05
    done
    echo "stopped ${labels[$i]} (${pids[$i]})"
  done
  ((${#pids[@]} > 0))
}

# Relays first (they drain their sockets), then the gateway, then Redis.
stop() {
  local -a relays_=() redis_=() gateway_=()
  local name any=0
  for name in $(names); do
    case $name in
      relay*) relays_+=("$name") ;;
      gateway) gateway_+=("$name") ;;
      *) redis_+=("$name") ;;
    esac
  done
  stop_group "${relays_[@]}" && any=1
  stop_group "${gateway_[@]}" && any=1
  stop_group "${redis_[@]}" && any=1
  rm -f "$run_dir/cluster.env" "$run_dir/internal-secret"
  ((any)) || echo "nothing running in $run_dir"
}

status() {
  local name pid any=1
  for name in $(names); do
    if pid=$(alive "$name"); then
      echo "$name: running ($pid)"
    else
      echo "$name: not running"
      any=0
    fi
  done
  [[ -e $run_dir/cluster.env ]] && cat "$run_dir/cluster.env"
  ((any))
}

case $cmd in
  stop) stop; exit 0 ;;
  status) status; exit $? ;;
  start) ;;
  *) echo "unknown command $cmd" >&2; usage 2 ;;
esac

command -v redis-server >/dev/null || die "redis-server is not on PATH"
command -v redis-cli >/dev/null || die "redis-cli is not on PATH"
command -v curl >/dev/null || die "curl is not on PATH"
mkdir -p "$run_dir"
run_dir=$(cd "$run_dir" && pwd)
for name in $(names); do
  alive "$name" >/dev/null && die "$name is already running (run dir $run_dir); stop it first: $0 stop"
done

redis_ports=("$redis_port")
((cluster)) && redis_ports=("$redis_port" $((redis_port + 1)) $((redis_port + 2)))
all_ports=("${redis_ports[@]}" "$gateway_port" "$internal_port" "$gateway_admin_port" "${relays[@]}" "${admins[@]}")
((cluster)) && for p in "${redis_ports[@]}"; do all_ports+=($((p + 10000))); done
for p in "${all_ports[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    die "port $p is in use (choose others with the port options)"
  fi
done

if ((build)); then
  echo "building: cargo build --release --bins"
  (cd "$root" && cargo build --release --bins)
fi
bin=${bin_dir:-${CARGO_TARGET_DIR:-$root/target}/release}
[[ -x $bin/relay && -x $bin/gateway ]] || die "no release binaries in $bin (build, or drop --no-build)"

# start NAME PROGRAM ARGS...: in the background, stdout and stderr to NAME.log.
start() {
  local name=$1
  shift
  nohup "$@" >"$run_dir/$name.log" 2>&1 </dev/null &
  echo $! >"$run_dir/$name.pid"
  basename "$1" >"$run_dir/$name.cmd"
}

# wait_for WHAT NAME COMMAND...: until COMMAND succeeds; fails if NAME exits or after the timeout.
wait_for() {
  local what=$1 name=$2
  shift 2
  local deadline=$((SECONDS + ready_timeout))
  until "$@" >/dev/null 2>&1; do
    if ! alive "$name" >/dev/null; then
      echo "local-cluster: $name exited before $what; its log ($run_dir/$name.log):" >&2
      tail -n 20 "$run_dir/$name.log" >&2
      stop >&2
      exit 1
    fi
    if ((SECONDS > deadline)); then
      echo "local-cluster: no $what within ${ready_timeout}s (log: $run_dir/$name.log)" >&2
      stop >&2
      exit 1
    fi
    sleep 0.05
  done
}

# Redis.
for i in "${!redis_ports[@]}"; do
  p=${redis_ports[$i]}
  dir="$run_dir/redis$i"
  rm -rf "$dir"
  mkdir -p "$dir"
  args=(--port "$p" --bind 127.0.0.1 --save "" --appendonly no --protected-mode no
    --daemonize no --dir "$dir")
  ((cluster)) && args+=(--cluster-enabled yes --cluster-config-file "$dir/nodes.conf"
    --cluster-node-timeout 5000)
  start "redis$i" "$(command -v redis-server)" "${args[@]}"
done
for i in "${!redis_ports[@]}"; do
  wait_for "PONG from redis$i" "redis$i" redis-cli -p "${redis_ports[$i]}" ping
done
if ((cluster)); then
  nodes=()
  for p in "${redis_ports[@]}"; do nodes+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes \
    >"$run_dir/cluster-create.log" 2>&1 || { cat "$run_dir/cluster-create.log" >&2; stop >&2; exit 1; }
  cluster_ok() {
    local p
    for p in "${redis_ports[@]}"; do
      redis-cli -p "$p" cluster info | grep -q '^cluster_state:ok' || return 1
    done
  }
  wait_for "cluster_state:ok" redis0 cluster_ok
  redis_url=$(printf 'redis://127.0.0.1:%s,' "${redis_ports[@]}")
  redis_url=${redis_url%,}
  redis_mode=cluster
else
  redis_url="redis://127.0.0.1:$redis_port"
  redis_mode=standalone
fi

# The gateway and the relays, started together.
secret=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
ticket_secret=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
export ARTHAS_INTERNAL_SECRET=$secret ARTHAS_LOG=${ARTHAS_LOG:-info}
export ARTHAS_REDIS_URL=$redis_url ARTHAS_REDIS_MODE=$redis_mode
# The page the gateway serves connects to the relays (no proxy routes /ws here).
relay_ws_urls=$(printf 'ws://127.0.0.1:%s/ws,' "${relays[@]}")
ARTHAS_TICKET_SECRET=$ticket_secret start gateway "$bin/gateway" --store redis \
  --listen "127.0.0.1:$gateway_port" --internal-listen "127.0.0.1:$internal_port" \
  --admin-listen "127.0.0.1:$gateway_admin_port" --relay-urls "${relay_ws_urls%,}"
for i in "${!relays[@]}"; do
  start "relay$i" "$bin/relay" --listen "127.0.0.1:${relays[$i]}" \
    --admin-listen "127.0.0.1:${admins[$i]}" --node-id "local-relay$i" \
    --gateway-url "http://127.0.0.1:$internal_port" \
    --drain-window-ms "${ARTHAS_DRAIN_WINDOW_MS:-1000}"
done
wait_for "gateway /readyz" gateway curl -fsS --max-time 1 "http://127.0.0.1:$gateway_port/readyz"
for i in "${!relays[@]}"; do
  wait_for "relay$i /readyz" "relay$i" curl -fsS --max-time 1 "http://127.0.0.1:${admins[$i]}/readyz"
done

ws_urls=$(printf 'ws://127.0.0.1:%s/ws,' "${relays[@]}")
admin_urls=$(printf 'http://127.0.0.1:%s,' "${admins[@]}")
cat >"$run_dir/cluster.env" <<EOF
# Written by deploy/local-cluster.sh; source it in scripts.
ARTHAS_CLUSTER_REDIS_URL=$redis_url
ARTHAS_CLUSTER_REDIS_MODE=$redis_mode
ARTHAS_CLUSTER_GATEWAY_URL=http://127.0.0.1:$gateway_port
ARTHAS_CLUSTER_GATEWAY_INTERNAL_URL=http://127.0.0.1:$internal_port
ARTHAS_CLUSTER_GATEWAY_ADMIN_URL=http://127.0.0.1:$gateway_admin_port
ARTHAS_CLUSTER_RELAY_WS_URLS=${ws_urls%,}
ARTHAS_CLUSTER_RELAY_ADMIN_URLS=${admin_urls%,}
ARTHAS_CLUSTER_PIDS=$(for n in $(names); do printf '%s,' "$(cat "$run_dir/$n.pid")"; done | sed 's/,$//')
EOF
umask 077
printf '%s\n' "$secret" >"$run_dir/internal-secret"

echo "Arthas local cluster is up (Redis $redis_mode):"
echo "  web client  http://127.0.0.1:$gateway_port/  (open this: the page connects to the relays below)"
echo "  redis       $redis_url"
echo "  gateway     http://127.0.0.1:$gateway_port  (/api/hub, /v1/rooms; internal http://127.0.0.1:$internal_port; admin http://127.0.0.1:$gateway_admin_port)"
for i in "${!relays[@]}"; do
  echo "  relay$i      ws://127.0.0.1:${relays[$i]}/ws  (its own page: http://127.0.0.1:${relays[$i]}/; admin http://127.0.0.1:${admins[$i]})"
done
echo "  logs, pids, cluster.env, internal-secret: $run_dir"
echo "  stop with: $0 stop${run_dir:+ --run-dir $run_dir}"
