#!/usr/bin/env bash
# Reprotest (Debian's package: reprotest, disorderfs, faketime) on the example build: the
# build runs twice from copies of the project, the second under every variation that runs
# on this machine, and the candidate must be bit-identical. The artifact compared is
# SHA256SUMS: the sha256 of every file of the candidate folder (manifest, SBOMs, every format),
# so one differing byte anywhere fails the run; reprotest runs diffoscope on it when it does.
# The store is inside the build tree (`--store ./store`): each build is cold, from fixtures
# only, with no network.
#
# Variations (VARY overrides): environment, build_path, kernel (setarch), aslr, num_cpus,
# time (faketime), fileordering (disorderfs, FUSE), domain_host (hostname and domain, in a
# UTS namespace), home, locales, exec_path, timezone, umask. Not user_group: it needs spare
# user accounts made for it (`--vary=user_group.available+=USER:GROUP`).
# `fileordering` works because publishing falls back from `renameat2` flags on FUSE
# (disorderfs refuses them with EINVAL: src/dist.rs).
# Usage: benches/reprotest.sh ; BIN (default target/debug/candidate), VARY, REPROTEST_ARGS
# (e.g. `--verbosity 1` lists each variation as it is applied).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$REPO/target/debug/candidate}
VARY=${VARY:-+all,-user_group}
for tool in reprotest disorderfs faketime; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install reprotest disorderfs faketime" >&2; exit 2; }
done
SRC=$(mktemp -d /tmp/reprotest-src.XXXXXX)
trap 'rm -rf "$SRC"' EXIT
cp -a "$REPO/recipes" "$REPO/lockfiles" "$REPO/fixtures" "$SRC/"
cp "$BIN" "$SRC/candidate"
cd "$SRC"
BUILD='./candidate -q --store ./store build recipes/example.toml --out dist --offline >/dev/null && (cd dist/example_1.0_amd64 && find . -type f | LC_ALL=C sort | xargs sha256sum) > SHA256SUMS'
echo "variations: $VARY"
reprotest ${REPROTEST_ARGS:-} --vary="$VARY" --min-cpus=1 "$BUILD" SHA256SUMS
