#!/usr/bin/env bash
# xz-remake.sh TAR XZ — re-makes a candidate's xz output from its tar with the xz command
# alone, as an auditor would (README.md, "Archives"): `xz --list` gives each stream's offset
# and size in the tar, each piece is `xz -6 -T1 --check=crc64`, the streams are joined.
# Prints whether the result is XZ byte for byte; exits 1 if not.
set -euo pipefail
tar=${1:?usage: xz-remake.sh TAR XZ} xz=${2:?usage: xz-remake.sh TAR XZ}
out=$(mktemp); trap 'rm -f "$out"' EXIT
streams=0
# `stream  N  blocks  compressed-offset  uncompressed-offset  compressed  uncompressed …`
while IFS=$'\t' read -r _ _ _ _ offset _ size _; do
  dd if="$tar" iflag=skip_bytes,count_bytes skip="$offset" count="$size" bs=1M status=none |
    xz -6 -T1 --check=crc64 -c >> "$out"
  streams=$((streams + 1))
done < <(xz --list --robot --verbose "$xz" | grep '^stream')
if cmp -s "$out" "$xz"; then
  echo "$xz: re-made byte for byte by $(xz --version | head -1) from $streams pieces of $tar"
else
  echo "$xz: NOT what xz -6 -T1 makes of its $streams pieces" >&2
  exit 1
fi
