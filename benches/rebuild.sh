#!/usr/bin/env bash
# rebuild.sh — a one-package change in a large image: the server set of recipes/server.toml
# (178 packages, ~610 MB) extract-only, every format (rootfs.tar.zst, lxc, incus, oci), built
# by two binaries side by side: OLD and NEW (this tree's release binary). Per binary:
#   cold      A, layer and output caches empty (the store holds the .debs)
#   warm      A again (a no-op)
#   change    B = A without python3-yaml (a package removed; relocked), on A's store
#   cold-B    B on a store that only holds the .debs
# and checks that each binary's `change` outputs are byte for byte its `cold-B` ones. Prints
# the medians (peak RSS from /usr/bin/time) and change/cold per binary.
# Needs benches/make-mirror.sh's signed mirror; the server's .debs are added to its pool
# (benches/extend-mirror.sh). Usage: OLD=path [NEW=path] [RUNS=1] benches/rebuild.sh [BENCH]
set -euo pipefail
BENCH=${1:-/tmp/bench}
RUNS=${RUNS:-1}
MIRROR=$BENCH/mirror-signed
. "$(dirname "$0")/old-new.sh"
old_new_work rebuild-bench
[ -d "$MIRROR/dists" ] || { echo "no $MIRROR: run benches/make-mirror.sh" >&2; exit 1; }
"$REPO/benches/extend-mirror.sh" "$REPO/lockfiles/server.lock" "$MIRROR" >/dev/null
export CANDIDATE_MIRROR_DEBIAN=file://$MIRROR
cd "$WORK"
sed -e '/^\[configure\]/,/^maintainer-scripts/d' -e 's/^formats = .*/formats = ["rootfs.tar.zst", "lxc", "incus", "oci"]/' \
  "$REPO/recipes/server.toml" > recipes/a.toml
sed -e 's/, "python3-yaml"\]/]/' recipes/a.toml > recipes/b.toml
! cmp -s recipes/a.toml recipes/b.toml || { echo "recipes/server.toml no longer lists python3-yaml last" >&2; exit 1; }
for bin in OLD NEW; do
  for r in a b; do "$NEW" -q --store "store-$bin" lock "recipes/$r.toml"; done
  for s in "store-$bin" "store-$bin-b"; do "$NEW" -q --store "$s" fetch recipes/a.toml; "$NEW" -q --store "$s" fetch recipes/b.toml; done
done
echo "A: $(grep -c '^\[\[package' lockfiles/a.lock) packages, B: $(grep -c '^\[\[package' lockfiles/b.lock)"
: > times.tsv
empty() { rm -rf "$1/v1/actions" "$1/v1/layers"; mkdir -p "$1/v1/actions" "$1/v1/layers"; sync; }
t() { # NAME BIN STORE RECIPE OUT
  /usr/bin/time -f "$1-$2 %e %M" -a -o times.tsv "${!2}" -q --store "$3" build "recipes/$4.toml" --out "$5" >/dev/null
}
for i in $(seq "$RUNS"); do
  for bin in OLD NEW; do
    rm -rf "out-$bin-a" "out-$bin-b" "out-$bin-cold-b"
    empty "store-$bin"; t cold "$bin" "store-$bin" a "out-$bin-a"
    t warm "$bin" "store-$bin" a "out-$bin-a"
    t change "$bin" "store-$bin" b "out-$bin-b"
    empty "store-$bin-b"; t cold-B "$bin" "store-$bin-b" b "out-$bin-cold-b"
    diff -r "out-$bin-b" "out-$bin-cold-b" >/dev/null || { echo "$bin: the rebuild after the change differs from a cold build" >&2; exit 1; }
    echo "$bin run $i: the rebuild's outputs are the cold build's, byte for byte"
  done
done
for bin in OLD NEW; do
  for f in rootfs.tar.xz lxc.rootfs.tar.xz rootfs.tar.zst; do printf '%s %s %s bytes\n' "$bin" "$f" "$(stat -c %s out-$bin-b/*/$f)"; done
done
python3 "$REPO/benches/medians.py" times.tsv | tee medians.txt
awk '/^median /{for (i = 2; i <= NF; i++) { split($i, kv, "="); m[kv[1]] = kv[2] }}
  END { split("OLD NEW", bins, " ");
        for (k = 1; k <= 2; k++) { b = bins[k]; printf "%s: change %.1f s of cold %.1f s (%.0f%%); warm %.2f s\n", b, m["change-" b], m["cold-" b], 100 * m["change-" b] / m["cold-" b], m["warm-" b] } }' medians.txt
