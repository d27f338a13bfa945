#!/bin/bash
# floor.sh — what an extract-only build of a package set cannot go below, as the benchmarks
# time it: `dpkg-deb --fsys-tarfile` of every .deb (2 jobs) into one tar each, then
# `zstd -3 -T0` of their concatenation (the rootfs.tar.zst a build writes).
# Usage: benches/floor.sh MIRROR DEBS WORK — DEBS lists the .debs' paths under MIRROR, one a
# line; the tars go to WORK/floor (the caller removes it, untimed), the output to
# WORK/floor.tar.zst.
set -euo pipefail
MIRROR=$1 DEBS=$2 WORK=$3
rm -rf "$WORK/floor"; mkdir "$WORK/floor"
(cd "$MIRROR" && xargs -P2 -I{} sh -c 'dpkg-deb --fsys-tarfile "$1" > "$2/floor/$(basename "$1").tar"' sh {} "$WORK" < "$DEBS")
cat "$WORK"/floor/*.tar | zstd -3 -T0 -q -f -o "$WORK/floor.tar.zst"
