#!/usr/bin/env bash
# Seeds each target's corpus (fuzz/corpus/TARGET, ignored by git) from the repository's
# fixtures and test data, so that the fuzzer starts from inputs that reach deep into each
# parser. Idempotent: a seed is named by its content's sha256, as libFuzzer names what it
# finds. Uses coreutils, ar (binutils), gzip, xz, zstd and bzip2; seeds whose tool is
# missing are left out with a warning (the corpus is only smaller).
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=fuzz/corpus
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# seed TARGET [MODE-BYTE-IN-OCTAL]: stdin becomes one seed, after the mode byte if given (the
# targets that take one: `channel`, `decompress`).
seed() {
  local dir=$corpus/$1 tmp=$scratch/seed name
  mkdir -p "$dir"
  { if [ $# -gt 1 ]; then printf "\\$2"; fi; cat; } >"$tmp"
  name=$(sha256sum <"$tmp" | cut -c1-64)
  mv "$tmp" "$dir/$name"
}
have() {
  command -v "$1" >/dev/null && return 0
  echo "seed.sh: \`$1\` is missing; leaving out the seeds that need it" >&2
  return 1
}

apt=fixtures/apt/archive
debs=$(find "$apt/pool" -name '*.deb' | sort)

for deb in $debs; do
  seed deb <"$deb"
  seed deb_unpack <"$deb"
done
# The members of each package: compressed streams for `decompress` (mode byte by the
# member's name, as `fuzz_targets/decompress.rs` reads it), and the tars inside for `tar`.
if have ar; then
  for deb in $debs; do
    for member in $(ar t "$deb"); do
      case $member in
        *.tar.gz) mode=1 decode="gzip -dc" ;;
        *.tar.xz) mode=2 decode="xz -dc" ;;
        *.tar.zst) mode=3 decode="zstd -dcq" ;;
        *.tar) mode=5 decode=cat ;;
        *) continue ;;
      esac
      ar p "$deb" "$member" | seed decompress "$mode"
      ar p "$deb" "$member" | $decode | seed tar
    done
  done
fi
for tar in fixtures/hostile/*.tar; do seed tar <"$tar"; done
gzip -dc fixtures/example/app.tar.gz | seed tar
xz -dc fixtures/example/tools.tar.xz | seed tar
# Truncated on purpose: gzip fails at its end, the tar inside is cut short.
gzip -dc fixtures/hostile/truncated.tar.gz 2>/dev/null | head -c 65536 | seed tar || true

for packages in "$apt"/dists/stable/main/binary-*/Packages; do
  seed packages <"$packages"
  seed deb822 <"$packages"
  seed decompress 0 <"$packages.gz"
  seed decompress 1 <"$packages.gz"
  seed decompress 0 <"$packages.xz"
  seed decompress 2 <"$packages.xz"
done
seed decompress 0 <fixtures/example/app.tar.gz
seed decompress 0 <fixtures/example/tools.tar.xz
have zstd && zstd -qc fixtures/example/etc/os-release | seed decompress 0
have bzip2 && bzip2 -c "$apt/dists/stable/main/binary-i386/Packages" | seed decompress 4

seed inrelease <"$apt/dists/stable/InRelease"
seed inrelease <"$apt/dists/stable/Release"
seed deb822 <"$apt/dists/stable/Release"

for recipe in recipes/*.toml; do seed recipe <"$recipe"; done
for lockfile in lockfiles/*.lock; do seed lockfile <"$lockfile"; done
seed manifest <tests/data/example.manifest.json

# Statements as payloads (the `statement` target signs its input), and as envelopes with a
# signature of the right length that no key made (`dsse`, and `channel` mode 0).
envelope() { # PAYLOAD-FILE
  printf '{"payload":"%s","payloadType":"application/vnd.in-toto+json","signatures":[{"keyid":"","sig":"%s"}]}' \
    "$(base64 -w0 <"$1")" "$(head -c 64 /dev/zero | base64 -w0)"
}
seed statement <tests/data/example.provenance.json
envelope tests/data/example.provenance.json | seed dsse
# A promotion record's statement, as `channel::statement` writes one.
cat >"$scratch/promotion.json" <<'JSON'
{"_type":"https://in-toto.io/Statement/v1","predicate":{"candidate":"sha256:5d2a6c2a50dbf6bd0ec02c7a8d8f2b5d6d2c2f0b1a8e8d2b3c4d5e6f708192a3","channel":"nightly","expires":null,"name":"example","note":null,"previous":null,"sequence":1,"time":"2026-01-01T00:00:00Z","timestamp":1767225600,"version":"1.0"},"predicateType":"urn:candidate:promotion:v1","subject":[{"digest":{"sha256":"5d2a6c2a50dbf6bd0ec02c7a8d8f2b5d6d2c2f0b1a8e8d2b3c4d5e6f708192a3"},"name":"manifest.json"}]}
JSON
seed channel 1 <"$scratch/promotion.json"
envelope "$scratch/promotion.json" | seed channel 0
seed statement <"$scratch/promotion.json"

# Python: a small wheel made the way wheel builders make them (RECORD with sha256 and sizes),
# its texts for the direct modes, and the files that pin wheels.
if have python3; then
  python3 - "$scratch" <<'PY'
import base64, hashlib, sys, zipfile
out = sys.argv[1]
files = {
    "demo/__init__.py": b"print('hello')\n",
    "demo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Dist: idna (>=2.5); python_version >= '3.8'\n\nA demo.\n",
    "demo-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: seed\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    "demo-1.0.dist-info/entry_points.txt": b"[console_scripts]\ndemo = demo:main\n",
}
def row(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}\n"
record = "".join(row(n, d) for n, d in files.items()) + "demo-1.0.dist-info/RECORD,,\n"
files["demo-1.0.dist-info/RECORD"] = record.encode()
with zipfile.ZipFile(f"{out}/demo-1.0-py3-none-any.whl", "w", zipfile.ZIP_DEFLATED) as z:
    for name, data in files.items():
        z.writestr(name, data)
for name, data in files.items():
    open(f"{out}/{name.rsplit('/', 1)[-1]}", "wb").write(data)
PY
  seed wheel 0 <"$scratch/demo-1.0-py3-none-any.whl"
  seed wheel 1 <"$scratch/RECORD"
  seed wheel 2 <"$scratch/METADATA"
  seed wheel 3 <"$scratch/entry_points.txt"
  seed wheel 4 <"$scratch/WHEEL"
  printf 'demo-1.0-1build-py2.py3-none-any.whl' | seed wheel 5
fi
sha=5d2a6c2a50dbf6bd0ec02c7a8d8f2b5d6d2c2f0b1a8e8d2b3c4d5e6f708192a3
seed python_requirements 0 <<REQ
# pip-compile --generate-hashes
idna==3.7 \\
    --hash=sha256:$sha
requests[socks]==2.32.3 ; python_version >= "3.8" and sys_platform == "linux" \\
    --hash=sha256:$sha
REQ
seed python_requirements 1 <<TOML
lock-version = "1.0"
environments = ["sys_platform == 'linux'"]
requires-python = ">=3.11"
created-by = "seed"

[[packages]]
name = "idna"
version = "3.7"
marker = "python_version >= '3.8'"

[[packages.wheels]]
name = "idna-3.7-py3-none-any.whl"
url = "https://files.invalid/idna-3.7-py3-none-any.whl"
size = 66836
hashes = { sha256 = "$sha" }
TOML
# Index pages (PEP 503 HTML, even mode byte; PEP 691 JSON, odd).
seed python_index 0 <<HTML
<!DOCTYPE html><html><head><base href="https://files.invalid/"></head><body>
<a href="../packages/idna-3.7-py3-none-any.whl#sha256=$sha" data-requires-python="&gt;=3.5">idna-3.7-py3-none-any.whl</a>
<a href='idna-3.6.tar.gz' data-yanked="">idna-3.6.tar.gz</a>
</body></html>
HTML
seed python_index 1 <<JSON
{"meta":{"api-version":"1.1"},"name":"idna","files":[{"filename":"idna-3.7-py3-none-any.whl","url":"../../packages/idna-3.7-py3-none-any.whl","hashes":{"sha256":"$sha"},"requires-python":">=3.5","yanked":false}]}
JSON

for dir in "$corpus"/*/; do
  printf '%-12s %3d seeds\n' "$(basename "$dir")" "$(find "$dir" -type f | wc -l)"
done
