#!/usr/bin/env python3
"""Where the time of a round trip goes (issue 16, item 2): per component, measured.

Builds the benchmark's node (bench/run.py's setup and path checks, the same lock
and teardown), then for each case, message size and qperf test runs qperf for a
fixed time and reads, over a window inside the run, for each component -- client
app (qperf), client Envoy, server Envoy, server app (qperf's server child):

- CPU time on a CPU (/proc/PID/task/*/schedstat, ns) split into user and kernel
  (utime, stime), time runnable but waiting for a CPU, voluntary context switches
  (wake-ups) and involuntary ones (/proc/PID/task/*/status);
- the machine's busy time (/proc/stat: the window's CPU time minus idle, which a
  tickless kernel counts exactly): busy minus the four components is "kernel,
  other" (ksoftirqd, kworkers, the idle servers and sidecars of the other cases,
  this script, anything else on the machine); how much of it lies outside the
  node's cgroup (cpu.stat), and the machine's busy time with no traffic at all
  (measured before every repetition), so that the rest can be told apart;
- TCP's counters in both pods' netns (/proc/net/netstat, snmp): segments,
  zero-window adverts and probes, segments dropped for want of receive memory,
  retransmission timeouts;
- stalls: every 10 ms, whether the server Envoy read anything (/proc/PID/io);
- in a second, traced pass of the same runs: system calls and context switches
  (`perf stat -e raw_syscalls:sys_enter,context-switches -p PID`) and for tcp_bw
  the bytes of every read and write (`perf record` of the read/write system
  calls' exits), apart so that the main pass pays no tracing;
- for cases 3 and 4, meshlane's counters (`meshlane status -o json`): messages
  and bytes handed over by the short path, switches to TCP.

Per round trip for tcp_lat (window CPU / window time x qperf's round-trip time,
which is twice its one-way latency), per MB for tcp_bw. "Unaccounted" is the
round-trip time minus the machine's busy time per round trip: the time no CPU
worked (wake-up latency, idle gaps); negative when work overlapped on both CPUs.
Cases alternate within every repetition; the report takes medians.

  sudo bench/breakdown.py --meshlane target/release/meshlane \\
      --envoy target/tools/envoy --connrate target/bench/connrate --out-dir bench/results

Two experiments change the node before measuring: --rto-min-ms N (the client
pods' routes with rto_min: how much of a case's time is retransmission timeouts)
and --spin (a SCHED_IDLE busy loop per CPU: what a wake-up onto an idle CPU costs).

Not a test: it prints numbers, asserts none. It fails (exit 1) when a path check
fails (bench/run.py's, and: case 4 handed bytes over, case 3 did not).
"""

import datetime
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run as bench_run  # noqa: E402  (the benchmark's setup and path checks)
from harness import measure, procstat, session, sysutil, tracing  # noqa: E402
from harness.node import APP_ID, INSTANCES  # noqa: E402
from harness.session import log  # noqa: E402
from harness.sysutil import BenchError  # noqa: E402

SCHEMA = "meshlane-breakdown/1"
COMPONENTS = ("client app", "client Envoy", "server Envoy", "server app")
FIGURES = (("tcp_lat", 1024), ("tcp_lat", 65536), ("tcp_bw", 65536))
# The window starts after qperf's connections are made and its server child forked,
# and ends before qperf stops sending. A traced run is longer by TRACE_EXTRA_S: perf
# takes a moment to attach, and perf record stops with an error when the process it
# records exits before its time is up.
LEAD_S = 0.6
TAIL_S = 0.4
TRACE_EXTRA_S = 1.0
POLL_S = 0.01
BACKGROUND_S = 2.0
PROFILES = {
    "full": {"reps": 3, "seconds": 4.0, "cases": [2, 3, 4, 5]},
    "smoke": {"reps": 1, "seconds": 2.0, "cases": [4, 5]},
}
SHORT_PATH_COUNTERS = ("short_path_redirected_messages", "short_path_redirected_bytes",
                       "short_path_backpressure", "short_path_resumed",
                       "short_path_fell_back", "short_path_peer_missing")


def parse_args():
    p = session.parser(__doc__, "one short repetition of cases 4 and 5",
                       "no measurement: write the report of an earlier run again")
    p.add_argument("--out-dir")
    p.add_argument("--seconds", type=float, help="length of each qperf run")
    p.add_argument("--cases", help="comma-separated, from 2-5 (default 2,3,4,5)")
    p.add_argument("--rto-min-ms", type=int, help="an experiment: the client pods' routes "
                   "with this rto_min (a TCP sender's first retransmission timeout)")
    p.add_argument("--spin", action="store_true", help="an experiment: a SCHED_IDLE busy "
                   "loop on every CPU, so that no CPU halts")
    return p.parse_args()


def machine_load():
    """What else the machine is doing: load averages and the busiest processes."""
    with open("/proc/loadavg", encoding="ascii") as f:
        loadavg = f.read().split()[:3]
    top = subprocess.run(["top", "-b", "-n", "1", "-w", "120"], capture_output=True,
                         env={"PATH": sysutil.CHILD_PATH}, timeout=30, check=False)
    lines = top.stdout.decode(errors="replace").splitlines()
    return {"loadavg": [float(x) for x in loadavg], "top": lines[:14]}


class Breakdown:
    def __init__(self, args, profile):
        self.p = profile
        self.bench = bench_run.Run(args, {**bench_run.PROFILES["smoke"],
                                          "case4_annotations": {}})
        self.node = self.bench.node
        self.samples = []
        self.count = 0
        self.spinners = []

    # --- one run ---------------------------------------------------------------

    def pids(self, case, client_pid):
        """The four components' pids while a qperf run is going."""
        server = self.node.pods[f"c{case}-server"]
        listener = server.processes["qperf"].pid
        deadline = time.monotonic() + 5
        while True:
            forked = procstat.children(listener)
            if len(forked) == 1:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"case {case}: qperf's server has {len(forked)} children, "
                                 "not the one serving this run")
            time.sleep(0.05)
        return {"client app": client_pid,
                "client Envoy": self.node.pods[f"c{case}-client"].processes["envoy"].pid,
                "server Envoy": server.processes["envoy"].pid,
                "server app": forked[0]}

    def counters(self, case):
        inst = {spec["case"]: inst for inst, spec in INSTANCES.items()}.get(case)
        if inst is None:
            return None
        done = sysutil.run([self.node.meshlane, "status", "-o", "json", "--bpffs-root",
                            self.node.bpffs_root(inst)], check=False)
        try:
            counters = json.loads(done.stdout)["counters"]
        except (ValueError, KeyError) as err:
            raise BenchError(f"meshlane status of instance {inst}: {done.stdout[-300:]!r} "
                             f"{done.stderr[-300:]!r}") from err
        return {key: counters.get(key, 0) for key in SHORT_PATH_COUNTERS}

    def one(self, case, test, size, traced):
        """One qperf run of `seconds`; the readings over its window."""
        node = self.node
        window = self.p["seconds"] - LEAD_S - TAIL_S
        seconds = self.p["seconds"] + (TRACE_EXTRA_S if traced else 0)
        self.count += 1
        out_log = node.log_path(f"breakdown-{self.count}.log")
        argv = measure.qperf_argv(node, case, test, size, seconds)
        proc = node.place(f"c{case}-client").popen(argv, uid=APP_ID, gid=APP_ID, log=out_log)
        tracers = {}
        try:
            time.sleep(LEAD_S)
            pids = self.pids(case, proc.pid)
            c0 = self.counters(case)
            if traced:
                for name, pid in pids.items():
                    base = os.path.join(node.tmp, f"perf-{self.count}-{name.replace(' ', '-')}")
                    tracers[name] = [tracing.SyscallCount(pid, window, base + ".stat")]
                    if test == "tcp_bw":
                        tracers[name].append(tracing.IoSizes(pid, window, base + ".data"))
            pods = {role: node.pods[f"c{case}-{role}"].netns for role in ("client", "server")}
            n0 = {role: procstat.tcp_counters(ns) for role, ns in pods.items()}
            p0 = {name: procstat.process(pid) for name, pid in pids.items()}
            m0, t0 = procstat.proc_stat(), time.monotonic()
            g0 = sysutil.read_cpu_usage_usec(node.cgroup)
            # Stalls: stretches in which the server Envoy reads nothing (a poll
            # every 10 ms costs a few ms of CPU over the window, "outside the node").
            # A traced stream also samples what the server Envoy's socket from the
            # client pod holds unread against its receive buffer (`ss`, every 0.1 s).
            held = []
            client_ip = node.pods[f"c{case}-client"].ip + ":"

            def sample_memory():
                held.extend((r, rb) for _l, peer, r, rb in procstat.socket_memory(pods["server"])
                            if peer.startswith(client_ip))

            hook = sample_memory if traced and test == "tcp_bw" else None
            stalls = procstat.progress(pids["server Envoy"], window, POLL_S, hook=hook)
            g1 = sysutil.read_cpu_usage_usec(node.cgroup)
            p1 = {name: procstat.process(pid) for name, pid in pids.items()}
            m1, t1 = procstat.proc_stat(), time.monotonic()
            n1 = {role: procstat.tcp_counters(ns) for role, ns in pods.items()}
            c1 = self.counters(case)
            traces = {name: [t.result() for t in ts] for name, ts in tracers.items()}
            status = proc.wait(timeout=seconds + 60)
        finally:
            # perf runs outside the node's cgroup: the teardown would not stop it.
            for tracer in (t for ts in tracers.values() for t in ts):
                tracer.stop()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        with open(out_log, encoding="utf-8", errors="replace") as f:
            out = f.read()
        result = measure.qperf_result(case, argv, status, out, "")
        sample = {"case": case, "test": test, "size": size, "traced": traced,
                  "value": result["value"], "unit": result["unit"], "window_s": t1 - t0,
                  "components": {name: procstat.delta(p0[name], p1[name], f"{name} ({pids[name]})")
                                 for name in pids},
                  "machine": {k: m1[k] - m0[k] for k in m0},
                  "node_cgroup_usec": g1 - g0, "stalls": stalls,
                  "tcp": {role: {k: n1[role][k] - n0[role][k] for k in n0[role]}
                          for role in pods}}
        if held:
            sample["receiver_memory"] = {"max_bytes": max(r for r, _rb in held),
                                         "max_rcvbuf": max(rb for _r, rb in held),
                                         "samples": len(held)}
        if traced:
            sample["syscalls"] = {name: ts[0] for name, ts in traces.items()}
            if test == "tcp_bw":
                sample["io"] = {name: ts[1] for name, ts in traces.items()}
        if c0 is not None:
            sample["meshlane"] = {k: c1[k] - c0[k] for k in c0}
        self.check_path(sample)
        return sample

    def check_path(self, sample):
        """The short path carries case 4's 64 KiB stream, and never case 3's."""
        moved = sample.get("meshlane", {}).get("short_path_redirected_bytes", 0)
        if sample["case"] == 3 and moved:
            raise BenchError(f"case 3 handed {moved} bytes over: its short path is not off")
        if sample["case"] == 4 and sample["test"] == "tcp_bw" and moved == 0:
            raise BenchError("case 4: the short path handed no byte over during a "
                             f"{sample['size']} B stream")

    @staticmethod
    def background(seconds=BACKGROUND_S):
        """CPUs' worth of work the machine does with every server and sidecar idle
        (kernel threads, other users of the machine): the floor under "kernel, other"."""
        m0, t0 = procstat.proc_stat(), time.monotonic()
        time.sleep(seconds)
        m1, t1 = procstat.proc_stat(), time.monotonic()
        idle = (m1["idle"] + m1["iowait"] - m0["idle"] - m0["iowait"]) / 1e9
        return os.cpu_count() - idle / (t1 - t0)

    def set_rto_min(self, ms):
        """Every route of every client pod gets rto_min (`ip route change`): how long
        a TCP sender there waits before its first retransmission (200 ms by
        default). An experiment: does a case lose its time in retransmission
        timeouts?"""
        for case in self.p["cases"]:
            name = os.path.basename(self.node.pods[f"c{case}-client"].netns)
            routes = json.loads(sysutil.run(["ip", "-j", "-n", name, "route", "show"]).stdout)
            for r in routes:
                argv = [r["dst"]]
                for key, word in (("gateway", "via"), ("dev", "dev"), ("protocol", "proto"),
                                  ("scope", "scope"), ("prefsrc", "src")):
                    if key in r:
                        argv += [word, str(r[key])]
                sysutil.run(["ip", "-n", name, "route", "change", *argv, "rto_min", f"{ms}ms"])
            log(f"    {name}: rto_min {ms} ms on {len(routes)} route(s)")

    def spin(self):
        """An experiment: one busy loop per CPU at SCHED_IDLE, so that no CPU ever
        halts (a woken task preempts the loop at once) — what is a wake-up worth when
        the CPU it lands on is not idle? The loops run in the node's own cgroup, which
        the teardown kills; the machine's busy and idle figures mean nothing then."""
        cgroup = os.path.join(self.node.cgroup, "spin")
        os.mkdir(cgroup)
        place = sysutil.Place("spin", self.node.node_netns, cgroup)
        for cpu in range(os.cpu_count()):
            self.spinners.append(place.popen(["chrt", "--idle", "0", "taskset", "-c", str(cpu),
                         "sh", "-c", "while :; do :; done"]))
        log(f"    {os.cpu_count()} SCHED_IDLE busy loops in {cgroup}")

    # --- the whole measurement -------------------------------------------------------

    def measure(self):
        self.bench.setup()
        if self.p.get("rto_min_ms"):
            self.set_rto_min(self.p["rto_min_ms"])
        if self.p.get("spin"):
            self.spin()
        log("==> warm-up (not recorded)")
        for case in self.p["cases"]:
            measure.qperf(self.node, case, "tcp_lat", 1024, 1)
            measure.qperf(self.node, case, "tcp_bw", 65536, 1)
        for rep in range(self.p["reps"]):
            log(f"==> repetition {rep + 1}/{self.p['reps']}")
            background = self.background()
            log(f"    machine busy with no traffic: {background:.3f} CPU")
            for traced in (False, True):
                for test, size in FIGURES:
                    line = []
                    for case in self.p["cases"]:
                        sample = self.one(case, test, size, traced)
                        sample["rep"] = rep
                        sample["background_cpus"] = background
                        self.samples.append(sample)
                        line.append(f"{case}: {sample['value']:.1f}")
                    log(f"    {'traced ' if traced else ''}{test} {size:>6} B  "
                        + "  ".join(line) + f"  {sample['unit']}")


# --- the report -------------------------------------------------------------------------

def per_unit(sample):
    """What one round trip (tcp_lat) or one MB (tcp_bw) costs, from one sample."""
    window_us = sample["window_s"] * 1e6
    if sample["test"] == "tcp_lat":
        unit_us = 2 * sample["value"]  # qperf reports half a round trip
        units = window_us / unit_us
    else:
        unit_us = None
        units = sample["value"] * sample["window_s"]  # MB moved in the window
    out = {}
    busy = 0.0
    for name, c in sample["components"].items():
        out[f"{name} cpu"] = c["run_ns"] / 1e3 / units
        out[f"{name} user"] = c["user_ns"] / 1e3 / units
        out[f"{name} sys"] = c["sys_ns"] / 1e3 / units
        out[f"{name} wait"] = c["wait_ns"] / 1e3 / units
        out[f"{name} wakeups"] = c["voluntary"] / units
        out[f"{name} preempted"] = c["involuntary"] / units
        busy += c["run_ns"] / 1e3
    m = sample["machine"]
    # Idle time is exact on a tickless kernel; user and system are sampled at each
    # tick: busy is the window's CPU time minus idle.
    machine_busy = window_us * os.cpu_count() - (m["idle"] + m["iowait"]) / 1e3
    out["kernel, other cpu"] = (machine_busy - busy) / units
    out["softirq (ticks)"] = m["softirq"] / 1e3 / units
    # Everything of the benchmark's node (the four components, the idle servers and
    # sidecars of the other cases, softirq in their context) against the machine.
    out["outside the node"] = (machine_busy - sample["node_cgroup_usec"]) / units
    out["machine busy"] = machine_busy / units
    out["background"] = sample["background_cpus"] * window_us / units
    out["idle share"] = (m["idle"] + m["iowait"]) / 1e3 / (window_us * os.cpu_count())
    out["steal share"] = m["steal"] / 1e3 / (window_us * os.cpu_count())
    stalls = sample["stalls"]
    out["stalled share"] = stalls["no_progress"] / stalls["intervals"]
    out["longest stall ms"] = stalls["longest_s"] * 1e3
    if unit_us is None and stalls["no_progress"] < stalls["intervals"]:
        out["MB/s moving"] = sample["value"] / (1 - out["stalled share"])
    for role, counters in sample.get("tcp", {}).items():
        for key, value in counters.items():
            out[f"{role} {key.split(':')[1]}"] = value / units
    if unit_us is not None:
        out["round trip"] = unit_us
        out["unaccounted"] = unit_us - machine_busy / units
    else:
        out["MB/s"] = sample["value"]
    for name, c in sample.get("syscalls", {}).items():
        out[f"{name} syscalls"] = c["syscalls"] / units
    for name, io in sample.get("io", {}).items():
        for kind in ("read", "write"):
            e = io[kind]
            out[f"{name} {kind}s"] = e["calls"] / units
            out[f"{name} bytes/{kind}"] = e["bytes"] / e["with_data"] if e["with_data"] else 0
            out[f"{name} {kind} EAGAIN"] = e["eagain"] / units
    held = sample.get("receiver_memory")
    if held:
        out["receiver held KiB"] = held["max_bytes"] / 1024
        out["receiver rcvbuf KiB"] = held["max_rcvbuf"] / 1024
    ml = sample.get("meshlane")
    if ml:
        moved = ml["short_path_redirected_bytes"]
        out["handed over MB"] = moved / 1e6 / units
        out["bytes/handover"] = (moved / ml["short_path_redirected_messages"]
                                 if ml["short_path_redirected_messages"] else 0)
        switches = ml["short_path_backpressure"] + ml["short_path_fell_back"]
        out["switches to TCP"] = switches / units
    return out


def summarize(samples):
    """Medians per (test, size, case), of the untraced and the traced pass."""
    groups = {}
    for s in samples:
        key = (s["test"], s["size"], s["case"], "traced" if s["traced"] else "plain")
        groups.setdefault(key, []).append(per_unit(s))
    out = {}
    for key, rows in groups.items():
        entry = {n: statistics.median(r[n] for r in rows) for n in rows[0]}
        entry["n"] = len(rows)
        # The spread of the headline figure over the repetitions.
        head = "round trip" if key[0] == "tcp_lat" else "MB/s"
        entry["range"] = [min(r[head] for r in rows), max(r[head] for r in rows)]
        out["/".join(str(k) for k in key)] = entry
    return out


def fmt(value):
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 1 or value == 0 else f"{value:.2g}"


def table(summary, cases, test, size):
    """Markdown: one row per quantity, one column per case."""
    plain = {c: summary.get(f"{test}/{size}/{c}/plain") for c in cases}
    traced = {c: summary.get(f"{test}/{size}/{c}/traced") for c in cases}
    lat = test == "tcp_lat"
    unit = "µs per round trip" if lat else "µs CPU per MB"
    rows = [("round trip (µs)" if lat else "throughput (MB/s)", "plain",
             "round trip" if lat else "MB/s")]
    for name in COMPONENTS:
        rows.append((f"{name}: CPU ({unit})", "plain", f"{name} cpu"))
    rows += [("kernel, other: CPU", "plain", "kernel, other cpu"),
             ("of which outside the node's cgroup", "plain", "outside the node"),
             ("the machine's background (no traffic)", "plain", "background"),
             ("machine busy", "plain", "machine busy")]
    if lat:
        rows.append(("**unaccounted** (round trip − busy)", "plain", "unaccounted"))
    for name in COMPONENTS:
        rows.append((f"{name}: user / kernel", "plain", (f"{name} user", f"{name} sys")))
    for name in COMPONENTS:
        rows.append((f"{name}: waiting for a CPU", "plain", f"{name} wait"))
    for name in COMPONENTS:
        rows.append((f"{name}: wake-ups", "plain", f"{name} wakeups"))
    for name in COMPONENTS:
        rows.append((f"{name}: system calls (traced)", "traced", f"{name} syscalls"))
    if not lat:
        for name in ("client Envoy", "server Envoy"):
            rows.append((f"{name}: bytes per read / write (traced)", "traced",
                         (f"{name} bytes/read", f"{name} bytes/write")))
            rows.append((f"{name}: reads / EAGAIN reads (traced)", "traced",
                         (f"{name} reads", f"{name} read EAGAIN")))
        rows.append(("idle share of the 2 CPUs", "plain", "idle share"))
        rows.append((f"share of {POLL_S * 1e3:.0f} ms polls in which the server Envoy read "
                     "nothing / longest such stall (ms)", "plain",
                     ("stalled share", "longest stall ms")))
    for label, key in (("TCP segments out", "OutSegs"),
                       ("zero-window adverts", "TCPToZeroWindowAdv"),
                       ("zero-window probes", "TCPWinProbe"),
                       ("retransmit timeouts", "TCPTimeouts"),
                       ("segments dropped: no receive memory", "TCPRcvQDrop"),
                       ("segments dropped: zero window", "TCPZeroWindowDrop"),
                       ("retransmitted segments", "RetransSegs"),
                       ("delayed ACKs", "DelayedACKs")):
        rows.append((f"{label} (client / server pod)", "plain", (f"client {key}", f"server {key}")))
    rows.append(("short path: bytes per handover", "plain", "bytes/handover"))
    rows.append(("short path: MB handed over", "plain", "handed over MB"))
    rows.append(("short path: switches to TCP", "plain", "switches to TCP"))
    out = [f"| {test} {size} B ({unit}) | " + " | ".join(f"case {c}" for c in cases) + " |",
           "|---|" + "---:|" * len(cases)]
    for label, which, key in rows:
        cells = []
        for c in cases:
            row = (plain if which == "plain" else traced)[c]
            if row is None:
                cells.append("–")
            elif isinstance(key, tuple):
                cells.append(" / ".join(fmt(row.get(k)) for k in key))
            else:
                cells.append(fmt(row.get(key)))
        if any(cell != "–" for cell in cells):
            out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


COMPACT = {
    "tcp_lat": [("round trip, µs (min–max)", "round trip"),
                *[(f"{name}", f"{name} cpu") for name in COMPONENTS],
                ("kernel, other", "kernel, other cpu"),
                ("of it: the machine with no traffic", "background"),
                ("unaccounted (round trip − busy)", "unaccounted"),
                ("runnable, waiting for a CPU (all four)", "waits"),
                ("wake-ups (all four)", "wakeups"),
                ("system calls, both Envoys (traced)", "envoy syscalls")],
    "tcp_bw": [("MB/s (min–max)", "MB/s"),
               *[(f"{name}", f"{name} cpu") for name in COMPONENTS],
               ("kernel, other", "kernel, other cpu"),
               ("of it: the machine with no traffic", "background"),
               ("idle share of the 2 CPUs", "idle share"),
               ("10 ms polls with no byte read by the server Envoy", "stalled share"),
               ("longest such stall, ms", "longest stall ms"),
               ("MB/s outside the stalls", "MB/s moving"),
               ("wake-ups (all four)", "wakeups"),
               ("system calls, both Envoys (traced)", "envoy syscalls"),
               ("bytes per read, client / server Envoy (traced)", "envoy bytes/read"),
               ("server Envoy's socket from the client pod: most held unread / receive "
                "buffer, KiB (traced)", "receiver memory"),
               ("retransmission timeouts per GB", "rto per GB"),
               ("short path: switches to TCP per GB", "switches per GB")],
}


def compact_value(row, key, traced):
    """A cell of the compact table; some cells combine several measured values."""
    if key in ("wakeups", "waits"):
        field = {"wakeups": "wakeups", "waits": "wait"}[key]
        return fmt(sum(row[f"{n} {field}"] for n in COMPONENTS))
    if key == "envoy syscalls":
        return fmt(sum(traced.get(f"{n} syscalls", 0) for n in ("client Envoy", "server Envoy")))
    if key == "envoy bytes/read":
        return " / ".join(f"{traced.get(f'{n} bytes/read', 0) / 1024:.0f} KiB"
                          for n in ("client Envoy", "server Envoy"))
    if key == "receiver memory":
        return " / ".join(fmt(traced.get(k)) for k in ("receiver held KiB",
                                                         "receiver rcvbuf KiB"))
    if key == "rto per GB":
        return fmt(row.get("client TCPTimeouts", 0) * 1000)
    if key == "switches per GB":
        return fmt(row["switches to TCP"] * 1000) if "switches to TCP" in row else "–"
    if key in ("round trip", "MB/s"):
        low, high = row["range"]
        return f"{fmt(row[key])} ({fmt(low)}–{fmt(high)})"
    return fmt(row.get(key))


def compact(summary, cases):
    """The tables of docs/benchmarks.md ("Where the time goes"): µs of CPU per round
    trip (latency, both sizes side by side) and per MB (throughput)."""
    lat = [(test, size) for test, size in FIGURES if test == "tcp_lat"]
    out = ["| µs per round trip | " + " | ".join(
        f"{size // 1024} KiB, case {c}" for _t, size in lat for c in cases) + " |",
        "|---|" + "---:|" * (len(lat) * len(cases))]
    for label, key in COMPACT["tcp_lat"]:
        cells = [compact_value(summary[f"{t}/{size}/{c}/plain"], key,
                               summary.get(f"{t}/{size}/{c}/traced", {}))
                 for t, size in lat for c in cases]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out += ["", "| 64 KiB stream, µs per MB | " + " | ".join(f"case {c}" for c in cases) + " |",
            "|---|" + "---:|" * len(cases)]
    for label, key in COMPACT["tcp_bw"]:
        cells = [compact_value(summary[f"tcp_bw/65536/{c}/plain"], key,
                               summary.get(f"tcp_bw/65536/{c}/traced", {})) for c in cases]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def report(data):
    cases = data["config"]["cases"]
    parts = [f"Breakdown run {data['started']} ({data['mode']}), {data['config']['reps']} "
             f"repetition(s), qperf runs of {data['config']['seconds']} s; medians."
             + (f" Experiment: the client pods' routes with rto_min "
                f"{data['config']['rto_min_ms']} ms." if data["config"].get("rto_min_ms") else "")
             + (" Experiment: a SCHED_IDLE busy loop on every CPU (busy, idle and "
                "kernel-other figures do not apply)." if data["config"].get("spin") else ""),
             f"Load before: {data['load_before']['loadavg']}, after: "
             f"{data['load_after']['loadavg']}", ""]
    parts += [compact(data["summary"], cases), "", "Every figure:", ""]
    for test, size in FIGURES:
        parts += [table(data["summary"], cases, test, size), ""]
    return "\n".join(parts)


def write_report(data, base):
    text = report(data)
    with open(base + ".md", "w", encoding="utf-8") as f:
        f.write(text + "\n")
    log(text)


def main():
    args = parse_args()
    if args.report_only:
        with open(args.report_only, encoding="utf-8") as f:
            data = json.load(f)
        data["summary"] = summarize(data["samples"])
        write_report(data, args.report_only.removesuffix(".json"))
        return 0
    if not (args.meshlane and args.envoy and args.connrate and args.out_dir):
        raise BenchError("--meshlane, --envoy, --connrate and --out-dir are required")
    mode, profile = session.profile_of(PROFILES, args, ("reps", "seconds", "rto_min_ms", "spin"))
    if args.cases:
        profile["cases"] = [int(c) for c in args.cases.split(",")]
        if not set(profile["cases"]) <= {2, 3, 4, 5}:
            raise BenchError(f"--cases: from 2, 3, 4, 5 only (each has two Envoys), "
                             f"not {args.cases}")
    if profile["seconds"] < LEAD_S + TAIL_S + 0.5:
        raise BenchError(f"--seconds: at least {LEAD_S + TAIL_S + 0.5}")
    _lock = session.prepare(log, (args.meshlane, args.envoy, args.connrate), ("perf", "top"))
    load_before = machine_load()
    started = time.time()
    run = Breakdown(args, profile)
    status, error = session.run_then_teardown(run.node, run.measure, log)
    if status != "ok":
        log(f"BREAKDOWN {status.upper()}: {error}")
        return 130 if status == "interrupted" else 1
    stamp = datetime.datetime.fromtimestamp(started, datetime.timezone.utc)
    data = {"schema": SCHEMA, "mode": mode, "started": stamp.isoformat(timespec="seconds"),
            "duration_s": round(time.time() - started, 1), "config": profile,
            "machine": bench_run.machine_facts(args),
            "load_before": load_before, "load_after": machine_load(),
            "samples": run.samples, "summary": summarize(run.samples)}
    os.makedirs(args.out_dir, exist_ok=True)
    base = os.path.join(args.out_dir, f"breakdown-{mode}-{stamp:%Y%m%dT%H%M%SZ}")
    with open(base + ".json", "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    write_report(data, base)
    log(f"==> results: {base}.json, {base}.md ({data['duration_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    session.exit_with(main, "BREAKDOWN")
