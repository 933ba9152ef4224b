#!/usr/bin/env python3
"""Scale: many redirected connections open at once on one node, each with an
original destination of its own (docs/reliability.md, "Scale"). Root only; a private
node (bench/harness/meshnode.py). Not in CI: tests/origdst_scale.rs is its
5,000-connection variant.

  sudo bench/scale.py MESHLANE_BINARY [--connections 100000] [--per-pod 25000]

Every captured connect lands on 127.0.0.1:15001 of its own pod, so one pod has at
most its ephemeral port range (~28k) of them: the connections are spread over
ceil(connections / per-pod) captured client pods. Each pod runs the minimal sidecar
of tests/tools/origdst_load.c (reads SO_ORIGINAL_DST of every accepted connection
and answers with it) and a client holding its share of connections open, to distinct
destinations (198.18.0.0/15, 100 ports per address; nothing there, and the node has
no route out). With every connection open and checked it reads the sidecars'
counts, the original-destination map's entries, meshlane's counters, map memory
(bpftool's bytes_memlock), kernel memory (/proc/meminfo) and the processes' RSS.
RLIMIT_NOFILE is raised for the clients and sidecars (where the hard limit cannot
be raised, --per-pod must stay under it). Exit 0 only when every
connection was answered by its own sidecar with its own destination, every one had
its record, and no map-full counter moved. Everything is removed at the end."""

import argparse
import ipaddress
import json
import os
import resource
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import leaks  # noqa: E402
from harness.meshnode import APP_ID, MeshNode, Pod, json_lines, tail  # noqa: E402
from harness.sysutil import BenchError  # noqa: E402

DEST_BASE = ipaddress.IPv4Address("198.18.0.0")
PORTS_PER_ADDRESS = 100
PORT_BASE = 20000
FULL_MAP_COUNTERS = ("record_failed", "conn_publish_failed", "orig_dst_missed",
                     "short_path_insert_failed", "inbound_listener_slots_full")


def meminfo():
    out = {}
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            key, value = line.split(":")
            out[key] = int(value.split()[0])
    return out


def rss_kib(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def counters(node):
    done = subprocess.run([node.meshlane, "status", "-o", "json", "--bpffs-root",
                           node.pin_root()], capture_output=True, timeout=60, check=False)
    return json.loads(done.stdout)["counters"]


def wait_json(log, key, index, proc, what, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = json_lines(log, key)
        if len(lines) > index:
            return lines[index]
        if proc.poll() is not None:
            raise BenchError(f"{what} exited: {tail(log)}")
        time.sleep(0.2)
    raise BenchError(f"{what}: nothing after {timeout}s: {tail(log)}")


def run(node, args):
    pods_needed = -(-args.connections // args.per_pod)
    pods, clients, proxies = [], [], []
    for i in range(pods_needed):
        pod = Pod(f"c{i}", node.add_netns(f"c{i}"), os.urandom(32).hex())
        node.add(pod)
        pod.cookie = node.netns_cookie(pod.netns)
        proxies.append(node.start_proxy(pod, f"sidecar-c{i}", ports=(15001,)))
        pods.append(pod)
    before_counters = counters(node)
    before_mem = meminfo()
    started = time.monotonic()
    addresses_per_pod = -(-args.per_pod // PORTS_PER_ADDRESS)
    for i, pod in enumerate(pods):
        count = min(args.per_pod, args.connections - i * args.per_pod)
        base = DEST_BASE + i * addresses_per_pod
        log = node.log_path(f"client-c{i}.log")
        clients.append((node.popen(pod.netns, APP_ID, [
            node.tool, "client", "--hold", "--expect-name", f"sidecar-c{i}", "--count",
            str(count), "--base", str(base), "--ports", str(PORTS_PER_ADDRESS),
            "--port-base", str(PORT_BASE), "--timeout", "600"], log), log, count))
    results = [wait_json(log, "connections", 0, proc, f"client {i}", 900)
               for i, (proc, log, _) in enumerate(clients)]
    opened_s = time.monotonic() - started
    after_mem = meminfo()
    sidecars = []
    for i, proc in enumerate(proxies):
        os.kill(proc.pid, signal.SIGUSR1)
        sidecars.append(wait_json(node.log_path(f"sidecar-c{i}.log"), "accepted", 0, proc,
                                  f"sidecar {i}", 60))
    found, _ = leaks.walk(node.pin_root(), [p.cookie for p in pods])
    records = {p.name: found["ml_conn_orig_dst"][2].get(p.cookie, 0) for p in pods}
    after_counters = counters(node)
    moved = {k: after_counters[k] - before_counters.get(k, 0) for k in after_counters
             if after_counters[k] != before_counters.get(k, 0)}
    maps = leaks.memory(node.pin_root())
    report = {
        "connections": args.connections, "client_pods": len(pods),
        "seconds_to_open_and_check_all": round(opened_s, 1),
        "clients": results, "sidecars": sidecars,
        "conn_orig_dst_records": records,
        "counters_moved": moved,
        "map_bytes_memlock": {name: b for name, (_, _, b) in maps.items()},
        "map_bytes_memlock_total": sum(b for _, _, b in maps.values()),
        "kernel_memory_kib": {key: after_mem[key] - before_mem[key]
                              for key in ("MemAvailable", "Slab", "SUnreclaim")},
        "rss_kib": {"sidecars": sum(rss_kib(p.pid) for p in proxies),
                    "clients": sum(rss_kib(proc.pid) for proc, _, _ in clients)},
    }
    ok = all(r["ok"] == count for r, (_, _, count) in zip(results, clients))
    ok &= all(s["matched"] == count and s["open"] == count and not s["mismatched"]
              for s, (_, _, count) in zip(sidecars, clients))
    ok &= all(records[p.name] == count for p, (_, _, count) in zip(pods, clients))
    ok &= not any(moved.get(name) for name in FULL_MAP_COUNTERS)
    for proc, _, _ in clients:
        node.stop(proc)
    return report, ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("meshlane")
    parser.add_argument("--connections", type=int, default=100000)
    parser.add_argument("--per-pod", type=int, default=25000)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("scale.py needs root")
    # Inherited by the sidecars and clients (setpriv keeps limits); each holds a
    # descriptor per connection of its pod.
    want = args.per_pod + 64
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, hard), max(want, hard)))
    except (ValueError, OSError):
        if hard < want:
            sys.exit(f"RLIMIT_NOFILE's hard limit is {hard} and cannot be raised here: "
                     f"use --per-pod {hard - 64} or less")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    node = MeshNode(args.meshlane, "mlscale", "10.78.0.0/24")
    report, ok = {"error": None}, False
    try:
        node.build()
        report, ok = run(node, args)
    except BenchError as err:
        report["error"] = str(err)
    finally:
        report["teardown_problems"] = node.teardown()
    print(json.dumps(report, indent=1))
    print("SCALE " + ("PASSED" if ok else "FAILED"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
