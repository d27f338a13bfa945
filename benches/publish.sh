#!/usr/bin/env bash
# publish.sh — the minbase candidate (benches/minbase-recipe.sh, `oci` format, signed) through a
# local docker-registry on 127.0.0.1, side by side in one interleaved run with skopeo:
#   push          candidate push into a fresh repository (every blob sent)
#   skopeo-push   skopeo copy of the same OCI layout (oci/) into a fresh repository
#   repush        candidate push of the unchanged candidate again (should send no blob)
#   pull          candidate pull into an empty folder, every blob hashed, then verified (--key)
#   skopeo-pull   skopeo copy of the image back into an OCI layout
# Each round has a fresh registry (skopeo's blob info cache would mount blobs it saw in an
# earlier round's repository). Our push also sends the candidate's own files (manifest, SBOMs, provenance) and the referrers;
# each step's requests and uploaded blobs are counted from the registry's access log.
# Needs the mirrors of benches/make-mirror.sh (default /tmp/bench, first argument) and docker-registry,
# skopeo. Usage: benches/publish.sh [BENCH] ; RUNS=5, BIN (default target/release/candidate).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH=${1:-/tmp/bench}
RUNS=${RUNS:-5}
BIN=${BIN:-$HERE/../target/release/candidate}
[ -x "$BIN" ] || { echo "build first: cargo build --release (or set BIN)" >&2; exit 1; }
BIN=$(realpath "$BIN") # the script changes directory before it runs it
[ -d "$BENCH/mirror-signed/dists" ] || { echo "no $BENCH/mirror-signed: run benches/make-mirror.sh" >&2; exit 1; }
WORK=$(mktemp -d /var/tmp/publish-bench.XXXXXX)
REGISTRY_PID=
cleanup() {
  if [ -n "$REGISTRY_PID" ]; then kill "$REGISTRY_PID" 2>/dev/null || true; wait "$REGISTRY_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
mkdir recipes
. "$HERE/minbase-recipe.sh"
minbase_recipe "$BENCH" > recipes/minbase.toml
STORE=$WORK/store
"$BIN" -q --store "$STORE" key generate --out ci >/dev/null
"$BIN" -q --store "$STORE" lock recipes/minbase.toml
"$BIN" -q --store "$STORE" build recipes/minbase.toml --format oci --sign ci.key --out dist
DIR=$(ls -d dist/minbase_*)
TAG=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"])' "$DIR/oci/index.json")
echo "candidate: $DIR, $(du -sb "$DIR" | cut -f1) bytes in $(find "$DIR" -type f | wc -l) files; image tag $TAG; $(nproc) cores"

# A fresh registry each round, for both tools: skopeo remembers where it has seen a blob (its
# blob info cache) and mounts it from there, which would make its later rounds no-op pushes.
start_registry() { # round: starts a registry with its own storage; sets HOST, REGISTRY_PID
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > registry.yml <<EOT
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $WORK/registry-$1
http:
  addr: 127.0.0.1:$port
EOT
  docker-registry serve registry.yml >> registry.log 2>&1 &
  REGISTRY_PID=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
  HOST=127.0.0.1:$port
}
stop_registry() {
  kill "$REGISTRY_PID"; wait "$REGISTRY_PID" 2>/dev/null || true; REGISTRY_PID=
  rm -rf "$WORK/registry-$1"
}
: > registry.log
: > times.tsv
: > counts.tsv
t() { # name command...: runs, appends "name seconds maxrss_kb" to times.tsv and the requests
      # and completed blob uploads it made (from the access log) to counts.tsv
  local name=$1; shift
  local before; before=$(wc -l < registry.log)
  /usr/bin/time -f "$name %e %M" -a -o times.tsv "$@" >/dev/null 2>>log.txt
  local new; new=$(tail -n +"$((before + 1))" registry.log | grep ' HTTP/1.1" ' || true)
  echo "$name $(printf '%s\n' "$new" | grep -c . || true) $(printf '%s\n' "$new" | grep -c '"PUT /v2/[^ ]*/blobs/uploads/[^ ]*digest=' || true)" >> counts.tsv
}
for i in $(seq "$RUNS"); do
  start_registry "$i"
  sync; t push "$BIN" -q --store "$STORE" push "$DIR" "$HOST/bench/candidate-$i:$TAG" --plain-http
  sync; t skopeo-push skopeo copy -q --dest-tls-verify=false "oci:$DIR/oci:$TAG" "docker://$HOST/bench/skopeo-$i:$TAG"
  sync; t repush "$BIN" -q --store "$STORE" push "$DIR" "$HOST/bench/candidate-$i:$TAG" --plain-http
  rm -rf "pulled-$i"; sync
  t pull "$BIN" -q --store "$STORE" pull "$HOST/bench/candidate-$i:$TAG" --out "pulled-$i" --key ci.pub --plain-http
  diff -r "$DIR" "pulled-$i/$(basename "$DIR")" >/dev/null || { echo "round $i: the pulled candidate differs" >&2; exit 1; }
  rm -rf "pulled-$i" "skopeo-$i"; sync
  t skopeo-pull skopeo copy -q --src-tls-verify=false "docker://$HOST/bench/skopeo-$i:$TAG" "oci:skopeo-$i:$TAG"
  rm -rf "skopeo-$i"
  stop_registry "$i"
done
python3 "$HERE/medians.py" times.tsv --vs skopeo-push
python3 - counts.tsv <<'EOT'
import collections, sys
c = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, requests, uploads = line.split()
    c[name].append((int(requests), int(uploads)))
for name, v in c.items():
    print(f"{name:14} requests per run {sorted(set(r for r, _ in v))}  blobs uploaded per run {sorted(set(u for _, u in v))}")
EOT
