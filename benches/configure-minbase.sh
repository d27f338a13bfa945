#!/bin/bash
# configure-minbase.sh — the Debian 12 minbase set *configured* (maintainer scripts run), side
# by side in one run (interleaved rounds) with mmdebstrap --variant=minbase, which also runs
# them:
#   cold        candidate build with [configure]; the store holds the .debs, the layer cache
#               (package layers and the configure layer) is cold
#   warm        candidate build again (nothing to do)
#   mm-minbase  mmdebstrap --variant=minbase of the same mirror, to .tar
# Needs the mirrors of ../shared/bench (make-local-mirror.sh, make-signed-mirror.sh); their
# location is the first argument (default /tmp/bench). WORK (default: $BENCH/configure-bench)
# is where builds run: put it on tmpfs to compare with the tmpfs figures.
# Usage: benches/configure-minbase.sh [BENCH] ; RUNS=5 by default. Prints a table of medians.
set -euo pipefail
BENCH=${1:-/tmp/bench}
RUNS=${RUNS:-5}
WORK=${WORK:-$BENCH/configure-bench}
BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/candidate}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -d "$BENCH/mirror-signed/dists" ] || { echo "no $BENCH/mirror-signed: run ../shared/bench/make-local-mirror.sh and make-signed-mirror.sh" >&2; exit 1; }
rm -rf "$WORK"; mkdir -p "$WORK/recipes"
cat > "$WORK/recipes/minbase.toml" <<RECIPE
[image]
name = "minbase"
version = "1"
architecture = "amd64"
os = "debian"
release = "bookworm"
source-date-epoch = "archive"

[archive.debian]
url = "file://$BENCH/mirror-signed"
suite = "bookworm"
components = ["main"]
keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

[[layer]]
name = "base"
priority = "required"
packages = ["apt"]

[configure]
maintainer-scripts = true

[output]
formats = ["rootfs.tar"]
RECIPE
cd "$WORK"
STORE=$WORK/store
"$BIN" -q --store "$STORE" lock recipes/minbase.toml
"$BIN" -q --store "$STORE" fetch recipes/minbase.toml
MIRROR="deb [trusted=yes] copy://$BENCH/mirror ./"

t() { # name command...: runs, appends "name seconds maxrss_kb" to times.tsv
  local name=$1; shift
  /usr/bin/time -f "$name %e %M" -a -o times.tsv "$@" >/dev/null 2>>log.txt
}
: > times.tsv
for i in $(seq "$RUNS"); do
  rm -rf "$STORE/v1/actions" dist; mkdir -p "$STORE/v1/actions"; sync
  t cold "$BIN" -q --store "$STORE" build recipes/minbase.toml
  t warm "$BIN" -q --store "$STORE" build recipes/minbase.toml
  if command -v mmdebstrap >/dev/null; then
    sync; t mm-minbase mmdebstrap --quiet --mode=root --variant=minbase bookworm mm-minbase.tar "$MIRROR"
  fi
done
echo "packages: $(grep -c '^\[\[package' lockfiles/minbase.lock); rootfs: ours $(stat -c %s dist/minbase_1_amd64/rootfs.tar) B, mmdebstrap $(stat -c %s mm-minbase.tar 2>/dev/null || echo -) B"
python3 - "$WORK/times.tsv" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
names = list(dict.fromkeys(r[0] for r in rows))
med = {n: statistics.median(float(r[1]) for r in rows if r[0] == n) for n in names}
print(f"{'step':<12}{'median s':>10}{'min-max':>16}{'peak RSS MB':>13}{'mm / this':>11}")
for n in names:
    t = [float(r[1]) for r in rows if r[0] == n]; m = [int(r[2]) for r in rows if r[0] == n]
    ratio = f"{med['mm-minbase']/med[n]:.1f}x" if 'mm-minbase' in med and med[n] > 0 else ""
    print(f"{n:<12}{med[n]:>10.2f}{min(t):>8.2f}-{max(t):<7.2f}{max(m)/1024:>13.0f}{ratio:>11}")
PY
