#!/bin/bash
# extend-mirror.sh LOCKFILE [MIRROR] — adds to a partial local mirror (../shared/bench's
# mirror-signed, by default /tmp/bench/mirror-signed) the .debs a lockfile pins that its pool
# lacks, downloaded with the machine's own apt configuration (`apt-get download NAME=VERSION`)
# and checked against the lockfile's sha256 before they are put at their pool path.
# The signed index of such a mirror already lists every package of the suite; only the pool
# is partial. Usage: benches/extend-mirror.sh lockfiles/boot.lock
set -euo pipefail
LOCK=${1:?usage: extend-mirror.sh LOCKFILE [MIRROR]}
MIRROR=${2:-/tmp/bench/mirror-signed}
[ -d "$MIRROR/pool" ] || { echo "no $MIRROR/pool: run ../shared/bench/make-local-mirror.sh and make-signed-mirror.sh" >&2; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
# name, version, filename, sha256 of each locked package
awk -F' = ' '
  /^\[/ { if (p && f) print n, v, f, s; p = ($0 == "[[package]]"); n=v=f=s="" }
  /^name = /     { gsub(/"/,"",$2); n=$2 }
  /^version = /  { gsub(/"/,"",$2); v=$2 }
  /^filename = / { gsub(/"/,"",$2); f=$2 }
  /^sha256 = /   { gsub(/"|sha256:/,"",$2); s=$2 }
  END { if (p && f) print n, v, f, s }' "$LOCK" | while read -r name version filename sha256; do
  [ -f "$MIRROR/$filename" ] && continue
  (cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$name=$version" >/dev/null)
  deb=$(ls "$work"/*.deb)
  echo "$sha256  $deb" | sha256sum -c --quiet - || { echo "$name $version: downloaded .deb does not match the lockfile" >&2; exit 1; }
  mkdir -p "$MIRROR/$(dirname "$filename")"
  mv "$deb" "$MIRROR/$filename"
  echo "added $filename"
done
