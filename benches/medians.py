#!/usr/bin/env python3
"""medians.py TIMES [--vs NAME] [--faster NAME [--cores N]] — the table the bench scripts print.

TIMES holds rows `step seconds maxrss_kb [user_s sys_s]` (GNU time -f "%e %M" or
"%e %M %U %S" with a name in front), several per step. Prints, per step in first-seen order:
median, min-max, peak RSS, and where the rows have them the median CPU seconds (user + sys,
the step's processes together) and how many cores that kept busy on average (CPU / wall);
`--vs NAME` adds this step's median over NAME's ("vs NAME"), `--faster NAME` NAME's median
over this step's ("NAME/this"). With `--cores N` too, the most that ratio can be on N cores:
NAME's median over this step's CPU seconds / N, the shortest its work can take when every
core is busy the whole time ("at most"). Last line: `median NAME=SECONDS …` and
`cpu NAME=SECONDS …` for the scripts' own summaries.
"""
import argparse
import statistics

parser = argparse.ArgumentParser()
parser.add_argument("times")
parser.add_argument("--vs")
parser.add_argument("--faster")
parser.add_argument("--cores", type=int)
args = parser.parse_args()
if args.cores is not None and not args.faster:
    parser.error("--cores bounds the --faster ratio: give --faster too")
rows = [line.split() for line in open(args.times) if line.strip()]
for r in rows:
    if len(r) not in (3, 5):
        raise SystemExit(f"{args.times}: a row must be `step seconds maxrss_kb [user_s sys_s]`, not {' '.join(r)!r}")
names = list(dict.fromkeys(r[0] for r in rows))
med = {n: statistics.median(float(r[1]) for r in rows if r[0] == n) for n in names}
cpu = {}
for n in names:
    c = [float(r[3]) + float(r[4]) for r in rows if r[0] == n and len(r) == 5]
    if c:
        cpu[n] = statistics.median(c)
width = max(12, *(len(n) + 2 for n in names))
header = f"{'step':<{width}}{'median s':>10}{'min-max':>16}{'peak RSS MB':>13}"
if cpu:
    header += f"{'CPU s':>8}{'cores':>7}"
if args.vs:
    header += f"{'vs ' + args.vs:>12}"
if args.faster:
    header += f"{args.faster + '/this':>18}"
    if args.cores:
        header += f"{'at most':>9}"
print(header)
for n in names:
    t = [float(r[1]) for r in rows if r[0] == n]
    m = [int(r[2]) for r in rows if r[0] == n]
    line = f"{n:<{width}}{med[n]:>10.2f}{min(t):>8.2f}-{max(t):<7.2f}{max(m) / 1024:>13.0f}"
    if cpu:
        line += f"{cpu[n]:>8.2f}{cpu[n] / med[n]:>7.2f}" if n in cpu and med[n] >= 0.01 else f"{'':>15}"
    if args.vs:
        line += f"{med[n] / med[args.vs]:>11.2f}x" if args.vs in med else f"{'':>12}"
    if args.faster:
        line += f"{med[args.faster] / med[n]:>17.1f}x" if args.faster in med and med[n] >= 0.01 else f"{'':>18}"
        if args.cores:
            bound = n in cpu and args.faster in med and cpu[n] >= 0.01
            line += f"{med[args.faster] / (cpu[n] / args.cores):>8.1f}x" if bound else f"{'':>9}"
    print(line)
print("median " + " ".join(f"{n}={med[n]:.2f}" for n in names))
if cpu:
    print("cpu " + " ".join(f"{n}={c:.2f}" for n, c in cpu.items()))
