#!/usr/bin/env python3
"""Churn: pods added and deleted in waves on one private node, with traffic flowing
and ADD, DEL and GC issued concurrently, as a runtime issues them (docs/reliability.md,
"Churn"). Root only; its own bpffs, child cgroup and netns (bench/harness/meshnode.py).

  sudo bench/churn.py MESHLANE_BINARY [--pods 1000] [--wave 100] [--churn-waves 5]
                      [--envoys 3] [--workers 4] [--short-path] [--no-cpu]

1. Fill: --pods pods through bridge + host-local + meshlane, --wave at a time by
   --workers parallel "runtime" threads. Every pod is captured (Istio-injected); the
   first --envoys carry a real Envoy (target/tools/envoy, or $ENVOY) with an app on
   8080, the rest the minimal sidecar of tests/tools/origdst_load.c on 15001/15006.
2. Churn: --churn-waves waves, each deleting --wave pods and adding as many,
   interleaved. A deleted pod goes one of three ways: DEL then netns removal; netns
   removal then DEL (containerd's second DEL); netns removed and the pod forgotten by
   the runtime, never DELeted (only GC can clean it).
3. Drain: every pod deleted the same ways, in waves.
Throughout, a GC thread runs CNI GC with the runtime's valid attachments every 2 s,
and a traffic thread sends connections from random pods to others (outbound capture)
and from the node into pods (inbound steering); every reply must name the sidecar it
should and the connection's original destination. At each pod's deletion its
sidecar's own counts must equal the connections sent through it.

At the end: no entry of any pinned map references a deleted pod's netns cookie, no
pin or link of a pod is left; map memory (bpftool's bytes_memlock) at the peak; the
ADD time of meshlane's own process (wall, and CPU time from `perf stat`) for the first
pods and at the last ones. The machine's backlog and neighbour-table limits are raised
for the run and put back (MeshNode.make_room_for_pods says why). Exit 0
only when every check passed. Everything it made is removed, also on failure."""

import argparse
import concurrent.futures
import contextlib
import json
import os
import random
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import leaks  # noqa: E402
from harness.meshnode import (APP_ID, PROXY_ID, REPO, MeshNode, Pod, json_lines,  # noqa: E402
                              tail)
from harness.node import _dechunk, capture_resources, envoy_bootstrap  # noqa: E402
from harness.sysutil import BenchError, in_netns  # noqa: E402

APP_PORT = 8080
DELETE_WAYS = ("del", "netns-first", "lost")


class Churn:
    def __init__(self, node, args):
        self.node = node
        self.args = args
        self.lock = threading.Lock()
        self.known = {}    # container ID -> pod: the runtime's valid attachments
        self.ready = {}    # name -> pod, sidecar up
        self.lost = []     # forgotten by the runtime, waiting for GC
        self.gone = []     # deleted pods (their cookies must vanish)
        self.expect = {}   # name -> {"out": n, "in": n}
        self.add_times = []  # (sequence, pods on the node, seconds)
        self.del_times = []
        self.gc_times = []
        self.failures = []
        # Pods with a connection that failed: what their sidecar saw is not known.
        self.unknown = set()
        self.sidecars_checked = 0
        self.traffic = {"connections": 0, "ok": 0, "rounds": 0}
        self.envoy_pods = set()
        self.peak = None
        self.seq = 0
        self.stop = threading.Event()

    def fail(self, text):
        with self.lock:
            self.failures.append(text)
        print(f"FAIL {text}", flush=True)

    # --- a runtime's pod operations --------------------------------------------------

    def add(self, index):
        name = f"p{index}"
        pod = Pod(name, self.node.add_netns(name), os.urandom(32).hex())
        with self.lock:
            self.known[pod.container_id] = pod
            live, seq = len(self.known), self.seq
            self.seq += 1
            self.expect[name] = {"out": 0, "in": 0}
        took, cpu = self.node.add(pod)
        with self.lock:
            self.add_times.append((seq, live, took, cpu))
        pod.cookie = self.node.netns_cookie(pod.netns)
        if index < self.args.envoys:
            self.start_envoy(pod)
        else:
            self.node.start_proxy(pod, f"sidecar-{name}")
        with self.lock:
            self.ready[name] = pod

    def start_envoy(self, pod):
        self.node.start_proxy(pod, f"app-{pod.name}", ports=(APP_PORT,), uid=APP_ID,
                              local=True)
        work = self.node.log_path(f"envoy-{pod.name}")
        os.mkdir(work)
        os.chmod(work, 0o777)
        bootstrap = os.path.join(work, "bootstrap.json")
        with open(bootstrap, "w", encoding="utf-8") as f:
            json.dump(envoy_bootstrap(pod.name, *capture_resources()), f)
        os.chmod(bootstrap, 0o644)
        log = os.path.join(work, "envoy.log")
        pod.processes["envoy"] = self.node.popen(
            pod.netns, PROXY_ID, [self.args.envoy_copy, "-c", bootstrap, "--disable-hot-restart",
                                  "--concurrency", "1", "--log-level", "warn"], log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, IndexError):
                if envoy_get(pod, "/ready").startswith("LIVE"):
                    with self.lock:
                        self.envoy_pods.add(pod.name)
                    return
            if pod.processes["envoy"].poll() is not None:
                break
            time.sleep(0.1)
        raise BenchError(f"Envoy in {pod.name} not ready: {tail(log)}")

    def delete(self, pod, way):
        with self.lock:
            self.ready.pop(pod.name, None)
        with pod.lock:  # traffic through the pod has finished
            self.check_sidecar(pod)
            for proc in pod.processes.values():
                self.node.stop(proc)
            self.check_sidecar_exit(pod)
            took = None
            if way == "del":
                took = self.node.delete(pod)
                self.node.del_netns(pod.netns)
            elif way == "netns-first":
                self.node.del_netns(pod.netns)
                took = self.node.delete(pod)
            else:
                self.node.del_netns(pod.netns)
            with self.lock:
                if way == "lost":
                    self.lost.append(pod)
                if took is not None:
                    self.del_times.append(took)
                self.known.pop(pod.container_id, None)
                self.gone.append(pod)

    def check_sidecar(self, pod):
        """An Envoy pod: its capture listeners' downstream counts, before it stops."""
        if pod.name not in self.envoy_pods or pod.name in self.unknown:
            return
        want = self.expect[pod.name]
        stats = envoy_get(pod, "/stats?filter=downstream_cx_total")
        got = {"out": 0, "in": 0}
        for line in stats.splitlines():
            key, _, value = line.partition(": ")
            if key == "listener.0.0.0.0_15001.downstream_cx_total":
                got["out"] = int(value)
            if key == "listener.0.0.0.0_15006.downstream_cx_total":
                got["in"] = int(value)
        if got != want:
            self.fail(f"Envoy of {pod.name} saw {got}, sent through it {want}")

    def check_sidecar_exit(self, pod):
        """A minimal sidecar's last counts (printed at SIGTERM)."""
        if pod.name in self.envoy_pods or pod.name in self.unknown:
            return
        with self.lock:
            self.sidecars_checked += 1
        want = self.expect[pod.name]["out"] + self.expect[pod.name]["in"]
        counts = json_lines(self.node.log_path(f"sidecar-{pod.name}.log"), "accepted")
        if not counts:
            self.fail(f"sidecar of {pod.name} printed no counts")
            return
        last = counts[-1]
        if (last["accepted"], last["matched"]) != (want, want) or last["mismatched"]:
            self.fail(f"sidecar of {pod.name}: {last}, sent through it {want}")

    # --- GC --------------------------------------------------------------------------

    def gc_once(self):
        with self.lock:
            valid = list(self.known)
            lost, self.lost = self.lost, []
        self.gc_times.append(self.node.gc(valid))
        # What libcni's GC does for the primary plugin: its IPAM lease goes too.
        for pod in lost:
            self.node.delete(pod, plugins=("bridge",))

    def repeat(self, pause, step, what):
        """step() every `pause` seconds until the run stops; failures are reported."""
        while not self.stop.wait(pause):
            try:
                step()
            except BenchError as err:
                self.fail(f"{what}: {err}")

    # --- traffic ---------------------------------------------------------------------

    def expected_name(self, source, target):
        """Who answers a connection from `source` (None: the node) to target:8080."""
        if source is not None and source.name not in self.envoy_pods:
            return f"sidecar-{source.name}"  # the source's own sidecar reads the dst
        if target.name in self.envoy_pods:
            return f"app-{target.name}"  # through the target's Envoy to its app
        return f"sidecar-{target.name}"  # steered to the target's sidecar

    def run_client(self, netns, uid, dsts, label):
        log = self.node.log_path(f"client-{label}.log")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(log)
        argv = [self.node.tool, "client", "--timeout", "60"]
        for target, name in dsts:
            argv += ["--to", f"{target.ip}:{APP_PORT}/{name}"]
        proc = self.node.popen(netns, uid, argv, log)
        try:
            proc.wait(90)
        except Exception:  # noqa: BLE001
            self.node.stop(proc)
        with self.node.guard:
            self.node.pids.discard(proc.pid)
        reports = json_lines(log, "connections")
        failed = {line["failed_to"].split(":")[0] for line in json_lines(log, "failed_to")}
        with self.lock:
            self.traffic["connections"] += len(dsts)
            self.traffic["ok"] += reports[0]["ok"] if reports else 0
        if not reports or reports[0]["ok"] != len(dsts):
            self.fail(f"traffic from {label}: {reports or tail(log)}")
            if not reports:
                failed = {target.ip for target, _ in dsts}
        return failed

    def count_sent(self, source, targets, failed):
        """What each sidecar on the way must have seen; a pod with a failed
        connection is left out of the sidecar checks (the failure is reported)."""
        with self.lock:
            for t in targets:
                if t.ip in failed:
                    self.unknown.update(p.name for p in (source, t) if p is not None)
                    continue
                if source is not None:
                    self.expect[source.name]["out"] += 1
                if source is None or source.name in self.envoy_pods:
                    self.expect[t.name]["in"] += 1

    def traffic_round(self):
        with self.lock:
            names = list(self.ready)
        if len(names) < 3:
            return
        sources = random.sample(names, min(len(names), self.args.sources))
        for name in sources:
            with self.lock:
                source = self.ready.get(name)
                others = [p for n, p in self.ready.items() if n != name]
            if source is None or not source.lock.acquire(blocking=False):
                continue
            held = []
            try:
                for target in random.sample(others, min(2, len(others))):
                    if target.lock.acquire(blocking=False):
                        held.append(target)
                if not held:
                    continue
                dsts = [(t, self.expected_name(source, t)) for t in held]
                failed = self.run_client(source.netns, APP_ID, dsts, source.name)
                self.count_sent(source, held, failed)
            finally:
                for pod in [source, *held]:
                    pod.lock.release()
        # Inbound: from the node (no pod: meshlane leaves it alone) into pods.
        with self.lock:
            targets = random.sample(list(self.ready.values()),
                                    min(len(self.ready), self.args.sources))
        held = [t for t in targets if t.lock.acquire(blocking=False)]
        try:
            if held:
                failed = self.run_client(self.node.node_netns, 0,
                                         [(t, self.expected_name(None, t)) for t in held],
                                         "node")
                self.count_sent(None, held, failed)
        finally:
            for pod in held:
                pod.lock.release()
        with self.lock:
            self.traffic["rounds"] += 1

    # --- phases ----------------------------------------------------------------------

    def run_wave(self, pool, jobs):
        futures = [pool.submit(*job) for job in jobs]
        for future in concurrent.futures.as_completed(futures):
            try:
                future.result()
            except BenchError as err:
                self.fail(str(err))

    def victims(self, count):
        with self.lock:
            # The Envoy pods stay until the drain: they are few and slow to start.
            candidates = [p for n, p in self.ready.items() if n not in self.envoy_pods]
        return random.sample(candidates, min(count, len(candidates)))

    def run(self):
        args = self.args
        # GC every 2 s; a pause between traffic rounds (the machine's cores are shared).
        threads = [threading.Thread(target=self.repeat, args=(2, self.gc_once, "GC"),
                                    daemon=True),
                   threading.Thread(target=self.repeat,
                                    args=(0.1, self.traffic_round, "traffic"), daemon=True)]
        next_index = 0
        with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
            for t in threads:
                t.start()
            while next_index < args.pods:
                wave = range(next_index, min(args.pods, next_index + args.wave))
                self.run_wave(pool, [(self.add, i) for i in wave])
                next_index = wave.stop
                print(f"fill: {len(self.ready)} pods ready, traffic {self.traffic}", flush=True)
            self.peak = self.measure_peak()
            for w in range(args.churn_waves):
                jobs = []
                for pod in self.victims(args.wave):
                    jobs.append((self.delete, pod, random.choice(DELETE_WAYS)))
                    jobs.append((self.add, next_index))
                    next_index += 1
                self.run_wave(pool, jobs)
                print(f"churn wave {w + 1}: {len(self.ready)} pods ready, "
                      f"traffic {self.traffic}", flush=True)
            while True:
                with self.lock:
                    left = list(self.ready.values())[:args.wave]
                if not left:
                    break
                self.run_wave(pool, [(self.delete, p, random.choice(DELETE_WAYS)) for p in left])
            self.stop.set()
            for t in threads:
                t.join()
        self.gc_once()

    def measure_peak(self):
        with self.lock:
            live = len(self.known)
        memory = leaks.memory(self.node.pin_root())
        found, _ = leaks.walk(self.node.pin_root(), [])
        return {"pods": live, "maps": {name: {"type": t, "max_entries": m, "bytes_memlock": b,
                                              "entries": found.get(name, (0, None))[1]}
                                       for name, (t, m, b) in memory.items()}}

    # --- the end -----------------------------------------------------------------------

    def leak_report(self):
        root = self.node.pin_root()
        cookies = [p.cookie for p in self.gone if p.cookie]
        found, unlistable = leaks.walk(root, cookies)
        referencing = {name: sum(refs.values()) for name, (_, _, refs) in found.items() if refs}
        pod_pins = [p for p in leaks.pins(root)
                    if p.startswith("inbound/") or p.startswith("netns_tags/links/")]
        netns_links = [link for link in leaks.our_links(root) if link[1] == "netns"]
        return {"deleted_pods": len(self.gone), "cookies_checked": len(cookies),
                "entries_referencing_deleted_pods": referencing,
                # Arrays always hold max_entries entries; every other map must be empty.
                "entries_left": {name: n for name, (kind, n, _) in found.items()
                                 if n and "array" not in kind},
                "maps_not_listable": unlistable,
                "pod_pins_left": pod_pins, "pins_left": leaks.pins(root),
                "netns_links_left": netns_links}


def envoy_get(pod, path):
    """GET on a sidecar's admin port, from the harness (outside every hooked cgroup)."""
    with in_netns(pod.netns):
        s = socket.create_connection(("127.0.0.1", 15000), timeout=2)
    with s:
        s.settimeout(5)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    return _dechunk(body) if "chunked" in head.lower() else body


def quantile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] if values else None


def add_figures(add_times, pods):
    """meshlane's ADD (its own process: wall and CPU time) for the first pods, at
    the last ones of the fill, and during the churn (~`pods` on the node)."""
    ms = lambda v: round(v * 1000, 2)  # noqa: E731
    out = {}
    for label, keep in (("adds_2_to_51", lambda seq: 1 <= seq <= 50),
                        (f"adds_{pods - 49}_to_{pods}", lambda seq: pods - 50 <= seq < pods),
                        ("adds_during_churn", lambda seq: seq >= pods)):
        rows = [row for row in add_times if keep(row[0])]
        if not rows:
            continue
        out[label] = {"n": len(rows), "pods_on_node_p50": statistics.median(r[1] for r in rows)}
        for kind, index in (("wall", 2), ("cpu", 3)):
            values = [r[index] for r in rows if r[index] is not None]
            if values:
                out[label][kind] = {"p50_ms": ms(statistics.median(values)),
                                    "p90_ms": ms(quantile(values, 0.9)),
                                    "p99_ms": ms(quantile(values, 0.99))}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("meshlane")
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--wave", type=int, default=100)
    parser.add_argument("--churn-waves", type=int, default=5)
    parser.add_argument("--envoys", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sources", type=int, default=20,
                        help="pods that send per traffic round (and pods called from the node)")
    parser.add_argument("--subnet", default="10.77.0.0/22",
                        help="small enough that churned pods reuse addresses")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--short-path", action="store_true",
                        help='"shortPath": true in meshlane\'s entry (the sockmap maps then fill too)')
    parser.add_argument("--no-cpu", dest="cpu", action="store_false",
                        help="without perf stat around meshlane (no CPU time per ADD)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("churn.py needs root")
    random.seed(args.seed)
    envoy = os.environ.get("ENVOY", os.path.join(REPO, "target", "tools", "envoy"))
    node = MeshNode(args.meshlane, "mlchurn", args.subnet, cpu_clock=args.cpu,
                    keys={"shortPath": True} if args.short_path else {})
    started = time.monotonic()
    report = {"args": vars(args)}
    code = 1
    try:
        node.build()
        node.make_room_for_pods(args.pods)
        args.envoy_copy = os.path.join(node.tmp, "envoy")
        with open(envoy, "rb") as src, open(args.envoy_copy, "wb") as dst:
            dst.write(src.read())
        os.chmod(args.envoy_copy, 0o755)
        churn = Churn(node, args)
        try:
            churn.run()
        finally:
            churn.stop.set()
        report.update({"peak": churn.peak, "add": add_figures(churn.add_times, args.pods),
                       "del_p50_ms": round(statistics.median(churn.del_times) * 1000, 2),
                       "gc_runs": len(churn.gc_times),
                       "gc_p50_ms": round(statistics.median(churn.gc_times) * 1000, 2),
                       "traffic": churn.traffic,
                       "sidecars_checked": churn.sidecars_checked,
                       "envoys_checked": len(churn.envoy_pods - churn.unknown),
                       "leaks": churn.leak_report()})
        leaked = report["leaks"]
        clean = not (leaked["entries_referencing_deleted_pods"] or leaked["pod_pins_left"]
                     or leaked["netns_links_left"] or leaked["entries_left"])
        report["failures"] = churn.failures
        code = 0 if clean and not churn.failures else 1
    except BenchError as err:
        report["error"] = str(err)
    finally:
        report["seconds"] = round(time.monotonic() - started)
        report["teardown_problems"] = node.teardown()
    print(json.dumps(report, indent=1, default=str))
    print("CHURN " + ("PASSED" if code == 0 else "FAILED"))
    sys.exit(code)


if __name__ == "__main__":
    main()
