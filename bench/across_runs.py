#!/usr/bin/env python3
"""Several full runs of the benchmark taken together (issue 16, items 3 and 5): the
connection-rate ratio of cases 3 and 4 against case 2 (Istio's iptables), with a
bootstrap 95 % interval, and the CPU per connection above case 1 (no mesh); then
cases 3 and 4 against the floor (case 5) for every latency and throughput figure
and size, with the same kind of interval.

  bench/across_runs.py bench/results/full-A.json bench/results/full-B.json ...

Standard library only; reads the raw results, changes nothing. Prints Markdown
tables (docs/benchmarks.md, "Connection setup across runs" and "Floor (case 5)").

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
FLOOR = 5
CASES = (3, 4, 5)
# The floor table's figures: (figure, label, sizes in the run's config key).
FLOOR_FIGURES = (("tcp_lat", "latency (qperf mean)", "sizes"),
                 ("lat_p50", "latency p50 (sockperf)", "sockperf_sizes"),
                 ("tcp_bw", "throughput", "sizes"))
DRAWS = 10_000
SEED = 16


def per_repetition(run, figure=FIGURE, size=None):
    """{rep: {case: sample}} of the run's samples of one figure (and size)."""
    reps = {}
    for s in run["samples"]:
        if s["figure"] == figure and (size is None or s.get("size") == size):
            reps.setdefault(s["rep"], {})[s["case"]] = s
    return reps


def ratios(run, case, baseline=BASELINE, figure=FIGURE, size=None):
    """One ratio per repetition: case's value over the baseline's in that repetition."""
    out = []
    for rep in per_repetition(run, figure, size).values():
        if case in rep and baseline in rep and rep[baseline]["value"] > 0:
            out.append(rep[case]["value"] / rep[baseline]["value"])
    return out


def size_label(size):
    return f"{size >> 10} KiB" if size >= 1024 else f"{size} B"


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
    print_floor_table(runs, rng)


def print_floor_table(runs, rng):
    """Cases 3 and 4 over case 5, paired per repetition like the connection rate.
    Below 1 is better for latency, worse for throughput."""
    print("\nAgainst the floor (case 5): median of the repetitions' ratios, bootstrap "
          "95 % interval:\n")
    print("| figure | size | 3 / 5 | 3 / 5 interval | 4 / 5 | 4 / 5 interval |")
    print("| --- | --- | ---: | --- | ---: | --- |")
    for figure, label, sizes_key in FLOOR_FIGURES:
        for size in runs[0]["config"][sizes_key]:
            cells = []
            for case in (3, 4):
                groups = [ratios(r, case, FLOOR, figure, size) for r in runs]
                if not all(groups):
                    sys.exit(f"a run has no paired {figure} {size} samples for case {case}")
                low, high = bootstrap(groups, rng)
                pooled = [x for g in groups for x in g]
                cells.append(f"{statistics.median(pooled):.3f} | {low:.3f} – {high:.3f}")
            print(f"| {label} | {size_label(size)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
