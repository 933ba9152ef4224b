"""One measurement at a time: qperf, the connection-rate tool, CPU, BPF run time."""

import contextlib
import ctypes
import json
import os
import platform
import re
import subprocess
import time

from . import sysutil
from .node import (APP_ID, CONNRATE_PORT, HOST_CONNRATE_PORT, QPERF_DATA_PORT, QPERF_PORT,
                   SOCKPERF_PORT)
from .sysutil import BenchError


class CpuWindow:
    """CPU used by one cgroup (cpu.stat usage_usec: every process of the case, and
    the kernel work done in their context, softirq included on this kernel) and by
    the whole machine (/proc/stat) between start and stop."""

    def __init__(self, cgroup):
        self.cgroup = cgroup

    def __enter__(self):
        self.usage0 = sysutil.read_cpu_usage_usec(self.cgroup)
        self.busy0, self.total0 = sysutil.read_proc_stat_busy()
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.usage_usec = sysutil.read_cpu_usage_usec(self.cgroup) - self.usage0
        busy1, total1 = sysutil.read_proc_stat_busy()
        self.wall = time.monotonic() - self.t0
        ticks = os.sysconf("SC_CLK_TCK")
        self.machine_busy_usec = (busy1 - self.busy0) * 1e6 / ticks
        self.machine_total_usec = (total1 - self.total0) * 1e6 / ticks
        return False

    def as_dict(self):
        return {"cgroup_cpu_usec": self.usage_usec,
                "machine_busy_usec": round(self.machine_busy_usec),
                "machine_total_usec": round(self.machine_total_usec),
                "wall_s": round(self.wall, 6)}


_QPERF_LINE = re.compile(r"^\s*(\w+)\s*=\s*([0-9.]+)\s*(\S*)")


def parse_qperf(text):
    values = {}
    for line in text.splitlines():
        m = _QPERF_LINE.match(line)
        if m:
            values[m.group(1)] = (float(m.group(2)), m.group(3))
    return values


def qperf_argv(node, case, test, size, seconds):
    """qperf <test> from the case's client pod to its server pod.

    qperf opens a control connection (QPERF_PORT) and a data connection (the fixed
    QPERF_DATA_PORT); in cases 2-4 both go through both sidecars (every port is
    captured), in case 5 through the Envoys' listeners for both ports. Only the data connection carries the measured messages."""
    return ["qperf", node.server_addr(case), "--listen_port", str(QPERF_PORT), "--ip_port",
            str(QPERF_DATA_PORT), "--time", str(seconds), "-vvs", "-uu",
            "--msg_size", str(size), test]


def qperf_result(case, argv, status, out, err):
    """The figure of a qperf run from its output: one-way latency (us, half a round
    trip) for tcp_lat, MB/s for tcp_bw."""
    values = parse_qperf(out)
    if status != 0 or not values:
        raise BenchError(f"case {case}: {' '.join(argv)} failed (exit status {status}): "
                         f"{out.strip()} {err.strip()}")
    sample = {}
    if argv[-1] == "tcp_lat":
        lat, unit = values["latency"]
        scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "sec": 1e6}[unit]
        sample["value"] = lat * scale
        sample["unit"] = "us"
        # Round trips: qperf's latency is half of one.
        sample["ops"] = int(values["loc_send_msgs"][0])
    else:
        bw, unit = values["bw"]
        scale = {"bytes/sec": 1e-6, "KB/sec": 1e-3, "MB/sec": 1.0, "GB/sec": 1e3}[unit]
        sample["value"] = bw * scale
        sample["unit"] = "MB/s"
        sample["ops"] = int(values["recv_msgs"][0])
        sample["bytes"] = int(values["recv_bytes"][0])
    sample["msg_rate"] = values.get("msg_rate", (None,))[0]
    return sample


def qperf(node, case, test, size, seconds):
    """qperf as an app user (qperf_argv), with the CPU of the case around it."""
    argv = qperf_argv(node, case, test, size, seconds)
    place = node.place(f"c{case}-client")
    with CpuWindow(place.cgroup) as cpu:
        status, out, err = place.run(argv, uid=APP_ID, gid=APP_ID, timeout=seconds + 60)
    sample = qperf_result(case, argv, status, out, err)
    sample["cpu"] = cpu.as_dict()
    return sample


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def sockperf_latency(node, case, size, seconds):
    """sockperf ping-pong over TCP from the case's client pod to its server pod:
    the median (and p99) of the per-message one-way latency (half a round trip).
    qperf's tcp_lat is a mean, which a few scheduling delays of a busy machine pull
    up; the median is what a typical message sees. One connection, captured in
    cases 2-4 like qperf's."""
    client = f"c{case}-client"
    server_ip = node.server_addr(case)
    argv = ["sockperf", "ping-pong", "--tcp", "-i", server_ip, "-p", str(SOCKPERF_PORT),
            "-m", str(size), "-t", str(seconds)]
    place = node.place(client)
    with CpuWindow(place.cgroup) as cpu:
        status, out, err = place.run(argv, uid=APP_ID, gid=APP_ID, timeout=seconds + 60)
    text = _ANSI.sub("", out + err)
    pct = dict(re.findall(r"percentile (\d+\.\d+) =\s*([0-9.]+)", text))
    valid = re.search(r"\[Valid Duration\].*?ReceivedMessages=(\d+)", text)
    avg = re.search(r"avg-latency=([0-9.]+)", text)
    if status != 0 or "50.000" not in pct or not valid:
        raise BenchError(f"case {case}: {' '.join(argv)} failed (exit status {status}): "
                         f"{text.strip()[-400:]}")
    return {"value": float(pct["50.000"]), "unit": "us", "ops": int(valid.group(1)),
            "p99_us": float(pct.get("99.000", "nan")),
            "avg_us": float(avg.group(1)) if avg else None, "cpu": cpu.as_dict()}


def connrate(node, place, addr, port, seconds, threads):
    argv = [node.connrate, "client", "--connect", f"{addr}:{port}", "--seconds", str(seconds),
            "--threads", str(threads)]
    with CpuWindow(place.cgroup) as cpu:
        status, out, err = place.run(argv, uid=APP_ID, gid=APP_ID, timeout=seconds + 60)
    try:
        result = json.loads(out)
    except ValueError:
        result = None
    if status != 0 or result is None:
        raise BenchError(f"{place.label}: connrate failed (exit status {status}): {out} {err}")
    if result["connections"] == 0:
        raise BenchError(f"{place.label}: no connection to {addr}:{port} completed "
                         f"(first error: {result['first_error']})")
    return {"value": result["rate"], "unit": "conn/s", "ops": result["connections"],
            "errors": result["errors"], "p50_us": result["p50_us"], "p99_us": result["p99_us"],
            "cpu": cpu.as_dict()}


def case_connrate(node, case, seconds, threads):
    server_ip = node.server_addr(case)
    return connrate(node, node.place(f"c{case}-client"), server_ip, CONNRATE_PORT, seconds,
                    threads)


def host_connrate(node, hooks, seconds, threads):
    """A process of the node (not in any pod) connecting over the node's loopback, in
    a cgroup with meshlane's node-wide programs (hooks="on") or without."""
    return connrate(node, node.host_place(hooks), "127.0.0.1", HOST_CONNRATE_PORT[hooks],
                    seconds, threads)


# --- BPF run time -----------------------------------------------------------------

_SYS_BPF = {"x86_64": 321, "aarch64": 280}
_BPF_ENABLE_STATS = 32
_BPF_STATS_RUN_TIME = 0


class BpfStats:
    """Turns on the kernel's BPF run-time statistics for as long as it is open.

    Preferred: the BPF_ENABLE_STATS command (Linux 5.8+), which keeps them on while
    the returned fd is open, so the kernel turns them off by itself when this
    process goes away, even when it is killed; kernel.bpf_stats_enabled is never
    written. Fallback: the sysctl, whose old value is restored on close."""

    def __init__(self):
        self.fd = None
        self.sysctl_old = None
        self.method = None

    def __enter__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        nr = _SYS_BPF.get(platform.machine())
        if nr is not None:
            attr = (ctypes.c_uint32 * 4)(_BPF_STATS_RUN_TIME, 0, 0, 0)
            fd = libc.syscall(nr, _BPF_ENABLE_STATS, ctypes.byref(attr), ctypes.sizeof(attr))
            if fd >= 0:
                self.fd = fd
                self.method = "BPF_ENABLE_STATS fd"
                return self
        with open("/proc/sys/kernel/bpf_stats_enabled", encoding="ascii") as f:
            self.sysctl_old = f.read().strip()
        with open("/proc/sys/kernel/bpf_stats_enabled", "w", encoding="ascii") as f:
            f.write("1")
        self.method = "sysctl kernel.bpf_stats_enabled=1 (restored after)"
        return self

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.sysctl_old is not None:
            with open("/proc/sys/kernel/bpf_stats_enabled", "w", encoding="ascii") as f:
                f.write(self.sysctl_old)
            self.sysctl_old = None

    def __exit__(self, *exc):
        self.close()
        return False


def bpftool_json(args):
    done = sysutil.run(["bpftool", "-j", *args], check=False)
    if done.returncode != 0:
        raise BenchError(f"bpftool {' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return json.loads(done.stdout or b"null")


def instance_programs(node, inst):
    """The programs of one meshlane instance: every loaded program that uses one of
    the maps pinned under the instance's bpffs root (meshlane's programs all share
    its ml_* maps). Other programs on the machine are never counted."""
    maps_dir = os.path.join(node.bpffs_root(inst), "maps")
    map_ids = set()
    for name in sorted(os.listdir(maps_dir)):
        with contextlib.suppress(BenchError):
            map_ids.add(bpftool_json(["map", "show", "pinned", os.path.join(maps_dir, name)])["id"])
    if not map_ids:
        raise BenchError(f"no pinned maps under {maps_dir}")
    return {prog["id"]: prog for prog in bpftool_json(["prog", "show"])
            if map_ids & set(prog.get("map_ids", []))}


def bpf_snapshot(node):
    snap = {}
    for inst in ("off", "on"):
        for pid, prog in instance_programs(node, inst).items():
            snap[(inst, pid)] = {"name": prog.get("name", "?"), "type": prog.get("type", "?"),
                                 "run_time_ns": prog.get("run_time_ns", 0),
                                 "run_cnt": prog.get("run_cnt", 0)}
    return snap


def bpf_delta(before, after):
    """Per instance and program name: calls and nanoseconds between two snapshots."""
    out = {}
    for key, prog in after.items():
        inst = key[0]
        old = before.get(key, {"run_time_ns": 0, "run_cnt": 0})
        cnt = prog["run_cnt"] - old["run_cnt"]
        ns = prog["run_time_ns"] - old["run_time_ns"]
        entry = out.setdefault(inst, {}).setdefault(
            prog["name"], {"type": prog["type"], "run_cnt": 0, "run_time_ns": 0})
        entry["run_cnt"] += cnt
        entry["run_time_ns"] += ns
    for progs in out.values():
        for entry in progs.values():
            entry["ns_per_call"] = (entry["run_time_ns"] / entry["run_cnt"]
                                    if entry["run_cnt"] else None)
    return out


def tool_version(argv):
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(argv, capture_output=True, timeout=20, check=False)
        text = (done.stdout or done.stderr).decode(errors="replace").strip()
        return text.splitlines()[0] if text else None
    return None
