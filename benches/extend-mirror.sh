#!/bin/bash
# extend-mirror.sh LOCKFILE [MIRROR] — adds to a partial local mirror (benches/make-mirror.sh's
# mirror-signed, by default /tmp/bench/mirror-signed) the .debs a lockfile pins that its pool
# lacks. Each is downloaded from the Debian archive this machine's apt configuration names
# (benches/upstream.sh; DEBIAN_MIRROR_URL overrides it) at the lockfile's own pool path, and
# checked against the lockfile's sha256 before it is put there; a file already at that path is
# kept only if it is the pinned package. A pool file is never partial, never anything else.
# The signed index of such a mirror already lists every package of the suite; only the pool
# is partial. Exits 75 (EX_TEMPFAIL) when the archive cannot be reached, 1 on any other failure
# (an archive that answers without the file is one: curl's exit 22).
# Usage: benches/extend-mirror.sh lockfiles/server.lock
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOCK=${1:?usage: extend-mirror.sh LOCKFILE [MIRROR]}
MIRROR=${2:-/tmp/bench/mirror-signed}
SUITE=${SUITE:-bookworm}
[ -d "$MIRROR/dists" ] || { echo "no $MIRROR/dists: run benches/make-mirror.sh first" >&2; exit 1; }
. "$HERE/upstream.sh"
UPSTREAM=
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
# name, version, filename, sha256 of each locked package
awk -F' = ' '
  /^\[/ { if (p && f) print n, v, f, s; p = ($0 == "[[package]]"); n=v=f=s="" }
  /^name = /     { gsub(/"/,"",$2); n=$2 }
  /^version = /  { gsub(/"/,"",$2); v=$2 }
  /^filename = / { gsub(/"/,"",$2); f=$2 }
  /^sha256 = /   { gsub(/"|sha256:/,"",$2); s=$2 }
  END { if (p && f) print n, v, f, s }' "$LOCK" > "$work/wanted"
while read -r name version filename sha256; do
  # A file already in the pool stays only if it is the pinned one (sha256sum: ~1 GB/s).
  [ -f "$MIRROR/$filename" ] && echo "$sha256  $MIRROR/$filename" | sha256sum -c --quiet - >/dev/null 2>&1 && continue
  [ -n "$UPSTREAM" ] || UPSTREAM=$(upstream_url "$SUITE")
  # Downloaded next to its place and renamed there once checked (one file system: atomic).
  mkdir -p "$MIRROR/$(dirname "$filename")"
  part=$MIRROR/$(dirname "$filename")/.$(basename "$filename").part
  curl -fsS --retry 3 -o "$part" "$UPSTREAM/$filename" || {
    rc=$?; rm -f "$part"; echo "$name $version: could not download $filename from the machine's Debian archive" >&2
    [ "$rc" = 22 ] && exit 1 || exit 75; }
  echo "$sha256  $part" | sha256sum -c --quiet - 2>/dev/null ||
    { rm -f "$part"; echo "$name $version: the downloaded $filename does not match the lockfile's sha256" >&2; exit 1; }
  mv "$part" "$MIRROR/$filename"
  echo "added $filename"
done < "$work/wanted"
