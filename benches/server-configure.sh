#!/bin/bash
# server-configure.sh — the configured server build (recipes/server.toml: Debian 12 required +
# systemd-sysv, openssh-server, nginx, postgresql-15, python3-numpy, python3-yaml; 178
# packages) side by side in one run (interleaved rounds):
#   cold          candidate build, layer cache cold (the store holds the .debs), with the
#                 nondeterminism guard (the maintainer scripts run twice, side by side)
#   warm          that build again (the configure layer comes from the action cache)
#   cold-noguard  the same recipe with `[configure] guard = false` (scripts run once)
#   warm-noguard  that build again
#   extract-cold  the same set extract-only (no [configure]), layer cache cold
#   floor         dpkg-deb --fsys-tarfile of every .deb (2 jobs) + zstd -3 -T0 of the tars:
#                 what extract-only cannot go below
#   scripts-floor the maintainer scripts' own run in cold-noguard (the sandbox's wall time
#                 around the image's `dpkg --configure -a` and preinsts): what no configured
#                 build of this set can go below, here or in mmdebstrap
#   mm-server     mmdebstrap --variant=minbase --include=<the same packages> from the same
#                 local mirror, to .tar.zst (maintainer scripts run once, no guard)
# Each step's CPU seconds (user + sys of all its processes) are in the table too, and "at most":
# mmdebstrap's time over that CPU spread over every core here, the best ratio any schedule of
# the same work could reach on this machine.
# Only rootfs.tar.zst is built (`--format`), the output mmdebstrap makes too.
# SCRIPT_TIMES=1 adds one more cold-noguard build under `perf record` (exec, fork and exit
# events, system-wide: root) and prints where its scripts' time goes, package by package, and the
# programs they ran most (benches/script-times.py): how openssh-server's host keys were found.
# Then one more mmdebstrap run the same way: the scripts' own time in each tool (the union of
# their processes' lifetimes), and each tool's time besides them (median total minus that).
# Needs benches/make-mirror.sh's signed mirror (the server packages are added to its pool
# by benches/extend-mirror.sh lockfiles/server.lock) and a release binary.
# Usage: benches/server-configure.sh [BENCH] ; RUNS=3 by default. Prints a table of medians.
# On tmpfs: WORK=/a/tmpfs/dir TMPDIR=/a/tmpfs/tmp (mmdebstrap unpacks under TMPDIR).
set -euo pipefail
BENCH=${1:-/tmp/bench}
RUNS=${RUNS:-3}
WORK=${WORK:-$BENCH/server-bench}
REPO=$(cd "$(dirname "$0")/.." && pwd)
. "$REPO/benches/lockfile.sh"
BIN=${BIN:-$REPO/target/release/candidate}
MIRROR=$BENCH/mirror-signed
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
BIN=$(realpath "$BIN") # the script changes directory before it runs it
[ -d "$MIRROR/dists" ] || { echo "no $MIRROR: run benches/make-mirror.sh" >&2; exit 1; }
"$REPO/benches/extend-mirror.sh" "$REPO/lockfiles/server.lock" "$MIRROR" >/dev/null
rm -rf "$WORK"; mkdir -p "$WORK/recipes" "$WORK/lockfiles"
cp "$REPO/recipes/server.toml" "$WORK/recipes/server.toml"
cp "$REPO/lockfiles/server.lock" "$WORK/lockfiles/server.lock"
sed -e 's/^maintainer-scripts = true$/maintainer-scripts = true\nguard = false/' "$WORK/recipes/server.toml" > "$WORK/recipes/noguard.toml"
grep -q '^guard = false$' "$WORK/recipes/noguard.toml"
sed -e '/^\[configure\]/,/^maintainer-scripts/d' -e 's/^name = "server"/name = "extract"/' \
  "$WORK/recipes/server.toml" > "$WORK/recipes/extract.toml"
! grep -q maintainer-scripts "$WORK/recipes/extract.toml"
cd "$WORK"
STORE=$WORK/store
export CANDIDATE_MIRROR_DEBIAN=file://$MIRROR
"$BIN" -q --store "$STORE" lock --check recipes/server.toml
"$BIN" -q --store "$STORE" lock recipes/noguard.toml
"$BIN" -q --store "$STORE" lock recipes/extract.toml
lock_files lockfiles/server.lock > debs.txt
"$BIN" -q --store "$STORE" fetch recipes/server.toml
PKGS=$(lock_names lockfiles/server.lock | paste -sd, -)
HOOKS=/usr/share/mmdebstrap/hooks/file-mirror-automount

t() { # name command...: runs, appends "name seconds maxrss_kb user_s sys_s" to times.tsv
  local name=$1; shift
  /usr/bin/time -f "$name %e %M %U %S" -a -o times.tsv "$@" >/dev/null 2>>log.txt
}
cold() { rm -rf "$STORE/v1/actions" dist; mkdir -p "$STORE/v1/actions"; sync; }
: > times.tsv
for i in $(seq "$RUNS"); do
  cold; t cold "$BIN" -q --store "$STORE" build --format rootfs.tar.zst recipes/server.toml
  t warm "$BIN" -q --store "$STORE" build --format rootfs.tar.zst recipes/server.toml
  # verbose: its "maintainer scripts ran in" line is the scripts' own time (their floor)
  cold; t cold-noguard "$BIN" -v --store "$STORE" build --format rootfs.tar.zst recipes/noguard.toml
  t warm-noguard "$BIN" -q --store "$STORE" build --format rootfs.tar.zst recipes/noguard.toml
  cold; t extract-cold "$BIN" -q --store "$STORE" build --format rootfs.tar.zst recipes/extract.toml
  sync; t floor "$REPO/benches/floor.sh" "$MIRROR" "$WORK/debs.txt" "$WORK"; rm -rf floor
  if command -v mmdebstrap >/dev/null; then
    sync; t mm-server mmdebstrap --quiet --mode=root --variant=minbase --include="$PKGS" --hook-dir="$HOOKS" \
      bookworm mm-server.tar.zst "deb [trusted=yes] file://$MIRROR bookworm main"
  fi
done
# The same package set: what mmdebstrap installed against the lockfile.
if [ -f mm-server.tar.zst ]; then
  tar --zstd -xOf mm-server.tar.zst ./var/lib/dpkg/status | awk '/^Package:/{print $2}' | sort > mm-packages.txt
  lock_names lockfiles/server.lock | sort > our-packages.txt
  echo "package sets: $(wc -l < our-packages.txt) locked, $(wc -l < mm-packages.txt) installed by mmdebstrap; differences:"
  diff our-packages.txt mm-packages.txt || true
fi
sed -n 's/.*maintainer scripts ran in \([0-9.]*\) s.*/scripts-floor \1 0/p' log.txt >> times.tsv
python3 "$REPO/benches/medians.py" "$WORK/times.tsv" --vs floor --faster mm-server --cores "$(nproc)" | tee medians.txt
if [ "${SCRIPT_TIMES:-0}" = 1 ]; then
  . "$REPO/benches/script-share.sh"
  cold
  trace perf "$BIN" -q --store "$STORE" build --format rootfs.tar.zst recipes/noguard.toml
  echo; python3 "$REPO/benches/script-times.py" perf.txt | tee script-times.txt
  if command -v mmdebstrap >/dev/null; then
    trace perf-mm mmdebstrap --quiet --mode=root --variant=minbase --include="$PKGS" --hook-dir="$HOOKS" \
      bookworm mm-traced.tar.zst "deb [trusted=yes] file://$MIRROR bookworm main"
    echo; script_share perf.txt perf-mm.txt cold-noguard mm-server | tee -a script-times.txt
  else
    echo "(no mmdebstrap: its scripts' own time is not compared)"
  fi
fi
# The guard's cost: cold with it against cold without.
awk '/^median /{for (i = 2; i <= NF; i++) { split($i, kv, "="); m[kv[1]] = kv[2] }}
  END { if (m["cold"] && m["cold-noguard"]) printf "the guard costs %.1f s of a cold build (%.2fx); a warm build, nothing\n", m["cold"] - m["cold-noguard"], m["cold"] / m["cold-noguard"] }' medians.txt
