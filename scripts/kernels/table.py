#!/usr/bin/env python3
"""Prints the table of a scripts/kernels.sh run: one row per kernel and suite.

  scripts/kernels/table.py RUN_DIR [--markdown]

RUN_DIR holds one directory per kernel with `info` (key=value: release, package,
accel, and `guest` when the guest did not finish: why), `suites.tsv` (what was
to run) and, per run i of suite s, `s.i.result` ("name run status passed failed
seconds", from run-suites.sh). A suite without results did not run: the row
says so, with the guest's fate. Exit status 0 when every suite passed every run.
"""

import pathlib
import sys


def read_info(kernel_dir):
    info = {}
    path = kernel_dir / "info"
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            info[key.strip()] = value.strip()
    return info


def suite_names(kernel_dir):
    path = kernel_dir / "suites.tsv"
    if not path.exists():
        return []
    return [line.split("\t")[0] for line in path.read_text().splitlines() if line.strip()]


def runs_of(kernel_dir, suite):
    runs = []
    for path in kernel_dir.glob(f"{suite}.*.result"):
        fields = path.read_text().split()
        if len(fields) == 6 and fields[0] == suite:
            runs.append({"run": int(fields[1]), "status": fields[2], "passed": int(fields[3]),
                         "failed": int(fields[4]), "seconds": int(fields[5])})
    return sorted(runs, key=lambda r: r["run"])


def row(info, suite, runs):
    kernel = info.get("release", "?")
    package = info.get("package", "-")
    accel = info.get("accel", "?")
    if not runs:
        why = info.get("guest", "not run")
        return [kernel, package, accel, suite, "0", "NOT RUN", "-", "-", "-", why], False
    ok = sum(r["status"] == "pass" for r in runs)
    bad = [r for r in runs if r["status"] != "pass"]
    result = "pass" if not bad else f"{bad[0]['status'].upper()} (run {bad[0]['run']})"
    passed = "/".join(sorted({str(r["passed"]) for r in runs}))
    failed = str(sum(r["failed"] for r in runs))
    total = sum(r["seconds"] for r in runs)
    longest = max(r["seconds"] for r in runs)
    time = f"{total}s" if len(runs) == 1 else f"{total}s (max {longest}s)"
    return [kernel, package, accel, suite, f"{ok}/{len(runs)}", result, passed, failed, time,
            ""], not bad


HEADER = ["kernel", "package", "accel", "suite", "runs ok", "result", "tests passed",
          "tests failed", "time", "note"]


def main():
    run_dir = pathlib.Path(sys.argv[1])
    markdown = "--markdown" in sys.argv[2:]
    rows, all_ok = [], True
    for kernel_dir in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        info = read_info(kernel_dir)
        for suite in suite_names(kernel_dir):
            cells, ok = row(info, suite, runs_of(kernel_dir, suite))
            rows.append(cells)
            all_ok = all_ok and ok
    if markdown:
        print("| " + " | ".join(HEADER) + " |")
        print("|" + "---|" * len(HEADER))
        for cells in rows:
            print("| " + " | ".join(c or " " for c in cells) + " |")
    else:
        widths = [max(len(r[i]) for r in rows + [HEADER]) for i in range(len(HEADER))]
        for cells in [HEADER] + rows:
            print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    return 0 if all_ok and rows else 1


if __name__ == "__main__":
    sys.exit(main())
