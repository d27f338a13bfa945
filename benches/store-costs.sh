#!/usr/bin/env bash
# What #16's store hardening costs a build: inputs re-hashed where they are used and outputs
# copied (or reflinked) into dist/ instead of hard-linked. Builds the example and the Debian
# minbase set with two binaries, interleaved: OLD (before) and NEW (after), each cold (no
# action cache: every layer made again from its inputs, which are re-hashed) and warm (a
# no-op rebuild into the same folder, whose outputs are re-hashed), RUNS times, and prints
# the medians. Needs the mirror of benches/make-mirror.sh (see benches/debian-minbase.sh) for minbase.
# Usage: OLD=path NEW=path benches/store-costs.sh [BENCH]
set -euo pipefail
BENCH=${1:-/tmp/bench}
RUNS=${RUNS:-3}
. "$(dirname "$0")/old-new.sh"
old_new_work store-costs
recipes=(example)
if [ -d "$BENCH/mirror-signed/dists" ]; then
  . "$REPO/benches/minbase-recipe.sh"
  minbase_recipe "$BENCH" > "$WORK/recipes/minbase.toml"
  recipes+=(minbase)
else
  echo "no $BENCH/mirror-signed: measuring the example only" >&2
fi
cd "$WORK"
: > times.tsv
for r in "${recipes[@]}"; do
  for bin in OLD NEW; do
    "${!bin}" -q --store "store-$bin" lock "recipes/$r.toml"
    "${!bin}" -q --store "store-$bin" fetch "recipes/$r.toml"
  done
  for i in $(seq "$RUNS"); do
    for bin in OLD NEW; do
      store=store-$bin
      rm -rf "$store/v1/actions" "$store/v1/layers" "dist-$bin"; mkdir -p "$store/v1/actions" "$store/v1/layers"; sync
      /usr/bin/time -f "$r $bin cold %e" -a -o times.tsv "${!bin}" -q --store "$store" build "recipes/$r.toml" --out "dist-$bin" >/dev/null
      /usr/bin/time -f "$r $bin warm %e" -a -o times.tsv "${!bin}" -q --store "$store" build "recipes/$r.toml" --out "dist-$bin" >/dev/null
    done
  done
  du -sb "dist-NEW" | awk -v r="$r" '{print r " outputs " $1 " bytes"}'
done
python3 - <<'EOT'
import collections, statistics
t = collections.defaultdict(list)
for line in open("times.tsv"):
    r, b, k, s = line.split()
    t[(r, k, b)].append(float(s))
for (r, k, b), v in sorted(t.items()):
    print(f"{r:8} {k:5} {b:4} median {statistics.median(v):7.2f} s  runs {' '.join(f'{x:.2f}' for x in v)}")
EOT
