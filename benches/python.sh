#!/usr/bin/env bash
# Python install benchmark (a report, not a test): the real numpy + PyYAML + requests set
# (benches/python-index.sh) installed into an image layer by `candidate build`, cold and warm,
# side by side in one interleaved run with pip installing the same wheels into a venv:
#   pip install --no-index --find-links WHEELS --require-hashes -r requirements.txt
# (once with pip's default byte-compiling, once `--no-compile`, which is what an extract-only
# layer ships). Our cold build is measured over a store that already holds the Debian base
# layer (built once, copied before each round). What each figure includes:
#   ours_cold        the whole build process: installing the 7 wheels (every member inflated
#                    and checked against RECORD; the wheels are in the store already, as pip's
#                    are in a local folder: `lock` stored them when it read their metadata),
#                    the wheel trees cached in the store, the app layer's tar, then the OCI
#                    assembly (every layer, the base's too, compressed with zstd) and every
#                    blob made durable.
#   ours_app_layer   the python layer alone, the figure to hold against pip's install: from the
#                    status line of the cached base layer to the app layer's, i.e. installing
#                    and checking the wheels in the store and writing the layer's tar into the
#                    store (hashed; its fsync runs on in the background, which `ours_cold`
#                    waits for). The wheel trees' cache copies are written beside the layer on
#                    another thread (competing for the same cores), made durable and named by
#                    the end of the build (in `ours_cold`). Not in it: process start.
#   ours_warm        the same build again: every layer and output from the cache (a no-op).
#   pip              the pip process: interpreter start, reading and hashing the wheels,
#                    unpacking them into the venv (no fsync), byte-compiling every module.
#   pip_no_compile   the same without byte-compiling.
# With OLD=BINARY, every round also times that binary's cold build (`old_cold`,
# `old_app_layer`) beside this checkout's, to compare two versions in one run.
#
# Needs the local Debian 12 mirror (benches/make-mirror.sh, + python3 via benches/extend-mirror.sh)
# and network to pip's configured index once (the wheels are kept in BENCH_DIR/python-index).
# Environment: BENCH_DIR (/tmp/candidate-bench), BENCH (/tmp/bench, holding mirror-signed),
# CANDIDATE (default: this checkout's release binary, built first), OLD (none), RUNS (5).
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/candidate-bench}
BENCH=${BENCH:-/tmp/bench}
MIRROR=$BENCH/mirror-signed
RUNS=${RUNS:-5}
# The release binary of this checkout, built (or found current) first: a stale binary from an
# older checkout would time other code, or refuse the recipe's `python` key.
if [ -z "${CANDIDATE:-}" ]; then
  (cd "$REPO_ROOT" && cargo build --release --locked --quiet)
  CANDIDATE=$REPO_ROOT/target/release/candidate
fi
work=$BENCH_DIR/python
rm -rf "$work" && mkdir -p "$work/recipes" "$work/python"
"$REPO_ROOT/benches/python-index.sh" "$BENCH_DIR/python-index" >/dev/null
ln -s "$BENCH_DIR/python-index" "$work/index"
cp "$work/index/requirements.txt" "$work/python/"
# shellcheck source=benches/minbase-recipe.sh
. "$REPO_ROOT/benches/minbase-recipe.sh"
# The minbase recipe with python3 instead of apt, named $1, its layers written to OCI (zstd).
recipe_head() {
  minbase_recipe "$BENCH" | sed -e "s/^name = \"minbase\"/name = \"$1\"/" -e 's/^packages = \["apt"\]/packages = ["python3"]/'
  printf '\n[python]\nindex = "file://%s/index/simple"\n\n[oci]\nlayer-compression = "zstd"\n\n[output]\nformats = ["oci"]\n' "$work"
}
recipe_head base >"$work/recipes/base.toml"
{ recipe_head py; printf '\n[[layer]]\nname = "app"\npython = { requirements = "../python/requirements.txt", venv = "/opt/app/venv" }\n'; } >"$work/recipes/py.toml"
cd "$work"
c() { "$CANDIDATE" -q --store "$1" "${@:2}"; }
c store0 lock recipes/py.toml
c store0 lock recipes/base.toml
"$REPO_ROOT/benches/extend-mirror.sh" lockfiles/py.lock "$MIRROR" >/dev/null
c store0 build recipes/base.toml --out out0 >/dev/null
python3 -m venv venv0 >/dev/null
t() { local name=$1; shift; /usr/bin/time -f "$name %e %M" -a -o times.txt "$@"; }
: >times.txt
# `venv/bin/python -m pip`, not `venv/bin/pip`: the copied venv's scripts name venv0's
# interpreter in their shebang, so `venv/bin/pip` would install into venv0 once and find
# every later round's requirements already satisfied.
pip_install=(venv/bin/python -m pip install --quiet --disable-pip-version-check --no-index --find-links index/wheels --require-hashes -r python/requirements.txt)
# cold NAME BINARY: NAME_cold (the whole build) and NAME_app_layer (the python layer alone:
# from the base layer found in the cache to the app layer written), each from a fresh copy of
# the store holding the base layer.
cold() {
  rm -rf store out && cp -a store0 store
  t "$1_cold" "$2" -q --store store build recipes/py.toml --out out
  rm -rf store out && cp -a store0 store
  "$2" --store store build recipes/py.toml --out out 2>&1 >/dev/null | while IFS= read -r line; do
    case $line in
      *"Fresh layer base"*) base=$EPOCHREALTIME ;;
      *"layer app"*) printf '%s_app_layer %.3f 0\n' "$1" "$(echo "$EPOCHREALTIME - $base" | bc)" >>times.txt ;;
    esac
  done
}
for round in $(seq "$RUNS"); do
  [ -z "${OLD:-}" ] || cold old "$OLD"
  cold ours "$CANDIDATE"
  t ours_warm "$CANDIDATE" -q --store store build recipes/py.toml --out out
  rm -rf venv && cp -a venv0 venv
  t pip "${pip_install[@]}"
  rm -rf venv && cp -a venv0 venv
  t pip_no_compile "${pip_install[@]}" --no-compile
done
python3 "$REPO_ROOT/benches/medians.py" times.txt --vs ours_cold
echo "binary: $CANDIDATE; wheels: $(du -sh index/wheels | cut -f1); installed by pip: $(du -sh venv/lib | cut -f1)"
