#!/usr/bin/env bash
# A bounded run of every fuzz target (what `.ci/run` does): seed the corpora, build every
# target once, then run each for FUZZ_SECONDS (default 5) on one core. Any crash, panic,
# timeout or out-of-memory fails it, naming the target; libFuzzer leaves the input in
# fuzz/artifacts/TARGET/ (see README.md for reproducing and minimising it).
#
# `--sanitizer none`: the targets are safe Rust over safe Rust, so what a run can find is a
# panic, an abort, a hang or runaway memory, and libFuzzer catches all of them without
# AddressSanitizer; leaving it out halves the build and doubles executions per second. The
# long run (README.md) keeps AddressSanitizer for the C decoders (liblzma, zstd).
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-5}
fuzz=(cargo +nightly fuzz)

if ! cargo fuzz --version >/dev/null 2>&1; then
  if [ "${CI:-}" = true ]; then
    cargo install cargo-fuzz --locked
  else
    echo "fuzz/smoke.sh: \`cargo fuzz\` is missing (cargo install cargo-fuzz --locked)" >&2
    exit 1
  fi
fi

bash seed.sh >/dev/null
start=$(date +%s)
"${fuzz[@]}" build --sanitizer none
echo "fuzz: built every target in $(($(date +%s) - start)) s"

failed=()
for target in $("${fuzz[@]}" list); do
  log=$(mktemp)
  # -rss_limit_mb: far above what any input should need (the builder's own caps are lower
  # in the targets); -timeout: one input taking seconds is a finding (quadratic work).
  if "${fuzz[@]}" run --sanitizer none "$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    printf 'fuzz: %-12s %8s executions in %s s, no finding\n' "$target" "${runs:-?}" "$seconds"
  else
    tail -40 "$log" >&2
    echo "fuzz: target \`$target\` FAILED (its input is in fuzz/artifacts/$target/)" >&2
    failed+=("$target")
  fi
  rm -f "$log"
done
echo "fuzz: $(($(date +%s) - start)) s in all"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in: ${failed[*]}" >&2
  exit 1
fi
