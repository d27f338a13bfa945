#!/usr/bin/env bash
# Large-input benchmark for `candidate build` (a report, not a test).
#
# What it measures, interleaved over RUNS rounds, each command under GNU
# `/usr/bin/time -f '%e %M'` (wall seconds, peak RSS in KB):
#   a) baseline: tar --sort=name ... | zstd -3 -T0, then `openssl dgst -sha256`
#      of the archive -- roughly the least work any rootfs.tar.zst builder does;
#   b) candidate cold build: empty store and output dir, then
#      `candidate --store S build recipes/large.toml --out O --quiet`;
#   c) candidate warm no-op rebuild: the same command again, same store and out.
# The input is one layer copying a generated tree of FILES files totalling about
# BYTES bytes (~100 dirs x 25 subdirs; half random bytes, half word-like text,
# sizes ~200 B..60 KB scaled so the total is exactly BYTES). The tree is made
# deterministically (fixed seed) and reused while its stamp file matches.
#
# Targets checked (PASS/FAIL is printed; the script exits 0 either way):
#   cold median <= 1.5 x baseline median; warm median < 0.3 s;
#   candidate peak RSS < 200 MB (cold and warm runs).
# The table also goes to $BENCH_DIR/results.md; per-run logs to $BENCH_DIR/logs/.
#
# Run from anywhere:
#   benches/large-input.sh                                  # 50000 files, 1 GB, 3 rounds
#   FILES=2000 BYTES=50000000 RUNS=1 benches/large-input.sh # quick smoke run
# Environment: BENCH_DIR (default /tmp/candidate-bench), CANDIDATE (default
# <repo>/target/release/candidate, built with `cargo build --release --locked`
# if missing), FILES (50000), BYTES (1000000000), RUNS (3).
# Needs bash, python3, GNU tar, zstd, openssl, sha256sum and GNU time.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/candidate-bench}
FILES=${FILES:-50000}
BYTES=${BYTES:-1000000000}
RUNS=${RUNS:-3}
EPOCH=1700000000
GEN_VERSION=1 # bump when the generator below changes, to invalidate cached trees

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

for v in FILES BYTES RUNS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done
for tool in python3 tar zstd openssl sha256sum; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
[[ -x /usr/bin/time ]] || die "GNU time not found at /usr/bin/time (apt-get install time)"

# --- the binary ----------------------------------------------------------------
if [[ -z ${CANDIDATE:-} ]]; then
    CANDIDATE=$REPO_ROOT/target/release/candidate
    if [[ ! -x $CANDIDATE ]]; then
        log "building $CANDIDATE"
        (cd "$REPO_ROOT" && cargo build --release --locked)
    fi
fi
[[ -x $CANDIDATE ]] || die "candidate binary not found or not executable: $CANDIDATE"
CANDIDATE=$(cd "$(dirname "$CANDIDATE")" && pwd)/$(basename "$CANDIDATE")

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
TREE=$BENCH_DIR/tree
STAMP=$BENCH_DIR/tree.stamp # outside the tree, so it is not archived
RECIPE=$BENCH_DIR/recipes/large.toml
LOCKFILE=$BENCH_DIR/lockfiles/large.lock
LOG_DIR=$BENCH_DIR/logs
RESULTS=$BENCH_DIR/results.md

# --- the input tree ------------------------------------------------------------
stamp_text="generator=$GEN_VERSION files=$FILES bytes=$BYTES"
if [[ -d $TREE && -f $STAMP && $(<"$STAMP") == "$stamp_text" ]]; then
    log "reusing $TREE ($stamp_text)"
else
    log "generating $TREE ($stamp_text)"
    rm -rf "$TREE" "$TREE.tmp" "$STAMP"
    python3 - "$TREE.tmp" "$FILES" "$BYTES" <<'PY'
import os
import random
import sys

root, nfiles, nbytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
NDIR, NSUB = 100, 25
NLEAF = NDIR * NSUB
rng = random.Random(20240601)  # fixed seed; only integer / IEEE-exact float ops below

# Sizes: 200 + 59800*u^2 (skewed towards small files), then scaled so the sum is
# exactly nbytes (the defaults give a mean of ~20 KB, so the range stays ~200 B..60 KB).
raw = [200 + (59800 * r * r >> 32) for r in (rng.getrandbits(16) for _ in range(nfiles))]
total = sum(raw)
sizes = [x * nbytes // total for x in raw]
for i in range(nbytes - sum(sizes)):  # floor remainder, < nfiles
    sizes[i] += 1
assert sum(sizes) == nbytes

# File i lives in leaf dir i % NLEAF; the kind alternates within each leaf dir,
# so exactly half (+-1) of the files are random bytes and half text.
kinds = [(i + i // NLEAF) % 2 for i in range(nfiles)]  # 0 = binary, 1 = text

# Word-like text: a fixed vocabulary with Zipf-ish frequencies, 12 words a line.
# Text files are slices of one pool; the pool is large (up to 64 MiB) so that
# compressors with big windows do not find long cross-file repeats.
letters = "etaoinshrdlucmfwypvbgkqjxz"
vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))) for _ in range(5000)]
cum, acc = [], 0.0
for rank in range(len(vocab)):
    acc += 1.0 / (rank + 1)
    cum.append(acc)
text_bytes = sum(s for s, k in zip(sizes, kinds) if k)
pool_len = max(1 << 20, min(64 << 20, text_bytes))
chunks, have = [], 0
while have < pool_len + 1:
    words = rng.choices(vocab, cum_weights=cum, k=120_000)
    chunk = "\n".join(" ".join(words[j:j + 12]) for j in range(0, len(words), 12)) + "\n"
    chunks.append(chunk.encode())
    have += len(chunks[-1])
pool = b"".join(chunks)[:pool_len]

for d in range(NDIR):
    for s in range(NSUB):
        os.makedirs(os.path.join(root, f"d{d:03}", f"s{s:02}"), exist_ok=True)
for i, (size, kind) in enumerate(zip(sizes, kinds)):
    leaf = i % NLEAF
    name = f"d{leaf // NSUB:03}/s{leaf % NSUB:02}/f{i:06}.{'txt' if kind else 'bin'}"
    if kind:
        off = rng.randrange(pool_len)
        data = pool[off:off + size]
        while len(data) < size:  # wrap around the pool
            data += pool[:size - len(data)]
    else:
        data = rng.randbytes(size)
    path = os.path.join(root, name)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)
for dirpath, _, _ in os.walk(root):
    os.chmod(dirpath, 0o755)
PY
    mv "$TREE.tmp" "$TREE"
    printf '%s\n' "$stamp_text" >"$STAMP"
fi

# --- recipe and lock -----------------------------------------------------------
mkdir -p "$BENCH_DIR/recipes" "$LOG_DIR"
rm -f "$LOG_DIR"/*
cat >"$RECIPE" <<EOF
[image]
name = "large"
version = "1"
architecture = "amd64"
os = "debian"
release = "bookworm"
description = "benchmark input: $FILES generated files, $BYTES bytes"
source-date-epoch = $EPOCH

[[layer]]
name = "data"
files = [{ from = "$TREE", to = "/data" }]

[output]
formats = ["rootfs.tar.zst"]
EOF

log "candidate lock $RECIPE"
/usr/bin/time -f '%e %M' -o "$LOG_DIR/lock.time" \
    "$CANDIDATE" --store "$BENCH_DIR/store" lock "$RECIPE" \
    >"$LOG_DIR/lock.stdout" 2>"$LOG_DIR/lock.stderr" ||
    { cat "$LOG_DIR/lock.stderr" >&2; die "candidate lock failed (logs in $LOG_DIR)"; }
[[ -f $LOCKFILE ]] ||
    log "warning: lockfile not at $LOCKFILE, where CLI.md says it should be"
read -r lock_wall lock_rss < <(tail -n 1 "$LOG_DIR/lock.time")

# --- measurements --------------------------------------------------------------
# measure CONFIG ROUND CMD...: run CMD under GNU time, append "wall rss_kb" to
# $LOG_DIR/CONFIG.samples; a failing command aborts the benchmark.
measure() {
    local config=$1 round=$2 base
    shift 2
    base=$LOG_DIR/$config-$round
    if ! /usr/bin/time -f '%e %M' -o "$base.time" "$@" >"$base.stdout" 2>"$base.stderr"; then
        cat "$base.stderr" >&2
        die "$config (round $round) failed: $* (logs in $LOG_DIR)"
    fi
    tail -n 1 "$base.time" >>"$LOG_DIR/$config.samples"
}

BASE_OUT=$BENCH_DIR/baseline/large.tar.zst
# shellcheck disable=SC2016 # expanded by the inner bash
BASELINE_SCRIPT='set -o pipefail
tar --sort=name --mtime=@'$EPOCH' --owner=0 --group=0 --numeric-owner -C "$1" -c . |
    zstd -3 -T0 -q -o "$2" -f && openssl dgst -sha256 "$2"'
STORE=$BENCH_DIR/build/store
OUT=$BENCH_DIR/build/out
OUR_OUT=$OUT/large_1_amd64/rootfs.tar.zst
mkdir -p "$(dirname "$BASE_OUT")"

log "warming the page cache"
tar -C "$TREE" -cf - . | cat >/dev/null

our_digests=()
for ((round = 1; round <= RUNS; round++)); do
    log "round $round/$RUNS: baseline"
    measure baseline "$round" bash -c "$BASELINE_SCRIPT" _ "$TREE" "$BASE_OUT"

    log "round $round/$RUNS: candidate cold build"
    rm -rf "$STORE" "$OUT"
    measure cold "$round" "$CANDIDATE" --store "$STORE" build "$RECIPE" --out "$OUT" --quiet
    [[ -f $OUR_OUT ]] || die "build succeeded but $OUR_OUT is missing (CLI.md: DIR/NAME_VERSION_ARCH/)"
    our_digests+=("$(sha256sum "$OUR_OUT" | cut -d' ' -f1)")

    log "round $round/$RUNS: candidate warm rebuild"
    measure warm "$round" "$CANDIDATE" --store "$STORE" build "$RECIPE" --out "$OUT" --quiet
    our_digests+=("$(sha256sum "$OUR_OUT" | cut -d' ' -f1)")
done

# --- report --------------------------------------------------------------------
# stats CONFIG -> "median min max peak_rss_kb"
stats() {
    awk '{ print $1, $2 }' "$LOG_DIR/$1.samples" | sort -n | awk '
        { w[NR] = $1; if ($2 > rss) rss = $2 }
        END {
            med = (NR % 2) ? w[(NR + 1) / 2] : (w[NR / 2] + w[NR / 2 + 1]) / 2
            printf "%.2f %.2f %.2f %d\n", med, w[1], w[NR], rss
        }'
}
read -r b_med b_min b_max b_rss < <(stats baseline)
read -r c_med c_min c_max c_rss < <(stats cold)
read -r w_med w_min w_max w_rss < <(stats warm)

mb() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb * 1024 / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
verdict() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo FAIL; fi; }

peak_kb=$((c_rss > w_rss ? c_rss : w_rss))
peak_mb=$(mb "$peak_kb")
cold_ratio=$(ratio "$c_med" "$b_med")
base_digest=$(awk '{ print $NF }' "$LOG_DIR/baseline-$RUNS.stdout")
our_digest=${our_digests[0]}
reproducible=yes
for d in "${our_digests[@]}"; do [[ $d == "$our_digest" ]] || reproducible=no; done
candidate_id=$(head -n 1 "$LOG_DIR/cold-1.stdout")
c_verdict=$(verdict "$c_med <= 1.5 * $b_med")
w_verdict=$(verdict "$w_med < 0.3")
r_verdict=$(verdict "$peak_kb * 1024 < 200e6")

{
    echo "# candidate large-input benchmark"
    echo
    echo "$FILES files, $BYTES bytes, $RUNS round(s); $(nproc) CPUs, $(uname -sr);" \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ); candidate: $CANDIDATE"
    echo
    echo "| configuration | median wall s | min-max s | peak RSS MB | vs baseline |"
    echo "|---|---:|---:|---:|---:|"
    echo "| baseline: tar \\| zstd -3 -T0 + sha256 | $b_med | $b_min-$b_max | $(mb "$b_rss") | 1.00x |"
    echo "| candidate cold build | $c_med | $c_min-$c_max | $(mb "$c_rss") | $cold_ratio |"
    echo "| candidate warm no-op rebuild | $w_med | $w_min-$w_max | $(mb "$w_rss") | $(ratio "$w_med" "$b_med") |"
    echo
    echo "| target | measured | result |"
    echo "|---|---:|---|"
    echo "| cold <= 1.5x baseline | $cold_ratio | $c_verdict |"
    echo "| warm < 0.3 s | $w_med s | $w_verdict |"
    echo "| candidate peak RSS < 200 MB | $peak_mb MB | $r_verdict |"
    echo
    echo "Outputs (for information):"
    echo
    echo "- baseline \`$BASE_OUT\`: $(stat -c %s "$BASE_OUT") bytes, sha256 $base_digest"
    echo "- candidate \`$OUR_OUT\`: $(stat -c %s "$OUR_OUT") bytes, sha256 $our_digest" \
        "(identical across all cold and warm runs: $reproducible)"
    echo "- candidate id: ${candidate_id:-<none printed>}"
    echo "- \`candidate lock\` (once, not a target): $lock_wall s, $(mb "$lock_rss") MB"
} | tee "$RESULTS"
log "results written to $RESULTS"
