#!/usr/bin/env python3
"""meshlane's benchmark (issue 5): five cases measured in one run, alternating.

Run it through scripts/bench.sh, which installs the tools, builds meshlane and the
connection-rate tool, and passes the paths:

  sudo scripts/bench.sh            the full benchmark (about 18 minutes)
  sudo scripts/bench.sh --smoke    one short repetition, as CI runs it

Cases: 1 no mesh (direct), 2 Envoy sidecars with Istio's iptables REDIRECT rules,
3 Envoy sidecars with meshlane capture and "shortPath": false, 4 the same with
"shortPath": true, 5 the same Envoys with no capture at all (the apps address their
Envoy explicitly: the floor of any capture). Every repetition runs each figure for
cases 1 to 5 in turn; the report takes medians. See docs/benchmarks.md for the method.
"""

import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import measure, report, session, sysutil  # noqa: E402
from harness.node import CASES, INSTANCES, Node, plugin_seconds  # noqa: E402
from harness.session import log  # noqa: E402
import cni_chain  # noqa: E402  (scripts/lib, on the path through harness)
from harness.sysutil import BenchError  # noqa: E402

SCHEMA = "meshlane-bench/1"

PROFILES = {
    # qperf's latency is the mean over its run; on this 2-CPU VM it swings by 1.5x
    # between runs of the same case, so many short runs beat a few long ones.
    "full": {"reps": 9, "sizes": [1, 64, 1024, 16384, 65536], "qperf_lat_seconds": 1,
             "qperf_bw_seconds": 2, "sockperf_sizes": [1024], "sockperf_seconds": 2,
             "connrate_seconds": 2, "connrate_threads": 4,
             "host_seconds": 1, "host_blocks": 2, "setup_pods": 1000, "bpf_seconds": 2,
             "envoy_concurrency": 1},
    "smoke": {"reps": 1, "sizes": [64, 1024], "qperf_lat_seconds": 1, "qperf_bw_seconds": 1,
              "sockperf_sizes": [1024], "sockperf_seconds": 1,
              "connrate_seconds": 0.5, "connrate_threads": 2, "host_seconds": 0.5,
              "host_blocks": 1, "setup_pods": 10, "bpf_seconds": 1, "envoy_concurrency": 1},
}


def parse_args():
    p = session.parser(__doc__, "one short repetition (CI)",
                       "no measurement: rewrite the report, CSV, plot (and docs) of a run")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--prefix", help="file name prefix of the results (default: by mode)")
    p.add_argument("--docs", help="also write <DOCS>/benchmarks.md and .png (full runs)")
    p.add_argument("--plot-python", help="a python with matplotlib (scripts/deps.sh's venv)")
    p.add_argument("--command", default="scripts/bench.sh",
                   help="the command line to record in the report")
    p.add_argument("--setup-pods", type=int)
    p.add_argument("--case4-annotation", action="append", default=[], metavar="KEY=VALUE",
                   help="an annotation on case 4's pods, e.g. meshlane.io/short-path=app")
    return p.parse_args()


def machine_facts(args):
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    with open("/proc/meminfo", encoding="ascii") as f:
        mem_kb = int(f.readline().split()[1])
    return {
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "cpu_model": models[0] if models else None,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "meshlane": measure.tool_version([args.meshlane, "version"]),
        "envoy": envoy_version(args.envoy),
        "qperf": measure.tool_version(["qperf", "--version"]),
        "iptables": measure.tool_version(["iptables-restore", "--version"]),
        "bpftool": measure.tool_version(["bpftool", "version"]),
    }


def envoy_version(path):
    text = measure.tool_version([path, "--version"]) or ""
    m = re.search(r"/(\d+\.\d+\.\d+)/", text)
    return f"Envoy {m.group(1)}" if m else text


class Run:
    def __init__(self, args, profile):
        self.args = args
        self.p = profile
        self.node = Node(os.path.realpath(args.meshlane), args.envoy, args.connrate, log=log)
        self.samples = []
        self.results = {}

    # --- setup --------------------------------------------------------------------

    def setup(self):
        node = self.node
        log("==> building the node (netns, bridge CNI, cgroups, bpffs)")
        node.build()
        log(f"    temp dir {node.tmp}, cgroup {node.cgroup}")
        for case in CASES:
            pods = node.add_case_pods(case, self.p["case4_annotations"] if case == 4 else None)
            log(f"    case {case} ({CASES[case]['name']}): "
                + ", ".join(f"{pod.name} {pod.ip}" for pod in pods))
        log("==> starting servers and sidecars")
        for case in CASES:
            node.start_servers(case)
            if case != 1:
                for role in ("client", "server"):
                    node.start_envoy(f"c{case}-{role}", self.p["envoy_concurrency"])
        node.start_host_servers()
        self.results["meshlane_pods"] = {inst: node.meshlane_cli(inst, "pods")[1]
                                         for inst in INSTANCES}
        self.results["path_checks"] = {case: self.path_check(case) for case in CASES}

    def path_check(self, case):
        """Proves the case's traffic takes the path it claims: in cases 2-5 every
        connection of a probe run is counted by the client sidecar's outbound
        listener(s) and by the server sidecar's inbound listener(s); in case 1 there
        is no sidecar. Raises when it does not hold: a benchmark of the wrong path
        would be worse than none."""
        node = self.node
        envoys = case != 1
        before = self.envoy_counters(case) if envoys else None
        probe = measure.case_connrate(node, case, 0.3, 1)
        check = {"probe_connections": probe["ops"], "probe_errors": probe["errors"]}
        if envoys:
            after = self.envoy_counters(case)
            out = after["client"].get("outbound_cx", 0) - before["client"].get("outbound_cx", 0)
            inb = after["server"].get("inbound_cx", 0) - before["server"].get("inbound_cx", 0)
            check.update({"client_outbound_cx": out, "server_inbound_cx": inb})
            if out < probe["ops"] or inb < probe["ops"]:
                raise BenchError(
                    f"case {case}: {probe['ops']} connections, but the client sidecar's "
                    f"outbound listeners counted {out} and the server sidecar's inbound "
                    f"ones {inb}: "
                    "the traffic does not go through both sidecars")
        if case in (3, 4):
            inst = "off" if case == 3 else "on"
            pods = self.results["meshlane_pods"][inst]
            for role in ("client", "server"):
                if f"bench/c{case}-{role}" not in pods:
                    raise BenchError(f"case {case}: meshlane did not capture c{case}-{role}: {pods}")
        check["ok"] = True
        log(f"    path check case {case}: {json.dumps(check)}")
        return check

    def envoy_counters(self, case):
        return {role: self.node.envoy_counters(f"c{case}-{role}") for role in ("client", "server")}

    # --- the alternating repetitions -------------------------------------------------

    def figures(self):
        for test in ("tcp_lat", "tcp_bw"):
            for size in self.p["sizes"]:
                yield test, size
        for size in self.p["sockperf_sizes"]:
            yield "lat_p50", size
        yield "conn_rate", None

    def measure_one(self, figure, size, case):
        if figure == "conn_rate":
            return measure.case_connrate(self.node, case, self.p["connrate_seconds"],
                                         self.p["connrate_threads"])
        if figure == "lat_p50":
            return measure.sockperf_latency(self.node, case, size, self.p["sockperf_seconds"])
        seconds = self.p["qperf_lat_seconds" if figure == "tcp_lat" else "qperf_bw_seconds"]
        return measure.qperf(self.node, case, figure, size, seconds)

    def warm_up(self):
        """One short, unrecorded pass over every case: the first connections through a
        fresh sidecar (and the first qperf run) are slower than the rest."""
        log("==> warm-up (not recorded)")
        for case in CASES:
            measure.qperf(self.node, case, "tcp_lat", 64, 1)
            measure.qperf(self.node, case, "tcp_bw", 16384, 1)
            measure.case_connrate(self.node, case, 0.5, self.p["connrate_threads"])
        for hooks in ("off", "on"):
            measure.host_connrate(self.node, hooks, 0.5, self.p["connrate_threads"])

    def repetitions(self):
        reps = self.p["reps"]
        for rep in range(reps):
            log(f"==> repetition {rep + 1}/{reps}")
            for figure, size in self.figures():
                line = []
                for case in CASES:
                    sample = self.measure_one(figure, size, case)
                    sample.update({"rep": rep, "case": case, "figure": figure, "size": size})
                    self.samples.append(sample)
                    line.append(f"{case}: {sample['value']:.1f}")
                log(f"    {figure:<9} {report.size_label(size):>6}  " + "  ".join(line)
                    + f"  {sample['unit']}")
            # The hooks' cost outside mesh pods: blocks of off/on/on/off, so a drift of
            # the machine's speed cancels out within a block; each block gives a ratio.
            for block in range(self.p["host_blocks"]):
                rates = {"on": 0.0, "off": 0.0}
                line = []
                for hooks in ("off", "on", "on", "off"):
                    sample = measure.host_connrate(self.node, hooks, self.p["host_seconds"],
                                                   self.p["connrate_threads"])
                    sample.update({"rep": rep, "case": f"host-{hooks}",
                                   "figure": "host_conn_rate", "size": None, "block": block})
                    self.samples.append(sample)
                    rates[hooks] += sample["value"]
                    line.append(f"{hooks}: {sample['value']:.0f}")
                self.results.setdefault("host_block_ratios", []).append(
                    rates["on"] / rates["off"])
                log("    host conn rate (hooks off/on/on/off)  " + "  ".join(line)
                    + f"  conn/s, on/off {rates['on'] / rates['off']:.3f}")

    # --- BPF run time ------------------------------------------------------------------

    def bpf_stats_phase(self):
        """The programs' own run time, in a phase of its own: the statistics add two
        clock reads to every program run, which the main measurements must not pay."""
        log("==> BPF run time per call (kernel BPF statistics on for this phase only)")
        node = self.node
        seconds = self.p["bpf_seconds"]
        phases = {}
        with measure.BpfStats() as stats:
            self.results["bpf_stats_method"] = stats.method
            for label, work in (
                ("case 3", lambda: self.bpf_workload(3, seconds)),
                ("case 4", lambda: self.bpf_workload(4, seconds)),
                ("host process (hooks on)", lambda: measure.host_connrate(
                    node, "on", seconds, self.p["connrate_threads"])),
            ):
                before = measure.bpf_snapshot(node)
                work()
                after = measure.bpf_snapshot(node)
                phases[label] = measure.bpf_delta(before, after)
                for inst, progs in phases[label].items():
                    busy = {name: p for name, p in progs.items() if p["run_cnt"]}
                    log(f"    {label:<24} instance {inst:<3} " + ", ".join(
                        f"{name} {p['ns_per_call']:.0f} ns x {p['run_cnt']}"
                        for name, p in sorted(busy.items())))
        self.results["bpf_stats"] = phases

    def bpf_workload(self, case, seconds):
        measure.case_connrate(self.node, case, seconds, self.p["connrate_threads"])
        measure.qperf(self.node, case, "tcp_lat", 1024, seconds)
        measure.qperf(self.node, case, "tcp_bw", 65536, seconds)

    # --- pod setup cost ------------------------------------------------------------

    def pod_setup_phase(self):
        """meshlane ADD (with the bridge's result as prevResult, as in a real chain)
        against iptables-restore of Istio's rules in a fresh netns, one of each per
        pod, interleaved. Only the timed process is timed: netns creation and the
        bridge ADD happen before."""
        n = self.p["setup_pods"]
        log(f"==> pod setup cost over {n} pods (meshlane ADD vs iptables-restore)")
        node = self.node
        chain = node.chain("on")
        entry = chain.conflist["plugins"][1]
        add_ms, del_ms, ipt_ms, floor_ms, version_ms = [], [], [], [], []
        made = []
        try:
            for i in range(n):
                pod = node.new_pod(f"setup-m{i}", 4, "plain", captured=True)
                made.append(pod)
                node.chain_add(pod)  # bridge only: the prevResult meshlane gets
                run = chain.run_plugin("ADD", entry, pod.runtime(), pod.result)
                add_ms.append(plugin_seconds(run) * 1e3)
                ipt = node.new_pod(f"setup-i{i}", 2, "plain", captured=False)
                made.append(ipt)
                ipt_ms.append(node.apply_istio_rules(ipt.netns) * 1e3)
                # Floors, timed the same way: starting any process (/bin/true), and
                # starting meshlane for a CNI VERSION call (no netns, no BPF).
                floor_ms.append(node.time_process(["/bin/true"], b"") * 1e3)
                version_env = cni_chain.plugin_env("VERSION", pod.runtime(), chain.cni_path)
                version_ms.append(node.time_process(
                    [os.path.join(chain.cni_path, "meshlane")],
                    b'{"cniVersion": "1.0.0"}', env=version_env) * 1e3)
            # Every meshlane pod must be recorded: an ADD that did nothing is no figure.
            pods = node.meshlane_cli("on", "pods")[1]
            missing = [p.name for p in made if p.name.startswith("setup-m")
                       and f"bench/{p.name}" not in pods]
            if missing:
                raise BenchError(f"meshlane has no record of {missing[:5]} after their ADD")
            for pod in made:
                if pod.name.startswith("setup-m"):
                    run = chain.run_plugin("DEL", entry, pod.runtime(), pod.result)
                    del_ms.append(plugin_seconds(run) * 1e3)
                    pod.conflist = "plain"
                    node.chain_del(pod)
        finally:
            for pod in made:
                sysutil.del_netns(os.path.basename(pod.netns))
                node.pods.pop(pod.name, None)
        self.results["pod_setup"] = {
            "pods": n,
            "meshlane_add_ms": add_ms,
            "meshlane_del_ms": del_ms,
            "iptables_restore_ms": ipt_ms,
            "spawn_floor_ms": floor_ms,
            "meshlane_version_ms": version_ms,
        }
        s = report.percentiles
        log(f"    meshlane ADD p50 {s(add_ms)['p50']:.2f} ms p99 {s(add_ms)['p99']:.2f} ms; "
            f"iptables-restore p50 {s(ipt_ms)['p50']:.2f} ms p99 {s(ipt_ms)['p99']:.2f} ms")

    def finish_checks(self):
        """After everything: the sidecars' counters and meshlane's own status."""
        self.results["envoy_counters_end"] = {
            case: self.envoy_counters(case) for case in CASES if case != 1}
        self.results["meshlane_status"] = {inst: self.node.meshlane_cli(inst, "status")[1]
                                           for inst in INSTANCES}


def write_outputs(args, data):
    os.makedirs(args.out_dir, exist_ok=True)
    base = os.path.join(args.out_dir, data["prefix"])
    with open(base + ".json", "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    report.write_csv(data, base + ".csv")
    with open(base + ".md", "w", encoding="utf-8") as f:
        f.write(report.markdown(data, image=os.path.basename(base + ".png")))
    log(f"==> results: {base}.json, {base}.csv, {base}.md")
    if args.plot_python:
        plot = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plot.py")
        done = subprocess.run([args.plot_python, plot, base + ".json", base + ".png"],
                              capture_output=True, check=False)
        if done.returncode != 0:
            raise BenchError(f"plot failed: {done.stderr.decode(errors='replace')}")
        log(f"    plot: {base}.png")
    if args.docs:
        with open(os.path.join(args.docs, "benchmarks.md"), "w", encoding="utf-8") as f:
            f.write(report.markdown(data, image="benchmarks.png",
                                    raw=os.path.relpath(base + ".json", args.docs)))
        if args.plot_python:
            shutil.copy(base + ".png", os.path.join(args.docs, "benchmarks.png"))
        log(f"    docs: {args.docs}/benchmarks.md, {args.docs}/benchmarks.png")


def report_only(args):
    """Recomputes summary and targets of a results file and writes the outputs again
    (after a change of the report or the analysis)."""
    with open(args.report_only, encoding="utf-8") as f:
        data = json.load(f)
    data["summary"] = report.summarize(data)
    data["targets"] = report.targets(data)
    write_outputs(args, data)
    log(report.console_table(data))
    return 0


def main():
    args = parse_args()
    if args.report_only:
        return report_only(args)
    if not (args.meshlane and args.envoy and args.connrate):
        raise BenchError("--meshlane, --envoy and --connrate are required")
    mode, profile = session.profile_of(PROFILES, args, ("reps", "setup_pods"))
    profile["case4_annotations"] = {}
    for item in args.case4_annotation:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BenchError(f"--case4-annotation wants KEY=VALUE, not {item!r}")
        profile["case4_annotations"][key] = value
    _lock = session.prepare(log, (args.meshlane, args.envoy, args.connrate))

    started = time.time()
    run = Run(args, profile)

    def body():
        run.setup()
        run.warm_up()
        run.repetitions()
        run.bpf_stats_phase()
        run.pod_setup_phase()
        run.finish_checks()

    status, error = session.run_then_teardown(run.node, body, log)
    finished = time.time()
    if status != "ok":
        log(f"BENCHMARK {status.upper()}: {error}")
        return 130 if status == "interrupted" else 1

    stamp = datetime.datetime.fromtimestamp(started, datetime.timezone.utc)
    data = {
        "schema": SCHEMA,
        "mode": mode,
        "prefix": args.prefix or (f"full-{stamp:%Y%m%dT%H%M%SZ}" if mode == "full" else "smoke"),
        "command": args.command,
        "started": stamp.isoformat(timespec="seconds"),
        "duration_s": round(finished - started, 1),
        "machine": machine_facts(args),
        "config": profile,
        "cases": {str(k): v for k, v in CASES.items()},
        "samples": run.samples,
        **{k: v for k, v in run.results.items()},
    }
    data["summary"] = report.summarize(data)
    data["targets"] = report.targets(data)
    write_outputs(args, data)
    log(report.console_table(data))
    log(f"==> done in {data['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    session.exit_with(main, "BENCHMARK")
