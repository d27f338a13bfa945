#!/bin/bash
# python-index.sh OUT [REQUIREMENT...] — a local PEP 503 simple index of real wheels for the
# Debian 12 image (CPython 3.11, glibc 2.36, x86_64), and the hash-pinned requirements file
# pip-compile --generate-hashes would write for it:
#   OUT/wheels/*.whl              what `pip download --only-binary :all:` fetched (from pip's
#                                 own configured index: no index is named here)
#   OUT/simple/NAME/index.html    one page per project, links with `#sha256=` fragments
#   OUT/requirements.txt          `name==version --hash=sha256:…` for every wheel, transitive
#                                 dependencies included
# Default set: numpy, PyYAML and requests, pinned. The wheels are downloaded once per OUT.
set -euo pipefail
OUT=${1:?usage: python-index.sh OUT [REQUIREMENT...]}
shift
[ $# -gt 0 ] || set -- numpy==2.2.6 PyYAML==6.0.2 requests==2.32.3
mkdir -p "$OUT/wheels"
if ! ls "$OUT"/wheels/*.whl >/dev/null 2>&1; then
  # The image's interpreter and platform, not the host's: every manylinux level the image's
  # glibc (2.36) accepts, so pip picks what `candidate lock` may pick.
  platforms=()
  for y in 36 35 34 33 32 31 30 29 28 27 26 25 24 23 22 21 20 19 18 17; do
    platforms+=(--platform "manylinux_2_${y}_x86_64")
  done
  python3 -m pip download --quiet --disable-pip-version-check --no-cache-dir --only-binary :all: \
    --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
    "${platforms[@]}" --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 \
    --platform manylinux1_x86_64 --platform linux_x86_64 --platform any \
    -d "$OUT/wheels" "$@"
fi
rm -rf "$OUT/simple" "$OUT/requirements.txt.new"
{
  echo "# The hash-pinned set for the image, as pip-compile --generate-hashes writes it."
  echo "# Made by benches/python-index.sh from: $*"
} >"$OUT/requirements.txt.new"
for wheel in "$OUT"/wheels/*.whl; do
  file=$(basename "$wheel")
  dist=${file%%-*}
  rest=${file#*-}
  version=${rest%%-*}
  # PEP 503 normalisation: lower case, runs of -_. become one -.
  name=$(echo "$dist" | tr 'A-Z' 'a-z' | sed -E 's/[-_.]+/-/g')
  sha=$(sha256sum "$wheel" | cut -d' ' -f1)
  mkdir -p "$OUT/simple/$name"
  page="$OUT/simple/$name/index.html"
  [ -f "$page" ] || printf '<!DOCTYPE html>\n<html><body>\n' >"$page"
  printf '<a href="../../wheels/%s#sha256=%s">%s</a><br>\n' "$file" "$sha" "$file" >>"$page"
  printf '%s==%s \\\n    --hash=sha256:%s\n' "$name" "$version" "$sha" >>"$OUT/requirements.txt.new"
done
for page in "$OUT"/simple/*/index.html; do printf '</body></html>\n' >>"$page"; done
mv "$OUT/requirements.txt.new" "$OUT/requirements.txt"
echo "$OUT: $(ls "$OUT"/wheels/*.whl | wc -l) wheels, $(du -sh "$OUT/wheels" | cut -f1)"
