#!/usr/bin/env python3
"""Connection setup over several full runs of the benchmark (issue 16, item 5):
the connection-rate ratio of cases 3 and 4 against case 2 (Istio's iptables), with a
bootstrap 95 % interval, and the CPU per connection above case 1 (no mesh).

  bench/across_runs.py bench/results/full-A.json bench/results/full-B.json ...

Standard library only; reads the raw results, changes nothing. Prints a Markdown
table (docs/benchmarks.md, "Connection setup across runs").

How the interval is made: every repetition of a run measured cases 1 to 5 one after
the other, so a repetition gives one ratio per case (its rate over case 2's rate in
the same repetition); pairing them this way cancels the drift of a shared machine
between repetitions. The figure is the median of all the repetitions' ratios of all
the runs; the interval resamples the runs (with replacement) and, inside each drawn
run, its repetitions, 10,000 times, and takes the 2.5th and 97.5th percentiles of
the resampled medians. The seed is fixed, so the same files print the same table.
"""

import json
import random
import statistics
import sys

FIGURE = "conn_rate"
BASELINE = 2
NO_MESH = 1
CASES = (3, 4, 5)
DRAWS = 10_000
SEED = 16


def per_repetition(run):
    """{rep: {case: sample}} of the run's connection-rate samples."""
    reps = {}
    for s in run["samples"]:
        if s["figure"] == FIGURE:
            reps.setdefault(s["rep"], {})[s["case"]] = s
    return reps


def ratios(run, case):
    """One ratio per repetition: case's rate over case 2's rate in that repetition."""
    out = []
    for rep in per_repetition(run).values():
        if case in rep and BASELINE in rep and rep[BASELINE]["value"] > 0:
            out.append(rep[case]["value"] / rep[BASELINE]["value"])
    return out


def cpu_us_per_conn(sample):
    return sample["cpu"]["cgroup_cpu_usec"] / sample["ops"] if sample["ops"] else None


def bootstrap(groups, rng):
    """2.5th and 97.5th percentiles of the median over two-level resamples."""
    medians = []
    for _ in range(DRAWS):
        pooled = []
        for group in rng.choices(groups, k=len(groups)):
            pooled.extend(rng.choices(group, k=len(group)))
        medians.append(statistics.median(pooled))
    medians.sort()
    return medians[int(0.025 * DRAWS)], medians[int(0.975 * DRAWS) - 1]


def main(paths):
    if not paths:
        sys.exit(__doc__)
    runs = [json.load(open(p)) for p in paths]
    rng = random.Random(SEED)
    print(f"Connection rate against case 2, {len(runs)} runs "
          f"({', '.join(r['started'] for r in runs)}):\n")
    print("| case | median ratio | bootstrap 95 % interval | per-run medians |")
    print("| --- | --- | --- | --- |")
    for case in CASES:
        groups = [ratios(r, case) for r in runs]
        if not all(groups):
            sys.exit(f"a run has no paired connection-rate samples for case {case}")
        pooled = [x for g in groups for x in g]
        low, high = bootstrap(groups, rng)
        each = " / ".join(f"{statistics.median(g):.3f}" for g in groups)
        print(f"| {case} | {statistics.median(pooled):.3f} | {low:.3f} – {high:.3f} | {each} |")
    print("\nCPU per connection (µs, median of the repetitions), and above case 1:\n")
    print("| case | " + " | ".join(f"run {i + 1}" for i in range(len(runs)))
          + " | above no mesh |")
    print("| --- |" + " --- |" * (len(runs) + 1))
    no_mesh = statistics.median(
        [c for r in runs for rep in per_repetition(r).values()
         if NO_MESH in rep for c in [cpu_us_per_conn(rep[NO_MESH])] if c is not None])
    for case in (NO_MESH, BASELINE) + CASES:
        each = [statistics.median([c for rep in per_repetition(r).values() if case in rep
                                   for c in [cpu_us_per_conn(rep[case])] if c is not None])
                for r in runs]
        above = statistics.median(each) - no_mesh
        print(f"| {case} | " + " | ".join(f"{x:.0f}" for x in each) + f" | {above:+.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
