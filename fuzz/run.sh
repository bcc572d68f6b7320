#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time and fails on a crash.
#
#   fuzz/run.sh                 # every target, FUZZ_SECONDS (60) each
#   FUZZ_SECONDS=600 fuzz/run.sh frame_reader
#
# The committed seeds (fuzz/corpus/<target>/) are read-only inputs; what
# the fuzzer finds goes to a scratch corpus (FUZZ_WORK_DIR, default a
# temporary directory), so a run leaves git clean. A crash leaves its input
# in fuzz/artifacts/<target>/ and fails the script: turn it into a
# regression test in the normal `cargo test` (see docs/OPERATIONS.md).
# Installs cargo-fuzz (crates.io) when it is missing; needs the nightly
# toolchain (for -Zsanitizer).
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-60}"
if ! cargo +nightly --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
work="${FUZZ_WORK_DIR:-$(mktemp -d)}"
cargo +nightly fuzz build --release

summary=()
for target in "${targets[@]}"; do
  mkdir -p "$work/$target"
  log="$work/$target.log"
  echo "fuzz: $target for ${seconds}s"
  if ! cargo +nightly fuzz run --release "$target" "$work/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz: $target FAILED (input in fuzz/artifacts/$target/)"
    exit 1
  fi
  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n1)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n1)"
  summary+=("$target: ${runs:-?} executions, ${cov:-cov: ?}, no crash")
done
printf 'fuzz: %s\n' "${summary[@]}"
