# Sourced by bench.sh and callgrind.sh. start_redis: one standalone
# redis-server on BASE_PORT+9, or with REDIS_MASTERS=N a Redis Cluster of N
# masters on BASE_PORT+50.. (one master: every slot added to it; more:
# `redis-cli --cluster create`), in run_dir; appends the servers to pids and
# sets redis_pids and redis_names (comma-separated) and ARTHAS_REDIS_URL /
# ARTHAS_REDIS_MODE for the servers started next.
start_redis() {
  local redis_port=$((BASE_PORT + 9)) masters="${REDIS_MASTERS:-0}"
  if [ "$masters" = 0 ]; then
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$run_dir" --logfile "$run_dir/redis.log" --daemonize no &
    pids+=("$!")
    redis_pids="$!" redis_names=redis
    until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.05; done
    export ARTHAS_REDIS_URL="redis://127.0.0.1:$redis_port" ARTHAS_REDIS_MODE=standalone
    return
  fi
  local nodes=() started=() names=() m port
  for m in $(seq 0 $((masters - 1))); do
    port=$((BASE_PORT + 50 + m))
    mkdir -p "$run_dir/redis$m"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
      --cluster-enabled yes --cluster-config-file "$run_dir/redis$m/nodes.conf" \
      --dir "$run_dir/redis$m" --logfile "$run_dir/redis$m.log" --daemonize no &
    pids+=("$!") started+=("$!") names+=("redis$m") nodes+=("127.0.0.1:$port")
    until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
  done
  if [ "$masters" = 1 ]; then
    redis-cli -p "$((BASE_PORT + 50))" CLUSTER ADDSLOTSRANGE 0 16383 >/dev/null
  else
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
  fi
  until redis-cli -p "$((BASE_PORT + 50))" CLUSTER INFO | grep -q "cluster_state:ok"; do sleep 0.1; done
  redis_pids="$(IFS=,; echo "${started[*]}")" redis_names="$(IFS=,; echo "${names[*]}")"
  export ARTHAS_REDIS_URL="$(printf 'redis://%s,' "${nodes[@]}" | sed 's/,$//')" ARTHAS_REDIS_MODE=cluster
}
