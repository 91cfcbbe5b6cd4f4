"""Attributes `perf script` samples to the frames they run under (inclusive shares).

    perf record -F 400 --call-graph dwarf,32768 -p SERVER_PID -- sleep 8
    perf script --no-inline -F comm,ip,sym > script.txt
    python3 benches/perf_fold.py script.txt 'DefaultQueryPlanner as .*create_physical_plan' 20

Prints the share of all samples whose stack holds a frame matching the regular expression, then
the frames below it by inclusive share. Used for "where the time goes" in docs/benchmarks.md.
Stacks that DWARF unwinding could not follow to their root count in the total only, so the
shares are lower bounds.
"""

import collections
import re
import sys


def stacks(path):
    """Each sample as [thread, leaf frame, …, root frame]."""
    out, cur = [], None
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        if not line.strip():
            if cur:
                out.append(cur)
            cur = None
            continue
        if not line.startswith(("\t", " " * 8)):
            cur = [line.strip()]
            continue
        parts = line.strip().split(" ", 1)
        cur.append(re.sub(r"\+0x[0-9a-f]+$", "", parts[-1]))
    if cur:
        out.append(cur)
    return out


def main():
    samples = stacks(sys.argv[1])
    root = re.compile(sys.argv[2])
    shown = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    total = len(samples)
    under = [s for s in samples if any(root.search(f) for f in s[1:])]
    print(f"{len(under)}/{total} samples = {100 * len(under) / max(total, 1):.1f}% under /{sys.argv[2]}/")
    below = collections.Counter()
    for s in under:
        frames = s[1:]
        deepest = max(i for i, f in enumerate(frames) if root.search(f))
        for f in set(f[:150] for f in frames[:deepest]):
            below[f] += 1
    for frame, n in below.most_common(shown):
        print(f"{100 * n / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
