"""A private node for the load scripts (bench/churn.py, bench/scale.py): its own node
netns where the real bridge + host-local plugins run chained with meshlane, its own
bpffs and child cgroup (never the root cgroup), pods as netns, and every process
started by pid. Thread-safe: a runtime's ADDs and DELs run in parallel.

Processes are placed without preexec_fn (not safe in a threaded Python):
`nsenter --net` enters the pod's netns, a shell writes its own pid into the hooked
cgroup, then `setpriv` drops to the process's user and execs it (one pid all along).
`teardown` kills every process by pid, deletes every netns (the bridge goes with
the node netns), unmounts the bpffs, removes the cgroup and the temp dir."""

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time

import cni_chain  # scripts/lib (see __init__.py)

from . import node, sysutil
from .sysutil import BenchError, in_netns, tail

PROXY_ID = 1337
APP_ID = 1000
SO_NETNS_COOKIE = 71
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Pod(node.Pod):
    """A captured (Istio-injected) pod of a MeshNode."""

    def __init__(self, name, netns, container_id):
        super().__init__(name, None, netns, container_id, None,
                         {"sidecar.istio.io/status": node.INJECTED_STATUS})
        self.cookie = None
        # Traffic holds it while it uses the pod; a DEL takes it first.
        self.lock = threading.Lock()


class MeshNode:
    def __init__(self, meshlane, prefix, subnet, log=print, cpu_clock=False, keys=None):
        self.meshlane = os.path.realpath(meshlane)
        self.prefix = f"{prefix}{os.getpid()}"
        self.subnet = subnet
        self.log = log
        self.tmp = None
        self.bpffs = None
        self.cgroup = None
        self.node_netns = None
        self.conflist = None
        self.tool = None
        self.netns_names = set()
        self.pids = set()
        self.guard = threading.Lock()
        self.sysctls_were = []
        # meshlane runs under `perf stat`: its own CPU time, on its stderr.
        self.cpu_clock = cpu_clock
        # More keys of meshlane's entry (e.g. "shortPath").
        self.keys = keys or {}

    # --- building ---------------------------------------------------------------

    def build(self):
        # meshlane hooks the node's own child cgroup.
        self.tmp, self.cgroup = node.private_node(self.prefix, ("ipam", "logs"))
        self.bpffs = os.path.join(self.tmp, "bpffs")
        self.node_netns = self.add_netns("node")
        bin_dir = os.path.join(self.tmp, "bin")
        if self.cpu_clock:
            with open(os.path.join(bin_dir, "meshlane"), "w", encoding="utf-8") as f:
                f.write("#!/bin/sh\nexec perf stat -x, -e task-clock --log-fd 2 -- "
                        f"{shlex.quote(self.meshlane)} \"$@\"\n")
            os.chmod(os.path.join(bin_dir, "meshlane"), 0o755)
        else:
            os.symlink(self.meshlane, os.path.join(bin_dir, "meshlane"))
        self.tool = os.path.join(self.tmp, "origdst-load")
        sysutil.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", self.tool,
                     os.path.join(REPO, "tests", "tools", "origdst_load.c")])
        os.chmod(self.tool, 0o755)
        bridge = node.bridge_entry(f"ml{os.getpid() % 100000}", self.tmp, self.subnet)
        meshlane = node.meshlane_entry(self.pin_root(), self.cgroup,
                                       os.path.join(self.tmp, "logs", "meshlane.log"),
                                       **self.keys)
        self.conflist = {"cniVersion": "1.0.0", "name": self.prefix,
                         "plugins": [bridge, meshlane]}

    def raise_sysctls(self, wanted):
        """Machine-wide sysctls ({key: value}) raised to at least `value` for the run;
        teardown puts the old values back."""
        for key, value in wanted.items():
            path = "/proc/sys/" + key.replace(".", "/")
            with open(path, encoding="ascii") as f:
                was = int(f.read())
            if was < value:
                self.sysctls_were.append((path, was))
                with open(path, "w", encoding="ascii") as f:
                    f.write(str(value))

    def make_room_for_pods(self, pods):
        """What a bridge with `pods` ports needs of the machine (both are one for all
        netns of the machine). A broadcast on the bridge (every ARP request) is one
        packet per port, all queued on one CPU's backlog (netdev_max_backlog, 1,000):
        at 1,000 pods the copies for the last ports are dropped (counted as RX drops
        on their veth), their ARP never resolves and connections into them fail with
        EHOSTUNREACH. The neighbour table's garbage collector evicts entries from
        gc_thresh3 (1,024) on, and 1,000 pods hold two entries each (the node's for
        the pod, the pod's for the gateway). Large nodes raise both."""
        self.raise_sysctls({"net.core.netdev_max_backlog": 16 * pods,
                            "net.ipv4.neigh.default.gc_thresh1": 2 * pods,
                            "net.ipv4.neigh.default.gc_thresh2": 4 * pods,
                            "net.ipv4.neigh.default.gc_thresh3": 8 * pods})

    def pin_root(self):
        return os.path.join(self.bpffs, "meshlane")

    def add_netns(self, name):
        full = f"{self.prefix}-{name}"
        with self.guard:
            self.netns_names.add(full)
        return sysutil.add_netns(full)

    def del_netns(self, path):
        sysutil.del_netns(os.path.basename(path))

    # --- CNI ----------------------------------------------------------------------

    def chain(self):
        return cni_chain.Chain(self.conflist, os.path.join(self.tmp, "bin"), self.node_netns)

    def add(self, pod):
        """The chain's ADD; returns the seconds meshlane's own run took (spawn to
        exit) and, with cpu_clock, its CPU seconds (else None)."""
        runs = node.chain_add(self.chain(), pod)
        cpu = None
        for line in runs[-1].stderr.splitlines():
            fields = line.split(",")
            if len(fields) > 2 and fields[2] == "task-clock":
                cpu = float(fields[0]) / 1000
        return runs[-1].seconds, cpu

    def delete(self, pod, plugins=None):
        """The chain's DEL (or only `plugins`, in the chain's reverse order); returns
        the seconds meshlane's own run took (None when it did not run)."""
        chain = self.chain()
        took = None
        for entry in reversed(self.conflist["plugins"]):
            if plugins and entry["type"] not in plugins:
                continue
            run = chain.run_plugin("DEL", entry, pod.runtime(), pod.result)
            if not run.ok:
                raise BenchError(f"DEL of {pod.name}:\n{run.describe()}")
            if entry["type"] == "meshlane":
                took = run.seconds
        return took

    def gc(self, valid):
        """CNI GC (1.1) of meshlane with the runtime's valid attachments."""
        entry = dict(self.conflist["plugins"][-1])
        entry.update({"name": self.prefix, "cniVersion": "1.1.0",
                      "cni.dev/valid-attachments": [{"containerID": cid, "ifname": "eth0"}
                                                    for cid in valid]})
        env = cni_chain.plugin_env("GC", None, os.path.join(self.tmp, "bin"))
        done, took = cni_chain.run_in_netns([os.path.join(self.tmp, "bin", "meshlane")],
                                            json.dumps(entry).encode(), env, self.node_netns)
        if done.returncode != 0:
            raise BenchError(f"GC failed: {done.stdout.decode()} {done.stderr.decode()}")
        return took

    # --- processes ----------------------------------------------------------------

    def popen(self, netns, uid, argv, log, stdin=subprocess.DEVNULL):
        """argv in `netns`, in the hooked cgroup, as uid (= gid); output to `log`."""
        script = (f"echo $$ > {shlex.quote(os.path.join(self.cgroup, 'cgroup.procs'))} && "
                  f"exec setpriv --reuid={uid} --regid={uid} --clear-groups -- "
                  + " ".join(shlex.quote(a) for a in argv))
        out = open(log, "ab")  # noqa: SIM115
        try:
            proc = subprocess.Popen(["nsenter", f"--net={netns}", "sh", "-c", script],
                                    stdin=stdin, stdout=out, stderr=out, cwd="/",
                                    env={"PATH": sysutil.CHILD_PATH, "HOME": "/"})
        finally:
            out.close()
        with self.guard:
            self.pids.add(proc.pid)
        return proc

    def stop(self, proc, sig=signal.SIGTERM, timeout=10):
        """Stops one process by its pid and reaps it."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        with self.guard:
            self.pids.discard(proc.pid)

    def log_path(self, name):
        return os.path.join(self.tmp, "logs", name)

    def start_proxy(self, pod, name, ports=(15001, 15006), uid=PROXY_ID, local=False):
        """The minimal sidecar (tests/tools/origdst_load.c) in the pod; waits for READY."""
        log = self.log_path(f"{name}.log")
        argv = [self.tool, "proxy", "--name", name]
        for port in ports:
            argv += ["--port", str(port)]
        if local:
            argv.append("--local")
        proc = self.popen(pod.netns, uid, argv, log)
        pod.processes[name] = proc
        wait_for_line(proc, log, "READY", f"{name} in {pod.name}")
        return proc

    def netns_cookie(self, netns):
        with in_netns(netns):
            s = socket.socket()
        try:
            return int.from_bytes(s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), "little")
        finally:
            s.close()

    # --- teardown -----------------------------------------------------------------

    def teardown(self):
        """Kills every process by pid, removes every netns, the bpffs, the cgroup and
        the temp dir. Returns what could not be removed."""
        problems = []
        for path, value in self.sysctls_were:
            with open(path, "w", encoding="ascii") as f:
                f.write(str(value))
        with self.guard:
            pids = list(self.pids)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        if self.cgroup and not sysutil.kill_cgroup(self.cgroup):
            problems.append(f"processes left in {self.cgroup}")
        for name in sorted(self.netns_names):
            if os.path.exists(sysutil.netns_path(name)):
                sysutil.del_netns(name)
                if os.path.exists(sysutil.netns_path(name)):
                    problems.append(f"netns {name}")
        if self.bpffs and os.path.ismount(self.bpffs):
            if sysutil.run(["umount", self.bpffs], check=False).returncode != 0:
                problems.append(f"bpffs {self.bpffs}")
        if self.cgroup and not sysutil.remove_cgroup_tree(self.cgroup):
            problems.append(f"cgroup {self.cgroup}")
        if self.tmp and not problems:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return problems


def wait_for_line(proc, log, line, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), open(log, encoding="utf-8", errors="replace") as f:
            if any(text.strip() == line for text in f):
                return
        if proc.poll() is not None:
            raise BenchError(f"{what} exited before {line}: {tail(log)}")
        time.sleep(0.02)
    raise BenchError(f"{what}: no {line} after {timeout}s: {tail(log)}")


def json_lines(log, key):
    """The JSON lines of a log that have `key`."""
    found = []
    with contextlib.suppress(OSError), open(log, encoding="utf-8", errors="replace") as f:
        for text in f:
            with contextlib.suppress(ValueError):
                value = json.loads(text)
                if isinstance(value, dict) and key in value:
                    found.append(value)
    return found
