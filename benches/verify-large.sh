#!/usr/bin/env bash
# Verification throughput benchmark for `candidate verify` (a report, not a test).
#
# Builds a signed candidate of the large input made by benches/large-input.sh (run that
# first, or this script runs it with RUNS=1), with `rootfs.tar` and `rootfs.tar.zst`, so the
# candidate holds about 1.7 GB of files plus a 1 GB layer in the store, then measures side by
# side, interleaved over RUNS rounds:
#   a) `openssl dgst -sha256` of the same files (outputs and the stored layer), one process;
#   b) `candidate verify --key ci.pub` of the candidate, which hashes the same bytes.
# Reports wall seconds, throughput (bytes hashed / wall) and the ratio.
# Environment: BENCH_DIR (default /tmp/candidate-bench), CANDIDATE, RUNS (3).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/candidate-bench}
RUNS=${RUNS:-3}
CANDIDATE=${CANDIDATE:-$REPO_ROOT/target/release/candidate}
[ -x "$CANDIDATE" ] || (cd "$REPO_ROOT" && cargo build --release --locked)
[ -f "$BENCH_DIR/recipes/large.toml" ] || RUNS=1 "$REPO_ROOT/benches/large-input.sh" >/dev/null

work=$BENCH_DIR/verify
rm -rf "$work" && mkdir -p "$work"
cd "$BENCH_DIR"
"$CANDIDATE" -q key generate --out "$work/ci" >/dev/null
"$CANDIDATE" -q --store "$work/store" lock recipes/large.toml --lockfile "$work/large.lock"
"$CANDIDATE" -q --store "$work/store" build recipes/large.toml --lockfile "$work/large.lock" \
  --out "$work/out" --format rootfs.tar --format rootfs.tar.zst --sign "$work/ci.key" >/dev/null
dir=$work/out/large_1_amd64
layer=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["diff_id"].split(":")[1])' "$dir/manifest.json")
files=("$dir"/* "$work/store/v1/blobs/sha256/$layer")
bytes=$(stat -L -c %s "${files[@]}" | paste -sd+ | bc) # hard links count twice: both tools read them twice
cat "${files[@]}" >/dev/null # warm the page cache for both

t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
declare -a ossl ours
for _ in $(seq "$RUNS"); do
  ossl+=("$(t openssl dgst -sha256 "${files[@]}")")
  ours+=("$(t "$CANDIDATE" -q --store "$work/store" verify "$dir" --key "$work/ci.pub")")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mo=$(median "${ossl[@]}"); mc=$(median "${ours[@]}")
printf '| hashing %s bytes | median wall s | GB/s |\n|---|---:|---:|\n' "$bytes"
printf '| openssl dgst -sha256 | %s | %.2f |\n' "$mo" "$(echo "$bytes / $mo / 1000000000" | bc -l)"
printf '| candidate verify | %s | %.2f |\n' "$mc" "$(echo "$bytes / $mc / 1000000000" | bc -l)"
printf '\ncandidate verify / openssl: %.2fx the time\n' "$(echo "$mc / $mo" | bc -l)"
