#!/usr/bin/env bash
# schemathesis against the gateway's two OpenAPI documents: the public API
# (/openapi.json on --listen) and the internal API (/openapi.json on
# --internal-listen, called with its secret). Every check: no 5xx, every
# response (status, headers, body) as the document says, invalid requests
# refused, valid ones accepted.
#
# Starts the debug `gateway` (memory store, cheap argon2, rate limits out of
# the way) on free ports; installs the pinned schemathesis into a venv under
# the target directory when it is missing. SCHEMATHESIS_EXAMPLES (100) sets
# the examples per operation; SCHEMATHESIS_SEED (fixed) the generator's seed,
# so a run repeats and CI does not fail on a draw: explore with other seeds
# (SCHEMATHESIS_SEED=$RANDOM SCHEMATHESIS_EXAMPLES=600) and fix what they find.
set -euo pipefail
cd "$(dirname "$0")/.."

version=4.32.5
target="${CARGO_TARGET_DIR:-$PWD/target}"
venv="$target/schemathesis-venv"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$version"
fi
cargo build --quiet --bin gateway

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
public=$(free_port) internal=$(free_port) admin=$(free_port)
secret="schemathesis-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
log="$(mktemp)"
ARTHAS_LOG=warn "$target/debug/gateway" --store memory \
  --listen "127.0.0.1:$public" --internal-listen "127.0.0.1:$internal" \
  --admin-listen "127.0.0.1:$admin" --internal-secret "$secret" \
  --argon2-memory-kib 64 --argon2-iterations 1 \
  --room-creations-per-minute 1000000 --hub-requests-per-minute 1000000 \
  --room-lookups-per-minute 1000000 --public-listings-per-hour 1000000 \
  --max-password-guesses-per-room 1000000 --max-password-guesses-per-ip 1000000 \
  --unjoined-room-ttl-secs 86400 \
  >"$log" 2>&1 &
gateway=$!
config="$(mktemp --suffix .toml)"
trap 'kill "$gateway" 2>/dev/null || true; rm -f "$log" "$config"' EXIT
for _ in $(seq 1 200); do
  grep -q "internal on" "$log" && break
  sleep 0.05
done

# One room made beforehand, with a password and an owner, that outlives the
# run: half the draws of a room-id path parameter name it, so the fuzzing
# phase reaches the password, ticket and owner checks of a real room (the
# other half are drawn from the schema, for the unknown-room answers).
room=$(python3 - "$internal" "$secret" <<'PY'
import hashlib, json, sys, urllib.request
port, secret = sys.argv[1], sys.argv[2]
sha = lambda s: hashlib.sha256(s.encode()).hexdigest()
body = json.dumps({"password": sha("schemathesis"), "ownerHash": sha("schemathesis-owner")})
request = urllib.request.Request(
    f"http://127.0.0.1:{port}/internal/v1/rooms", data=body.encode(), method="POST",
    headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(request))["room"]["id"])
PY
)
{
  cat tests/schemathesis.toml
  printf '\n[dictionaries.rooms]\nvalues = ["%s"]\n\n' "$room"
  printf '[parameters]\n"path.roomId" = { dictionary = "rooms", probability = 0.5 }\n'
} >"$config"

status=0
for port in "$public" "$internal"; do
  echo "schemathesis: http://127.0.0.1:$port/openapi.json"
  "$venv/bin/schemathesis" --config-file "$config" \
    run "http://127.0.0.1:$port/openapi.json" \
    -H "Authorization: Bearer $secret" --checks all \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-100}" --seed "${SCHEMATHESIS_SEED:-20261204}" \
    --no-color || status=1
done
if grep -q "panicked" "$log"; then
  cat "$log"
  status=1
fi
exit "$status"
