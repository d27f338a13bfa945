#!/usr/bin/env bash
# What the multi-threaded xz encoder gains an all-format build. Builds the configured Debian
# minbase (the example without benches/make-mirror.sh's mirror) with two binaries, interleaved: OLD
# (single-threaded xz) and NEW, each cold (no action cache) with every format, and cold with
# every format but the xz ones (`rootfs.tar.xz`, `lxc`, `incus`): the difference is the xz
# stage. Beside them, `xz -T0 -6` of the same rootfs tar, for throughput. Peak RSS from
# `/usr/bin/time`. Prints every run and the medians, checks that OLD's and NEW's xz outputs
# decode to the same tars, and that the xz command re-makes NEW's `rootfs.tar.xz`
# (benches/xz-remake.sh).
# Usage: OLD=path NEW=path benches/xz.sh [BENCH]
set -euo pipefail
BENCH=${1:-/tmp/bench}
RUNS=${RUNS:-2}
. "$(dirname "$0")/old-new.sh"
old_new_work xz-bench
r=example
if [ -d "$BENCH/mirror-signed/dists" ]; then
  . "$REPO/benches/minbase-recipe.sh"
  minbase_recipe "$BENCH" | sed -e 's/^name = "minbase"/name = "configured"/' > "$WORK/recipes/configured.toml"
  printf '\n[configure]\nmaintainer-scripts = true\n' >> "$WORK/recipes/configured.toml"
  r=configured
else
  echo "no $BENCH/mirror-signed: measuring the example only" >&2
fi
all=(rootfs.tar rootfs.tar.gz rootfs.tar.xz rootfs.tar.zst proxmox oci lxc incus)
noxz=(rootfs.tar rootfs.tar.gz rootfs.tar.zst proxmox oci)
flags() { local f; for f in "$@"; do printf -- '--format\n%s\n' "$f"; done; }
mapfile -t ALL < <(flags "${all[@]}")
mapfile -t NOXZ < <(flags "${noxz[@]}")
cd "$WORK"
: > times.tsv
for bin in OLD NEW; do
  "${!bin}" -q --store "store-$bin" lock "recipes/$r.toml"
  "${!bin}" -q --store "store-$bin" fetch "recipes/$r.toml"
done
cold() { # BIN KIND FORMATS...
  local bin=$1 kind=$2 store=store-$1; shift 2
  rm -rf "$store/v1/actions" "$store/v1/layers" "dist-$bin-$kind"; mkdir -p "$store/v1/actions" "$store/v1/layers"; sync
  /usr/bin/time -f "$bin $kind %e %M" -a -o times.tsv "${!bin}" -q --store "$store" build "recipes/$r.toml" "$@" --out "dist-$bin-$kind" >/dev/null
}
for i in $(seq "$RUNS"); do
  for bin in OLD NEW; do
    cold "$bin" all "${ALL[@]}"
    cold "$bin" noxz "${NOXZ[@]}"
  done
  tar=$(ls dist-NEW-all/*/rootfs.tar)
  sync
  /usr/bin/time -f "xz-T0-6 rootfs.tar %e %M" -a -o times.tsv xz -T0 -6 -c "$tar" > xz-T0-6.tar.xz
done
tar=$(ls dist-NEW-all/*/rootfs.tar)
echo "rootfs.tar $(stat -c %s "$tar") bytes"
for f in rootfs.tar.xz lxc.rootfs.tar.xz meta.tar.xz incus.meta.tar.xz; do
  old=$(ls dist-OLD-all/*/$f) new=$(ls dist-NEW-all/*/$f)
  cmp <(xz -dc "$old") <(xz -dc "$new") || { echo "$f: OLD and NEW decode to other bytes" >&2; exit 1; }
  echo "$f OLD $(stat -c %s "$old") bytes, NEW $(stat -c %s "$new") bytes ($(xz --list --robot "$new" | awk -F'\t' '/^file/ {print $2}') streams), same tar"
done
"$REPO/benches/xz-remake.sh" "$tar" dist-NEW-all/*/rootfs.tar.xz
python3 - "$(stat -c %s "$tar")" <<'EOT'
import collections, statistics, sys
size = int(sys.argv[1])
t, m = collections.defaultdict(list), collections.defaultdict(list)
for line in open("times.tsv"):
    b, k, s, rss = line.split()
    t[(b, k)].append(float(s)); m[(b, k)].append(int(rss))
for (b, k), v in sorted(t.items()):
    print(f"{b:8} {k:10} median {statistics.median(v):7.2f} s  peak RSS {max(m[(b, k)]) / 1024:6.0f} MiB  runs {' '.join(f'{x:.2f}' for x in v)}")
med = {key: statistics.median(v) for key, v in t.items()}
stage = {b: med[(b, "all")] - med[(b, "noxz")] for b in ("OLD", "NEW")}
for b in ("OLD", "NEW"):
    # The xz stage writes two rootfs archives (`rootfs.tar.xz`, `lxc.rootfs.tar.xz`).
    print(f"{b} xz stage {stage[b]:.2f} s: {2 * size / stage[b] / 1e6:.1f} MB/s of tar")
xz = med[("xz-T0-6", "rootfs.tar")]
print(f"xz -T0 -6: {size / xz / 1e6:.1f} MB/s of tar")
print(f"NEW/OLD: xz stage {stage['NEW'] / stage['OLD']:.2f}, whole all-format build {med[('NEW', 'all')] / med[('OLD', 'all')]:.2f}")
print(f"NEW xz throughput / xz -T0 -6: {(2 * size / stage['NEW']) / (size / xz):.2f}")
EOT
