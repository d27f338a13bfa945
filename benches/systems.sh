#!/usr/bin/env bash
# Deployment benchmark for `candidate deploy` (a report, not a test). Run as root, with LXC,
# lxc-templates and busybox-static installed.
#
# Builds the ground-segment example (recipes/ground.toml) in a copy of the project, then:
#   a) deploy-to-all-ready wall time for systems of 1, 2 and 4 nodes of the example (prime1;
#      prime1 + client1; prime1 + backup1 + client1 + client2), median of RUNS deployments,
#      each undeployed after;
#   b) per extra node, on the 4-node deployment: the disk a node's own folder uses and the
#      time to make it (`create_us` in the record: writing its delta and config over the
#      one unpacked candidate), side by side with the same base container copied by
#      `lxc-copy` as a full copy and as an overlay snapshot (`-s -B overlay`).
# Environment: BENCH_DIR (default /tmp/candidate-bench), CANDIDATE (default the debug binary,
# built if missing: the times are LXC's and the kernel's, not the builder's), RUNS (5).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/candidate-bench}
RUNS=${RUNS:-5}
CANDIDATE=${CANDIDATE:-$REPO_ROOT/target/debug/candidate}
[ -x "$CANDIDATE" ] || (cd "$REPO_ROOT" && cargo build --locked)

work=$BENCH_DIR/systems
rm -rf "$work" && mkdir -p "$work"
for top in recipes lockfiles fixtures systems; do cp -a "$REPO_ROOT/$top" "$work/"; done
cd "$work"
c() { "$CANDIDATE" -q --store "$work/store" "$@"; }
c lock recipes/ground.toml
c build recipes/ground.toml --out out >/dev/null
dir=out/ground_1.0_amd64

# Systems of 1, 2 and 4 nodes: the example's roles, other [[node]] lists.
nodes() { # NAME:ROLE ...
  for n in "$@"; do printf '\n[[node]]\nname = "%s"\nrole = "%s"\n' "${n%%:*}" "${n#*:}"; done
}
roles=$(sed '/^\[\[node\]\]/,$d' systems/ground.toml)
{ echo "$roles"; nodes prime1:prime; } > systems/bench-1.toml
{ echo "$roles"; nodes prime1:prime client1:client; } > systems/bench-2.toml
{ echo "$roles"; nodes prime1:prime backup1:backup client1:client client2:client; } > systems/bench-4.toml

t() { local s e; s=$(date +%s.%N); "$@" >/dev/null || { echo "failed: $*" >&2; kill $$; }; e=$(date +%s.%N); echo "$e - $s" | bc; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
links_before=$(ip -o link | wc -l)

echo "deploy to all ready (median of $RUNS; the candidate unpacked once per deployment)"
for n in 1 2 4; do
  times=()
  for _ in $(seq "$RUNS"); do
    times+=("$(t c deploy "$dir" --system "systems/bench-$n.toml" --name "bench-$n")")
    c undeploy "bench-$n" >/dev/null
  done
  printf '  %d node(s): %6.2f s  (runs: %s)\n' "$n" "$(median "${times[@]}")" "${times[*]}"
done

c deploy "$dir" --system systems/bench-4.toml --name bench-4 >/dev/null
record=$work/store/v1/deployments/bench-4/deployment.json
lxcpath=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["lxcpath"])' "$record")
base=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["base"])' "$record")
unpack_ms=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["unpack_ms"])' "$record")
echo
echo "per node: disk of its own folder, and time to make it"
printf '  %-34s %10s %12s\n' "" "disk (KiB)" "create (ms)"
printf '  %-34s %10s %12.1f\n' "base: lxc-create -t local (once)" "$(du -sk "$lxcpath/$base" | cut -f1)" "$unpack_ms"
python3 - "$record" <<'PY' | while read -r container us; do
import json, sys
for n in json.load(open(sys.argv[1]))["nodes"]:
    print(n["container"], n["create_us"])
PY
  printf '  %-34s %10s %12.3f\n' "ours: overlay node ${container#*-}" "$(du -sk "$lxcpath/$container" | cut -f1)" "$(echo "$us / 1000" | bc -l)"
done
# The same base copied by LXC itself, as an operator without shared clones would.
for k in 1 2 3; do
  ms=$(t lxc-copy -P "$lxcpath" -n "$base" -N "fullcopy$k")
  printf '  %-34s %10s %12.1f\n' "lxc-copy full copy $k" "$(du -sk "$lxcpath/fullcopy$k" | cut -f1)" "$(echo "$ms * 1000" | bc)"
done
for k in 1 2 3; do
  ms=$(t lxc-copy -P "$lxcpath" -n "$base" -N "snapshot$k" -s -B overlay)
  printf '  %-34s %10s %12.1f\n' "lxc-copy -s -B overlay $k" "$(du -sk "$lxcpath/snapshot$k" | cut -f1)" "$(echo "$ms * 1000" | bc)"
done
c undeploy bench-4 >/dev/null
links_after=$(ip -o link | wc -l)
[ "$links_before" = "$links_after" ] || { echo "links before/after differ: $links_before/$links_after" >&2; exit 1; }
