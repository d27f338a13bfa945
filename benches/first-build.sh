#!/bin/bash
# first-build.sh [BENCH] — what a newcomer's first `cargo build` costs against what the built
# binary then does, for each cargo profile in PROFILES (default: `release`, what the README's
# commands build, and `dist`, what shipped binaries are built with), side by side:
#   compile-PROFILE   `cargo build --locked --profile PROFILE` of a clean clone of this
#                     checkout's HEAD (a fresh target folder; crates already downloaded, as
#                     after `cargo fetch`), on JOBS cores (default 2; `taskset` pins the build
#                     to the first JOBS cores when the machine has more)
#   example-PROFILE   that binary's cold build of the example candidate (recipes/example.toml,
#                     from fixtures/, every format: xz, gzip and zstd outputs)
#   extract-PROFILE   its cold extract-only build of Debian 12 minbase from BENCH's mirror
#   configured-PROFILE its cold configured build of minbase (maintainer scripts run)
# The compiles run one after the other; the builds in RUNS interleaved rounds (default 3).
# The minbase builds need benches/make-mirror.sh's signed mirror in BENCH (default /tmp/bench) and
# are skipped, saying so, without it. WORK (default: a folder under /tmp) is removed on exit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BENCH=${1:-/tmp/bench}
RUNS=${RUNS:-3}
JOBS=${JOBS:-2}
PROFILES=${PROFILES:-release dist}
WORK=${WORK:-$(mktemp -d /tmp/first-build.XXXXXX)}
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
git clone --quiet --no-local "$REPO" src
(cd src && cargo fetch --locked --quiet)
pin=()
[ "$(nproc)" -le "$JOBS" ] || pin=(taskset -c "0-$((JOBS - 1))")
t() { # name command...: runs, appends "name seconds maxrss_kb" to times.tsv
  local name=$1; shift
  /usr/bin/time -f "$name %e %M" -a -o "$WORK/times.tsv" "$@" >/dev/null 2>>"$WORK/log.txt"
}
: >"$WORK/times.tsv"
for p in $PROFILES; do
  rm -rf src/target; sync
  (cd src && t "compile-$p" "${pin[@]}" cargo build --locked --offline --jobs "$JOBS" --profile "$p")
  cp "src/target/$p/candidate" "bin-$p"
done
rm -rf src/target
mkdir -p recipes
cp -a "$REPO/recipes/example.toml" recipes/
cp -a "$REPO/fixtures" "$REPO/lockfiles" .
minbase=
if [ -d "$BENCH/mirror-signed/dists" ]; then
  minbase=yes
  # shellcheck source=benches/minbase-recipe.sh
  . "$HERE/minbase-recipe.sh"
  minbase_recipe "$BENCH" >recipes/minbase.toml
  sed -e 's/^name = "minbase"/name = "configured"/' recipes/minbase.toml >recipes/configured.toml
  printf '\n[configure]\nmaintainer-scripts = true\n' >>recipes/configured.toml
  for r in minbase configured; do
    "./bin-${PROFILES%% *}" -q --store debs lock "recipes/$r.toml"
    "./bin-${PROFILES%% *}" -q --store debs fetch "recipes/$r.toml"
  done
else
  echo "no $BENCH/mirror-signed: the minbase builds are skipped" >&2
fi
# cold NAME BINARY RECIPE: a build over a store holding only the fetched inputs.
cold() {
  rm -rf store dist && cp -a debs store 2>/dev/null || mkdir -p store
  rm -rf store/v1/actions; sync
  t "$1" "$2" -q --store store build "$3" --out dist
}
for round in $(seq "$RUNS"); do
  for p in $PROFILES; do
    rm -rf store dist; sync
    t "example-$p" "./bin-$p" -q --store store build recipes/example.toml --format rootfs.tar.xz --format rootfs.tar.gz --format rootfs.tar.zst --format oci --format lxc --format incus --out dist
    if [ -n "$minbase" ]; then
      cold "extract-$p" "./bin-$p" recipes/minbase.toml
      cold "configured-$p" "./bin-$p" recipes/configured.toml
    fi
  done
done
python3 "$HERE/medians.py" times.tsv
echo "cores: $JOBS of $(nproc); $(rustc --version)"
