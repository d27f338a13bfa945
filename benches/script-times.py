#!/usr/bin/env python3
"""script-times.py PERF_SCRIPT [--top N] — where a configure run's maintainer-script time goes.

PERF_SCRIPT is `perf script -F pid,time,event,trace` of `perf record -e
sched:sched_process_exec -e sched:sched_process_fork -a` around one build without the guard
(one dpkg run, so its scripts follow one another). Prints each package's share: from the exec
of one of its maintainer scripts (`/var/lib/dpkg/info/PKG.preinst|postinst`) to the next
script's, which is the script and what dpkg does after it; then the programs those scripts ran
most, each with the script that ran it (its nearest ancestor among the scripts).
"""
import argparse
import collections
import re

parser = argparse.ArgumentParser()
parser.add_argument("perf_script")
parser.add_argument("--top", type=int, default=15)
args = parser.parse_args()

line_re = re.compile(r"^\s*(\d+)\s+([\d.]+):\s+sched:sched_process_(exec|fork):\s+(.*)$")
parent, program, execs = {}, {}, []
for line in open(args.perf_script):
    m = line_re.match(line)
    if not m:
        continue
    pid, time, event, rest = m.groups()
    if event == "fork":
        child = re.search(r"child_pid=(\d+)", rest)
        if child:
            parent[child.group(1)] = pid
    else:
        name = re.search(r"filename=(\S+)", rest).group(1)
        program[pid] = name
        execs.append((float(time), pid, name))
if not execs:
    raise SystemExit(f"no exec events in {args.perf_script}")

INFO = "/var/lib/dpkg/info/"
scripts = [(t, name[len(INFO):]) for t, _, name in execs if name.startswith(INFO)]
if not scripts:
    raise SystemExit("no maintainer script ran: was the build configured, and its layer not cached?")
end = execs[-1][0]
per_package = collections.Counter()
for (t, script), (t_next, _) in zip(scripts, scripts[1:] + [(end, None)]):
    per_package[script.rsplit(".", 1)[0]] += t_next - t
total = end - scripts[0][0]
print(f"maintainer scripts: {total:.2f} s from the first to the last exec, {len(scripts)} scripts")
print(f"{'package':<32}{'s':>7}{'share':>8}")
for package, seconds in per_package.most_common(args.top):
    print(f"{package:<32}{seconds:>7.2f}{seconds / total:>8.0%}")


def script_of(pid):
    seen = set()
    while pid in parent and pid not in seen:
        seen.add(pid)
        pid = parent[pid]
        if program.get(pid, "").startswith(INFO):
            return program[pid][len(INFO):]
    return "-"


runs = collections.Counter((name.rsplit("/", 1)[-1], script_of(pid)) for _, pid, name in execs)
print(f"\n{'program':<28}{'runs':>6}  run by")
for (name, by), n in runs.most_common(args.top):
    print(f"{name:<28}{n:>6}  {by}")
