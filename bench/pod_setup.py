#!/usr/bin/env python3
"""The benchmark's pod setup figure alone (issue 16, item 4), in about two minutes
instead of the full run's twenty: the same node (bridge + host-local, meshlane's
two instances, the case pods on the bridge), the same phase as bench/run.py (one
meshlane ADD and one `iptables-restore` of Istio's rules per pod, interleaved, with
the spawn floors), nothing else (no Envoy, no traffic). Root only.

  sudo bench/pod_setup.py [--meshlane BINARY] [--pods 1000] [--json FILE]

BINARY defaults to the static binary the install image ships
(install/build-static.sh's output under $CARGO_TARGET_DIR or target/). It prints
p50/p99 of every figure over all the pods and over the last 100 (the node full), as
docs/benchmarks.md reports them. Takes the benchmark's machine-wide lock, waiting for
a running benchmark to finish; everything it creates is removed on exit.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run as bench  # noqa: E402  (bench/run.py: the phase and the profile)
from harness import report, session  # noqa: E402
from harness.node import CASES  # noqa: E402
from harness.session import log  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = ("meshlane_add_ms", "meshlane_del_ms", "iptables_restore_ms", "spawn_floor_ms",
           "meshlane_version_ms")


def default_binary():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    return os.path.join(target, "static", "x86_64-unknown-linux-musl", "release", "meshlane")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--meshlane", default=default_binary())
    p.add_argument("--pods", type=int, default=bench.PROFILES["full"]["setup_pods"])
    p.add_argument("--json", help="also write the raw figures here")
    return p.parse_args()


def main():
    args = parse_args()
    # Waits for a running benchmark, unlike a full run: this is a short measurement
    # to run between others.
    _lock = session.prepare(log, (args.meshlane,), wait=True)
    profile = dict(bench.PROFILES["full"], setup_pods=args.pods, case4_annotations={})
    run = bench.Run(argparse.Namespace(meshlane=args.meshlane, envoy=None, connrate=None),
                    profile)

    def body():
        run.node.build()
        for case in CASES:
            run.node.add_case_pods(case)
        run.pod_setup_phase()

    status, error = session.run_then_teardown(run.node, body, log)
    if status != "ok":
        log(f"POD SETUP {status.upper()}: {error}")
        return 130 if status == "interrupted" else 1
    setup = run.results["pod_setup"]
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(setup, f, indent=1)
    tail = report.FULL_NODE_TAIL
    print(f"ms over {args.pods} pods ({os.path.realpath(args.meshlane)})")
    print(f"{'':24} {'all p50':>8} {'all p99':>8} {f'last {tail} p50':>12} {f'last {tail} p99':>12}")
    for key in FIGURES:
        every, last = report.percentiles(setup[key]), report.percentiles(setup[key][-tail:])
        print(f"{key:24} {every['p50']:8.2f} {every['p99']:8.2f} {last['p50']:12.2f} "
              f"{last['p99']:12.2f}")
    return 0


if __name__ == "__main__":
    session.exit_with(main, "POD SETUP")
