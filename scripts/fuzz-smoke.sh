#!/usr/bin/env bash
# Bounded coverage-guided fuzzing of the parsers an attacker reaches (fuzz/fuzz_targets: token,
# path, headers, config, cookies). Each target runs FUZZ_SECONDS (default 20) from the committed seeds
# plus the corpus grown by earlier runs (kept in the cache); any crash or failed property fails
# the test command and leaves the input under fuzz/artifacts/.
#
# cargo-fuzz needs nightly compiler flags; no nightly toolchain is available here, so the stable
# compiler runs them with RUSTC_BOOTSTRAP=1. Built without a sanitizer (`-s none`): the code is
# safe Rust, and the properties are assertions in the targets. See README "Fuzzing" for a longer run.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
echo "== fuzz smoke run (${FUZZ_SECONDS:-20}s per target)"

cache=${PORTCULLIS_CACHE:-$HOME/.cache/portcullis}
export PATH="$cache/tools/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "fuzz-smoke.sh: installing cargo-fuzz into $cache/tools (once)"
  cargo install --locked cargo-fuzz --root "$cache/tools"
fi
export RUSTC_BOOTSTRAP=1
seconds=${FUZZ_SECONDS:-20}
targets=${FUZZ_TARGETS:-token path headers config cookies}
opts=(-s none --dev --target-dir "$cache/fuzz-target")

cargo fuzz build "${opts[@]}"
for t in $targets; do
  corpus=$cache/fuzz-corpus/$t
  mkdir -p "$corpus"
  echo "-- $t"
  log=$(mktemp)
  if ! cargo fuzz run "${opts[@]}" "$t" "$corpus" "seeds/$t" -- \
    -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -60 "$log" >&2
    echo "fuzz-smoke.sh: target $t failed (input saved under fuzz/artifacts/$t/)" >&2
    rm -f "$log"
    exit 1
  fi
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || true
  rm -f "$log"
done
