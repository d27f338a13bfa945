#!/usr/bin/env bash
# `candidate store verify` on a ~1 GB store, side by side in one run with `sha256sum` of the
# same blobs (one process, and one per core in parallel, as we hash). Page cache warm for all.
# The store is made of SIZE_MB of incompressible blobs (64 MiB, 16 MiB, 1 MiB and 64 KiB ones,
# like inputs, layers, outputs and packages), each named by its sha256, as a store holds them.
# Usage: benches/store-verify.sh [SIZE_MB] ; BIN (default target/release/candidate), RUNS=3.
set -euo pipefail
SIZE_MB=${1:-1024}
RUNS=${RUNS:-3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$REPO/target/release/candidate}
[ -x "$BIN" ] || { echo "build first: cargo build --release (or set BIN)" >&2; exit 1; }
BIN=$(realpath "$BIN") # the script changes directory before it runs it
WORK=$(mktemp -d /var/tmp/store-verify.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
blobs=$WORK/store/v1/blobs/sha256
mkdir -p "$blobs"
left=$((SIZE_MB << 20)); i=0
for size in $((64 << 20)) $((16 << 20)) $((1 << 20)) $((64 << 10)); do
  # A quarter of the bytes in blobs of each size.
  share=$((SIZE_MB << 18))
  while [ "$share" -ge "$size" ] && [ "$left" -ge "$size" ]; do
    head -c "$size" /dev/urandom > "$WORK/blob"
    mv "$WORK/blob" "$blobs/$(sha256sum < "$WORK/blob" | cut -d' ' -f1)"
    share=$((share - size)); left=$((left - size)); i=$((i + 1))
  done
done
echo "store: $i blobs, $(du -sb "$blobs" | cut -f1) bytes, $(nproc) cores"
cd "$blobs"
: > "$WORK/times"
for r in $(seq "$RUNS"); do
  # Warm page cache for all three: the figure is hashing, not the disk.
  /usr/bin/time -f "candidate-store-verify %e" -a -o "$WORK/times" "$BIN" -q --store "$WORK/store" store verify
  /usr/bin/time -f "sha256sum %e" -a -o "$WORK/times" sh -c 'ls | xargs sha256sum > /dev/null'
  /usr/bin/time -f "sha256sum-P$(nproc) %e" -a -o "$WORK/times" sh -c "ls | xargs -P$(nproc) -n8 sha256sum > /dev/null"
done
python3 - "$WORK/times" <<'EOT'
import collections, statistics, sys
t = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, s = line.split()
    t[name].append(float(s))
for name, v in t.items():
    print(f"{name:24} median {statistics.median(v):6.2f} s  runs {' '.join(f'{x:.2f}' for x in v)}")
EOT
