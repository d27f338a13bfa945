#!/bin/bash
# make-mirror.sh [BENCH] — the local Debian mirrors the real-archive tests (.ci/run) and the
# benches build from, made by this repository alone (BENCH defaults to /tmp/bench):
#   BENCH/mirror-signed  the archive's own InRelease and main/binary-ARCH/Packages.xz, byte for
#                        byte (so a build verifies them with the archive keyring as it would
#                        the archive), and a pool holding the minbase set: every
#                        `Priority: required` package and apt, as `candidate lock` resolves it
#                        from that index (benches/minbase-recipe.sh). benches/extend-mirror.sh
#                        downloads the set and checks each file against the lock; it adds other
#                        lockfiles' packages the same way later (the tests and benches do).
#   BENCH/mirror         a flat repository of exactly that set (the signed index's own
#                        stanzas, the same pool files hard-linked), for apt sources with
#                        [trusted=yes]: what mmdebstrap's minbase installs from in
#                        benches/debian-minbase.sh.
# The archive is the one this machine's apt configuration names for SUITE
# (benches/upstream.sh; DEBIAN_MIRROR_URL overrides it). Both mirrors are made beside their
# places and moved there whole; a pool already there is reused (extend-mirror keeps a file only
# if it is the pinned one), so a rerun downloads only what changed.
# Needs: curl, gpgv, xz, gzip, apt-ftparchive (apt-utils), the archive keyring, and a candidate
# binary (BIN; default target/release/candidate, else target/debug/candidate).
# Exits 75 (EX_TEMPFAIL) when the archive cannot be reached, 1 on any other failure (an
# archive that answers without the file is one: curl's exit 22).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BENCH=${1:-/tmp/bench}
SUITE=${SUITE:-bookworm}
ARCH=${ARCH:-amd64}
KEYRING=${KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
if [ -z "${BIN:-}" ]; then
  for BIN in "$REPO/target/release/candidate" "$REPO/target/debug/candidate"; do [ -x "$BIN" ] && break; done
fi
[ -x "$BIN" ] || { echo "no candidate binary: cargo build --release (or set BIN)" >&2; exit 1; }
BIN=$(realpath "$BIN") # it runs from the lock's folder
missing=$(for t in curl gpgv xz gzip apt-ftparchive; do command -v "$t" >/dev/null || echo "$t"; done)
[ -z "$missing" ] || { echo "make-mirror.sh: missing:" $missing >&2; exit 1; }
[ -f "$KEYRING" ] || { echo "no archive keyring at $KEYRING (debian-archive-keyring)" >&2; exit 1; }
. "$HERE/upstream.sh"
. "$HERE/minbase-recipe.sh"
. "$HERE/lockfile.sh"
UPSTREAM=$(upstream_url "$SUITE")
BENCH=$(mkdir -p "$BENCH" && cd "$BENCH" && pwd)
new=$(mktemp -d "$BENCH/.make-mirror.XXXXXX")
trap 'rm -rf "$new"' EXIT

# 1. The signed index, verbatim; Packages.xz checked against the hash the signature covers.
S=$new/mirror-signed
INDEX=main/binary-$ARCH/Packages.xz
mkdir -p "$S/dists/$SUITE/main/binary-$ARCH"
for f in InRelease "$INDEX"; do
  curl -fsS --retry 3 -o "$S/dists/$SUITE/$f" "$UPSTREAM/dists/$SUITE/$f" || {
    rc=$?; echo "cannot download dists/$SUITE/$f from $UPSTREAM (the machine's apt source; DEBIAN_MIRROR_URL overrides it)" >&2
    [ "$rc" = 22 ] && exit 1 || exit 75; }
done
gpgv --quiet --keyring "$KEYRING" --output "$new/Release" "$S/dists/$SUITE/InRelease" 2>/dev/null ||
  { echo "$SUITE's InRelease is not signed by a key in $KEYRING" >&2; exit 1; }
want=$(awk -v p="$INDEX" '/^SHA256:/ { s = 1; next } /^[^ ]/ { s = 0 } s && $3 == p { print $1 }' "$new/Release")
have=$(sha256sum "$S/dists/$SUITE/$INDEX" | cut -d' ' -f1)
[ -n "$want" ] && [ "$want" = "$have" ] ||
  { echo "$INDEX does not match the hash $SUITE's InRelease signs (the archive mid-update? run again)" >&2; exit 1; }

# 2. The minbase set: locked against that index, downloaded and checked into the pool.
[ -d "$BENCH/mirror-signed/pool" ] && cp -al "$BENCH/mirror-signed/pool" "$S/pool"
mkdir -p "$new/lock/recipes"
minbase_recipe "$BENCH" > "$new/lock/recipes/minbase.toml"
(cd "$new/lock" && CANDIDATE_MIRROR_DEBIAN="file://$S" "$BIN" -q --store "$new/lock/store" lock recipes/minbase.toml)
"$HERE/extend-mirror.sh" "$new/lock/lockfiles/minbase.lock" "$S" >/dev/null || exit $?

# 3. The flat repository of the same set.
F=$new/mirror
mkdir -p "$F"
lock_files "$new/lock/lockfiles/minbase.lock" > "$new/files"
while read -r f; do mkdir -p "$F/$(dirname "$f")"; ln "$S/$f" "$F/$f"; done < "$new/files"
xz -dc "$S/dists/$SUITE/$INDEX" | awk -v list="$new/files" '
  BEGIN { while ((getline l < list) > 0) want[l] = 1; RS = ""; ORS = "\n\n" }
  { f = ""; n = split($0, lines, "\n"); for (i = 1; i <= n; i++) if (lines[i] ~ /^Filename: /) f = substr(lines[i], 11) }
  f in want { print; delete want[f] }
  END { for (f in want) { print "not in the index: " f > "/dev/stderr"; bad = 1 } exit bad }' > "$F/Packages"
gzip -9nk "$F/Packages"
xz -k "$F/Packages"
(cd "$F" && apt-ftparchive -o APT::FTPArchive::Release::Origin=candidate-bench \
  -o APT::FTPArchive::Release::Label=candidate-bench -o "APT::FTPArchive::Release::Suite=$SUITE" \
  -o "APT::FTPArchive::Release::Codename=$SUITE" -o "APT::FTPArchive::Release::Architectures=$ARCH" \
  release . | awk '/^(MD5Sum|SHA1|SHA256|SHA512):/ { print; h = 1; next }
    h && /^ / { if ($3 ~ /^Packages(\.gz|\.xz)?$/) print; next } { h = 0; print }' > "$new/Release.flat")
mv "$new/Release.flat" "$F/Release"

# 4. Both in place, each whole: the old one renamed aside (into $new, which the trap removes)
#    and the new one renamed in, so each place is empty only between two renames.
for m in mirror-signed mirror; do
  [ -e "$BENCH/$m" ] && mv "$BENCH/$m" "$new/old-$m"
  mv "$new/$m" "$BENCH/$m"
done
echo "mirrors in $BENCH: mirror-signed (the $SUITE index verified with $(basename "$KEYRING"), $(find "$BENCH/mirror-signed/pool" -name '*.deb' | wc -l) debs pooled), mirror ($(wc -l < "$new/files") packages: the minbase set)"
