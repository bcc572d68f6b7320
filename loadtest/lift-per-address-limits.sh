# Sourced by bench.sh and callgrind.sh. Every generated client comes from
# 127.0.0.1: lift the per-address limits (connections, handshakes,
# creations) and the per-connection room-change budget (churn mode), which
# exist to stop one abusive address, not a load test. A value already in
# the environment wins.
export ARTHAS_MAX_CONNECTIONS_PER_IP="${ARTHAS_MAX_CONNECTIONS_PER_IP:-1000000}"
export ARTHAS_HANDSHAKES_PER_IP_PER_SEC="${ARTHAS_HANDSHAKES_PER_IP_PER_SEC:-1000000}"
export ARTHAS_ROOM_CREATIONS_PER_MINUTE="${ARTHAS_ROOM_CREATIONS_PER_MINUTE:-1000000}"
export ARTHAS_ROOM_CHANGES_PER_MINUTE="${ARTHAS_ROOM_CHANGES_PER_MINUTE:-1000000}"
