#!/usr/bin/env python3
"""script-times.py PERF_SCRIPT [--top N | --seconds] — where a configure run's maintainer-script time goes.

PERF_SCRIPT is `perf script -F pid,time,event,trace` of `perf record -e
sched:sched_process_exec -e sched:sched_process_fork -e sched:sched_process_exit -a` around
one build without the guard (one dpkg run, so its scripts follow one another), ours or
mmdebstrap's. Prints the scripts' own time: the union of the lifetimes of the processes that
ran a maintainer script (`/var/lib/dpkg/info/PKG.preinst|postinst|prerm|postrm`, or a new
package's `preinst` from `/var/lib/dpkg/tmp.ci/`), from its exec
to its exit, what a script runs included and a script run inside another counted once; with
`--seconds`, only that number. Then each package's share: from the exec of one of its scripts
to the next script's, which is the script and what dpkg does after it (for our build, whose
scripts follow one another; in mmdebstrap's, unpacking falls between them); then the programs
those scripts ran most, each with the script that ran it (its nearest ancestor among them).
"""
import argparse
import collections
import re

parser = argparse.ArgumentParser()
parser.add_argument("perf_script")
parser.add_argument("--top", type=int, default=15)
parser.add_argument("--seconds", action="store_true", help="print only the scripts' own time")
args = parser.parse_args()

line_re = re.compile(r"^\s*(\d+)\s+([\d.]+):\s+sched:sched_process_(exec|fork|exit):\s+(.*)$")
INFO = "/var/lib/dpkg/info/"
TMP_CI = "/var/lib/dpkg/tmp.ci/"
parent, program, execs, exits = {}, {}, [], collections.defaultdict(list)


def script_of(pid):
    seen = set()
    while pid in parent and pid not in seen:
        seen.add(pid)
        pid = parent[pid]
        if program.get(pid, "").startswith(INFO):
            return program[pid][len(INFO):]
        if program.get(pid, "").startswith(TMP_CI):
            return "a new package's preinst"
    return "-"


last = 0.0
for line in open(args.perf_script):
    m = line_re.match(line)
    if not m:
        continue
    pid, time, event, rest = m.groups()
    last = max(last, float(time))
    if event == "fork":
        child = re.search(r"child_pid=(\d+)", rest)
        if child:
            # Until it execs, the child runs its parent's program (a PID may have run another
            # before: they wrap).
            parent[child.group(1)] = pid
            program[child.group(1)] = program.get(pid, "")
    elif event == "exit":
        exits[pid].append(float(time))
    else:
        name = re.search(r"filename=(\S+)", rest).group(1)
        # The script that ran it, found now: later, its PIDs may belong to other processes.
        execs.append((float(time), pid, name, script_of(pid)))
        program[pid] = name
if not execs:
    raise SystemExit(f"no exec events in {args.perf_script}")

scripts = [(t, name[len(INFO):]) for t, _, name, _ in execs if name.startswith(INFO)]
if not scripts:
    raise SystemExit("no maintainer script ran: was the build configured, and its layer not cached?")
end = execs[-1][0]
# The scripts' own time: each script's process from its exec to its exit (or the trace's end),
# overlapping intervals merged.
# (dpkg runs a package's preinst on its first unpack from its control archive, `tmp.ci`.)
# (A PID may be used again later in the trace: a script's exit is its PID's first exit after it.)
def exit_after(pid, t):
    return next((e for e in exits.get(pid, []) if e >= t), last)


intervals = sorted((t, exit_after(pid, t)) for t, pid, name, _ in execs if name.startswith((INFO, TMP_CI)))
own, reach = 0.0, None
for start, stop in intervals:
    if reach is None or start > reach:
        own += stop - start
        reach = stop
    elif stop > reach:
        own += stop - reach
        reach = stop
if not exits and args.seconds:
    raise SystemExit(f"no exit events in {args.perf_script}: record sched:sched_process_exit too")
if args.seconds:
    print(f"{own:.2f}")
    raise SystemExit(0)
if exits:
    print(f"maintainer scripts' own time: {own:.2f} s ({len(intervals)} scripts run)")
else:
    print("(no exit events: record sched:sched_process_exit too for the scripts' own time)")
per_package = collections.Counter()
for (t, script), (t_next, _) in zip(scripts, scripts[1:] + [(end, None)]):
    per_package[script.rsplit(".", 1)[0]] += t_next - t
total = end - scripts[0][0]
print(f"from the first script's exec to the last exec: {total:.2f} s")
print(f"{'package':<32}{'s':>7}{'share':>8}")
for package, seconds in per_package.most_common(args.top):
    print(f"{package:<32}{seconds:>7.2f}{seconds / total:>8.0%}")


runs = collections.Counter((name.rsplit("/", 1)[-1], by) for _, _, name, by in execs)
print(f"\n{'program':<28}{'runs':>6}  run by")
for (name, by), n in runs.most_common(args.top):
    print(f"{name:<28}{n:>6}  {by}")
