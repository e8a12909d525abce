#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 30) on stable Rust.
#
#   fuzz/run-all.sh [SECONDS]
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, -Cpasses=sancov-module
# needs -Z options) to rustc; RUSTC_BOOTSTRAP=1 lets the stable compiler accept them.
# Seeds come from fuzz/corpus/<target> (read only); what the fuzzer learns goes to
# fuzz/work/<target> (ignored by git). Crash inputs land in fuzz/artifacts/<target>/.
# Exits non-zero if any target crashed (or failed to build).
set -euo pipefail

secs="${1:-30}"
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."

export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Pinned: a new cargo-fuzz release must not change what CI runs.
CARGO_FUZZ_VERSION=0.13.2
if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != "$CARGO_FUZZ_VERSION" ]; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

targets=$(cargo fuzz list)
echo "== building: $(echo $targets)"
cargo fuzz build

failed=()
for t in $targets; do
  echo "== $t: ${secs}s"
  mkdir -p "$here/work/$t"
  log="$here/work/$t.log"
  # Newly found inputs go to the first corpus dir only.
  set +e
  cargo fuzz run "$t" "$here/work/$t" "$here/corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|peak_rss_mb)' "$log" || true
  if [ "$rc" -ne 0 ]; then
    tail -n 40 "$log"
    echo "!! $t failed (exit $rc); full log: fuzz/work/$t.log, inputs: fuzz/artifacts/$t/"
    failed+=("$t")
  fi
done

if [ "${#failed[@]}" -ne 0 ]; then
  echo "== crashes in: ${failed[*]}"
  exit 1
fi
echo "== all targets ran ${secs}s without a crash"
