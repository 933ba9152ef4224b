"""Kernel plumbing for the benchmark: network namespaces, cgroups, and processes
placed in a pod (netns + cgroup + user). Standard library only. Entering a netns
(`in_netns`, `setns`) comes from scripts/lib/netns.py, which the CNI chain runner
uses too; the benchmark is single-threaded, so a switch never affects anything
else."""

import contextlib
import os
import signal
import subprocess
import tempfile
import time

from netns import in_netns, setns  # noqa: F401  (the harness's netns switch)

NETNS_DIR = "/run/netns"
# What benchmark processes get as PATH; nothing of the caller's environment leaks.
CHILD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class BenchError(Exception):
    """A step of the benchmark that did not work; the message says which and why."""


def run(argv, *, input_bytes=None, timeout=60, check=True, env=None):
    """Runs a root helper command (ip, iptables-restore, ...) in the current netns."""
    try:
        done = subprocess.run(argv, input=input_bytes, capture_output=True, timeout=timeout,
                              env=env or {"PATH": CHILD_PATH}, cwd="/", check=False)
    except subprocess.TimeoutExpired as err:
        raise BenchError(f"{' '.join(argv)} timed out after {timeout}s") from err
    if check and done.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed (exit status {done.returncode}): "
                         f"{done.stderr.decode(errors='replace').strip()}")
    return done


def private_tmp(prefix, subdirs):
    """A temp dir under /tmp with these subdirectories, readable by the unprivileged
    users processes run as (Envoy as 1337, apps as 1000)."""
    tmp = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(tmp, 0o755)
    for sub in subdirs:
        os.mkdir(os.path.join(tmp, sub))
        os.chmod(os.path.join(tmp, sub), 0o755)
    return tmp


def tail(path, lines=10):
    """The last lines of a log, for an error message ("" when unreadable)."""
    with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as f:
        return "".join(f.readlines()[-lines:])
    return ""


def netns_path(name):
    return os.path.join(NETNS_DIR, name)


def add_netns(name):
    """A named netns with its loopback up, as a runtime makes it for a pod."""
    run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])
    return netns_path(name)


def del_netns(name):
    run(["ip", "netns", "del", name], check=False)


def write_sysctl_in(netns, key, value):
    """A per-netns sysctl: /proc/sys/net follows the netns of the task that opens it."""
    with in_netns(netns):
        with open("/proc/sys/" + key.replace(".", "/"), "w", encoding="ascii") as f:
            f.write(value)


def read_cpu_usage_usec(cgroup):
    """usage_usec from cpu.stat: present in every cgroup v2 directory, without the
    cpu controller enabled (it comes from rstat)."""
    with open(os.path.join(cgroup, "cpu.stat"), encoding="ascii") as f:
        for line in f:
            key, value = line.split()
            if key == "usage_usec":
                return int(value)
    raise BenchError(f"no usage_usec in {cgroup}/cpu.stat")


def read_proc_stat_busy():
    """Busy and total jiffies of all CPUs together (/proc/stat, first line)."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already part of user
    return total - idle, total


class Place:
    """Where a benchmark process runs: a pod's netns (or the node's), a cgroup, and
    a user. Processes are started as a container runtime would: moved into the
    cgroup, then into the netns, then the user is dropped (the first two need root)."""

    def __init__(self, label, netns, cgroup):
        self.label = label
        self.netns = netns
        self.cgroup = cgroup

    def _preexec(self, uid, gid):
        procs = os.path.join(self.cgroup, "cgroup.procs")
        netns = self.netns

        def enter():
            # Runs in the child between fork and exec.
            with open(procs, "w", encoding="ascii") as f:
                f.write(str(os.getpid()))
            fd = os.open(netns, os.O_RDONLY)
            setns(fd)
            os.close(fd)
            # Ctrl-C is the harness's business: it stops children through the cgroup.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if uid is not None:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)

        return enter

    def popen(self, argv, *, uid=None, gid=None, log=None):
        """A long-running process (server, sidecar); output to the file `log`."""
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        try:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    env={"PATH": CHILD_PATH, "HOME": "/"}, cwd="/",
                                    preexec_fn=self._preexec(uid, gid))
        finally:
            if log:
                out.close()

    def run(self, argv, *, uid=None, gid=None, timeout=60):
        """Runs a client to completion; returns (exit status, stdout, stderr)."""
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=timeout, env={"PATH": CHILD_PATH, "HOME": "/"},
                                  cwd="/", preexec_fn=self._preexec(uid, gid), check=False)
        except subprocess.TimeoutExpired as err:
            raise BenchError(f"{self.label}: {' '.join(argv)} timed out after {timeout}s") from err
        return done.returncode, done.stdout.decode(errors="replace"), \
            done.stderr.decode(errors="replace")


def kill_cgroup(path, timeout=10.0):
    """SIGKILLs every process below the cgroup (cgroup.kill, Linux 5.14+, or one by
    one) and waits until it is empty."""
    if not os.path.isdir(path):
        return True
    kill_file = os.path.join(path, "cgroup.kill")
    if os.path.exists(kill_file):
        with contextlib.suppress(OSError):
            with open(kill_file, "w", encoding="ascii") as f:
                f.write("1")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(os.path.join(path, "cgroup.events"), encoding="ascii") as f:
            if "populated 0" in f.read():
                return True
        if not os.path.exists(kill_file):
            for root, _dirs, _files in os.walk(path):
                with contextlib.suppress(OSError), \
                        open(os.path.join(root, "cgroup.procs"), encoding="ascii") as f:
                    for pid in f.read().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.05)
    return False


def remove_cgroup_tree(path):
    """rmdir of the cgroup and its children, deepest first (they must be empty)."""
    if not os.path.isdir(path):
        return True
    ok = True
    dirs = [root for root, _d, _f in os.walk(path)]
    for d in sorted(dirs, key=len, reverse=True):
        for _ in range(50):
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError:
                # EBUSY for a moment after the last process left.
                time.sleep(0.1)
        else:
            ok = False
    return ok
