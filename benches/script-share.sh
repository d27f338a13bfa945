# script-share.sh — sourced by the configured benches under SCRIPT_TIMES=1: one of our builds
# and one mmdebstrap run traced (exec, fork and exit events, every CPU: root and perf), the
# maintainer scripts' own time in each (benches/script-times.py: the union of the lifetimes of
# their processes), and what each tool spends besides them, from the untraced medians.

# trace OUT command...: runs the command under perf, leaves OUT.txt (`perf script`)
trace() {
  local out=$1; shift
  command -v perf >/dev/null || { echo "SCRIPT_TIMES=1 needs perf (apt-get install linux-perf)" >&2; exit 1; }
  perf record -q -o "$out.data" -e sched:sched_process_exec -e sched:sched_process_fork \
    -e sched:sched_process_exit -a -- "$@" >/dev/null 2>>log.txt
  perf script -i "$out.data" -F pid,time,event,trace > "$out.txt" 2>/dev/null
}

# script_share OURS.txt MM.txt OUR_STEP MM_STEP: prints both tools' scripts and the rest,
# taking the totals from medians.txt
script_share() {
  local ours theirs
  ours=$(python3 "$REPO/benches/script-times.py" --seconds "$1")
  theirs=$(python3 "$REPO/benches/script-times.py" --seconds "$2")
  awk -v ours="$ours" -v theirs="$theirs" -v us="$3" -v them="$4" '
    /^median /{for (i = 2; i <= NF; i++) { split($i, kv, "="); m[kv[1]] = kv[2] }}
    END { o = m[us] - ours; t = m[them] - theirs
      printf "the maintainer scripts'"'"' own time (traced runs): ours %.2f s, mmdebstrap %.2f s\n", ours, theirs
      printf "everything else (median total minus that): %s %.2f s of %.2f, %s %.2f s of %.2f: %.1fx\n", us, o, m[us], them, t, m[them], t / o }' medians.txt
}
