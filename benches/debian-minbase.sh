#!/bin/bash
# debian-minbase.sh — the Debian 12 minbase set, side by side in one run (interleaved rounds):
#   lock      candidate lock: InRelease verify + full bookworm main index (63k) parse + resolve
#   cold      candidate build, extract only; the store holds the .debs, the layer cache is cold
#   warm      candidate build again
#   floor     dpkg-deb --fsys-tarfile of every .deb (2 jobs) + zstd -3 -T0 of the rootfs tar
#   mm-extract  mmdebstrap --variant=extract of the same package set, to .tar
#   mm-minbase  mmdebstrap --variant=minbase, to .tar (from the flat file:// mirror of the
#               same set, with the file-mirror-automount hook)
#   cfg-cold    candidate build with [configure] (maintainer scripts run, as mmdebstrap's
#               minbase runs them), package layers and configure layer cold
#   cfg-warm    that build again
#   cfg-noguard the configured build with `[configure] guard = false` (the maintainer scripts run
#               once, as mmdebstrap runs them; the default runs them twice side by side), cold
# Each step's CPU seconds (user + sys of all its processes) are in the table too, and "at most":
# mmdebstrap's time over that CPU spread over every core here, the best ratio any schedule of
# the same work could reach on this machine.
# Needs the mirrors benches/make-mirror.sh makes (mirror-signed and the flat mirror); their
# location is the first argument (default /tmp/bench). WORK (default: $BENCH/candidate-bench)
# is where builds run: put it on tmpfs to compare with the tmpfs figures.
# SCRIPT_TIMES=1 adds one more cfg-noguard build (one run of the scripts) and one more
# mm-minbase run under `perf record` (root): the maintainer scripts' own time in each, and each
# tool's time besides them (benches/script-share.sh).
# Usage: benches/debian-minbase.sh [BENCH] ; RUNS=5 by default. Prints a table of medians.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
BENCH=${1:-/tmp/bench}
RUNS=${RUNS:-5}
WORK=${WORK:-$BENCH/candidate-bench}
BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/candidate}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
BIN=$(realpath "$BIN") # the script changes directory before it runs it
[ -d "$BENCH/mirror-signed/dists" ] || { echo "no $BENCH/mirror-signed: run benches/make-mirror.sh" >&2; exit 1; }
rm -rf "$WORK"; mkdir -p "$WORK/recipes"
. "$(dirname "$0")/minbase-recipe.sh"
. "$(dirname "$0")/lockfile.sh"
minbase_recipe "$BENCH" > "$WORK/recipes/minbase.toml"
# The same set, configured (same lockfile content: the recipe differs only in [configure]).
sed -e 's/^name = "minbase"/name = "configured"/' "$WORK/recipes/minbase.toml" > "$WORK/recipes/configured.toml"
printf '\n[configure]\nmaintainer-scripts = true\n' >> "$WORK/recipes/configured.toml"
sed -e 's/^name = "configured"/name = "noguard"/' "$WORK/recipes/configured.toml" > "$WORK/recipes/noguard.toml"
printf 'guard = false\n' >> "$WORK/recipes/noguard.toml"
cd "$WORK"
STORE=$WORK/store
for r in minbase configured noguard; do
  "$BIN" -q --store "$STORE" lock recipes/$r.toml
  "$BIN" -q --store "$STORE" fetch recipes/$r.toml
done
# the same .debs, in the lock's order, for the floor and for mmdebstrap --variant=extract
lock_files lockfiles/minbase.lock > debs.txt
PKGS=$(lock_names lockfiles/minbase.lock | paste -sd, -)
MIRROR="deb [trusted=yes] copy://$BENCH/mirror ./"
HOOKS=/usr/share/mmdebstrap/hooks/file-mirror-automount

t() { # name command...: runs, appends "name seconds maxrss_kb user_s sys_s" to times.tsv
  local name=$1; shift
  /usr/bin/time -f "$name %e %M %U %S" -a -o times.tsv "$@" >/dev/null 2>>log.txt
}
: > times.tsv
for i in $(seq "$RUNS"); do
  sync; t lock "$BIN" -q --store "$STORE" lock recipes/minbase.toml
  rm -rf "$STORE/v1/actions" dist; mkdir -p "$STORE/v1/actions"; sync
  t cold "$BIN" -q --store "$STORE" build recipes/minbase.toml
  t warm "$BIN" -q --store "$STORE" build recipes/minbase.toml
  sync; t floor "$HERE/floor.sh" "$BENCH/mirror-signed" "$WORK/debs.txt" "$WORK"; rm -rf floor
  if command -v mmdebstrap >/dev/null; then
    sync; t mm-extract mmdebstrap --quiet --mode=root --variant=extract --include="$PKGS" bookworm mm-extract.tar "$MIRROR"
    sync; t mm-minbase mmdebstrap --quiet --mode=root --variant=minbase --hook-dir="$HOOKS" bookworm mm-minbase.tar \
      "deb [trusted=yes] file://$BENCH/mirror ./"
  fi
  rm -rf "$STORE/v1/actions" dist; mkdir -p "$STORE/v1/actions"; sync
  t cfg-cold "$BIN" -q --store "$STORE" build recipes/configured.toml
  t cfg-warm "$BIN" -q --store "$STORE" build recipes/configured.toml
  rm -rf "$STORE/v1/actions" dist; mkdir -p "$STORE/v1/actions"; sync
  t cfg-noguard "$BIN" -q --store "$STORE" build recipes/noguard.toml
done
python3 "$HERE/medians.py" "$WORK/times.tsv" --vs floor --faster mm-minbase --cores "$(nproc)" | tee medians.txt
awk '/^median /{for (i = 2; i <= NF; i++) { split($i, kv, "="); m[kv[1]] = kv[2] }}
  END { if (m["mm-minbase"]) printf "cold build is %.1fx faster than mmdebstrap --variant=minbase\n", m["mm-minbase"] / m["cold"] }' medians.txt
if [ "${SCRIPT_TIMES:-0}" = 1 ]; then
  command -v mmdebstrap >/dev/null || { echo "SCRIPT_TIMES=1 compares with mmdebstrap: install it" >&2; exit 1; }
  . "$HERE/script-share.sh"
  rm -rf "$STORE/v1/actions" dist; mkdir -p "$STORE/v1/actions"; sync
  trace perf "$BIN" -q --store "$STORE" build recipes/noguard.toml
  trace perf-mm mmdebstrap --quiet --mode=root --variant=minbase --hook-dir="$HOOKS" bookworm mm-traced.tar \
    "deb [trusted=yes] file://$BENCH/mirror ./"
  echo; script_share perf.txt perf-mm.txt cfg-noguard mm-minbase | tee script-times.txt
fi
