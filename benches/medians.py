#!/usr/bin/env python3
"""medians.py TIMES [--vs NAME] [--faster NAME] — the table the bench scripts print.

TIMES holds rows `step seconds maxrss_kb` (GNU time -f "%e %M" with a name in front), several
per step. Prints, per step in first-seen order: median, min-max, peak RSS; `--vs NAME` adds
this step's median over NAME's ("vs NAME"), `--faster NAME` NAME's median over this step's
("NAME/this"). Last line: `median NAME=SECONDS …` for the scripts' own summaries.
"""
import argparse
import statistics

parser = argparse.ArgumentParser()
parser.add_argument("times")
parser.add_argument("--vs")
parser.add_argument("--faster")
args = parser.parse_args()
rows = [line.split() for line in open(args.times) if line.strip()]
names = list(dict.fromkeys(r[0] for r in rows))
med = {n: statistics.median(float(r[1]) for r in rows if r[0] == n) for n in names}
width = max(12, *(len(n) + 2 for n in names))
header = f"{'step':<{width}}{'median s':>10}{'min-max':>16}{'peak RSS MB':>13}"
if args.vs:
    header += f"{'vs ' + args.vs:>12}"
if args.faster:
    header += f"{args.faster + '/this':>18}"
print(header)
for n in names:
    t = [float(r[1]) for r in rows if r[0] == n]
    m = [int(r[2]) for r in rows if r[0] == n]
    line = f"{n:<{width}}{med[n]:>10.2f}{min(t):>8.2f}-{max(t):<7.2f}{max(m) / 1024:>13.0f}"
    if args.vs:
        line += f"{med[n] / med[args.vs]:>11.2f}x" if args.vs in med else f"{'':>12}"
    if args.faster:
        line += f"{med[args.faster] / med[n]:>17.1f}x" if args.faster in med and med[n] >= 0.01 else f"{'':>18}"
    print(line)
print("median " + " ".join(f"{n}={med[n]:.2f}" for n in names))
