"""A CNI chain run the way containerd and CRI-O run it through libcni (python3
standard library only). scripts/demo/chain.py and the benchmark's node
(bench/harness/node.py) use it; the Rust tests have their own
(tests/common/chain.rs) that does the same.

- ADD runs the plugins of the conflist in order. Each one gets its conflist entry
  on stdin with the list's `name` and `cniVersion` injected, `runtimeConfig`
  holding the runtime's values for the capabilities the entry declares, and the
  previous plugin's result as `prevResult`; the last result is the pod's result,
  which the runtime caches. A failing plugin stops the chain.
- DEL runs the plugins in reverse order, each with the cached result as
  `prevResult` (from cniVersion 0.4.0 on, and only when there is one: a pod whose
  ADD failed is DELeted without).
- Every plugin runs inside the node's network namespace (the bridge plugin makes
  its bridge and veths in the netns it runs in), with CNI_* and a plain PATH as its
  whole environment, in /.
- The pod's annotations reach plugins that declare the
  `io.kubernetes.cri.pod-annotations` capability; for a pod without annotations
  containerd 1.6 passes `null`, and so does this runner.
"""

import json
import os
import subprocess
import threading
import time

from netns import in_netns

POD_ANNOTATIONS = "io.kubernetes.cri.pod-annotations"
PLUGIN_TIMEOUT = 60
# The environment a runtime gives plugins: CNI_* plus a plain PATH (iptables and
# friends are looked up there). Nothing of the caller's environment leaks in.
PLUGIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def runtime_conf(container_id, netns, ifname="eth0", args="", annotations=None):
    """What the runtime knows about one attachment (libcni's RuntimeConf), as JSON:
    `args` is CNI_ARGS ("K=V;K=V"), `annotations` the pod's (None or {}: none)."""
    return {
        "container_id": container_id,
        "netns": netns,
        "ifname": ifname,
        "args": args,
        # containerd marshals a pod's nil annotation map as null.
        "capability_args": {POD_ANNOTATIONS: dict(annotations) if annotations else None},
    }


def plugin_config(conflist, entry, prev_result, capability_args):
    """libcni's buildOneConfig: the entry plus the list's name and version,
    runtimeConfig holding the runtime's values for the capabilities it declares,
    and the previous result."""
    conf = dict(entry)
    conf["name"] = conflist["name"]
    conf["cniVersion"] = conflist["cniVersion"]
    declared = [name for name, on in entry.get("capabilities", {}).items() if on]
    runtime_config = {name: capability_args[name] for name in declared if name in capability_args}
    if runtime_config:
        conf["runtimeConfig"] = runtime_config
    if prev_result is not None:
        conf["prevResult"] = prev_result
    return conf


def plugin_env(command, rt, cni_path):
    """The whole environment of a plugin run for `command` on attachment `rt`."""
    env = {"PATH": PLUGIN_PATH, "CNI_COMMAND": command}
    if rt is not None:
        env.update({
            "CNI_CONTAINERID": rt["container_id"],
            "CNI_NETNS": rt["netns"],
            "CNI_IFNAME": rt["ifname"],
            "CNI_ARGS": rt["args"],
        })
    env["CNI_PATH"] = cni_path
    return env


def run_in_netns(argv, stdin, env, netns, timeout=PLUGIN_TIMEOUT):
    """Runs argv to completion inside `netns`, in /, with exactly `env`. Returns the
    CompletedProcess and the seconds from spawn to exit (the setns before and after
    is not counted). Raises subprocess.TimeoutExpired or OSError."""
    with in_netns(netns):
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd="/")
    return finish_timed(proc, stdin, start, timeout)


def finish_timed(proc, stdin, start, timeout):
    """Feeds `stdin` to a started process, collects its output and waits for its
    exit. Returns the CompletedProcess and the seconds since `start`.

    The timeout is a timer that kills the process, not subprocess's own: with a
    timeout, subprocess waits for the exit by polling with sleeps of 0.5 ms and up,
    which added about 1 ms to a plugin run that takes one (the benchmark times
    these runs; bench/method.md)."""
    killed = threading.Event()

    def kill():
        killed.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        stdout, stderr = proc.communicate(stdin)
    finally:
        timer.cancel()
    seconds = time.perf_counter() - start
    if killed.is_set():
        raise subprocess.TimeoutExpired(proc.args, timeout, stdout, stderr)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), seconds


class PluginRun:
    """One plugin execution, with everything needed to explain a failure."""

    def __init__(self, plugin, command, stdin):
        self.plugin = plugin
        self.command = command
        self.stdin = stdin
        self.returncode = None
        self.stdout = ""
        self.stderr = ""
        self.seconds = None
        self.result = None
        # Why it did not finish normally, when it did not.
        self.problem = None

    @property
    def ok(self):
        return self.problem is None and self.returncode == 0

    def outcome(self):
        if self.problem:
            return self.problem
        return f"exit status {self.returncode}"

    def describe(self):
        """The failure as a runtime logs it: the plugin's stdin, its stdout (the CNI
        error object) and its stderr."""
        return (f"{self.plugin:<9} {self.command} FAILED ({self.outcome()})\n"
                f"  stdin:  {self.stdin}\n"
                f"  stdout: {self.stdout.strip() or '(empty)'}\n"
                f"  stderr: {self.stderr.strip() or '(empty)'}")


class Chain:
    """Runs the plugins of `conflist` (a parsed conflist) from `cni_path` inside the
    node netns at `node_netns`."""

    def __init__(self, conflist, cni_path, node_netns):
        self.conflist = conflist
        self.cni_path = cni_path
        self.node_netns = node_netns

    def run_plugin(self, command, entry, rt, prev_result):
        """One plugin of the chain, for `command` on attachment `rt`."""
        conf = plugin_config(self.conflist, entry, prev_result, rt["capability_args"])
        run = PluginRun(entry["type"], command, json.dumps(conf))
        argv = [os.path.join(self.cni_path, entry["type"])]
        env = plugin_env(command, rt, self.cni_path)
        try:
            done, run.seconds = run_in_netns(argv, run.stdin.encode(), env, self.node_netns)
        except subprocess.TimeoutExpired:
            run.problem = f"timed out after {PLUGIN_TIMEOUT}s"
            return run
        except OSError as err:
            run.problem, run.stderr = "could not start", str(err)
            return run
        run.returncode = done.returncode
        run.stdout = done.stdout.decode(errors="replace")
        run.stderr = done.stderr.decode(errors="replace")
        if run.stdout.strip():
            try:
                run.result = json.loads(run.stdout)
            except ValueError:
                run.problem = f"exit status {run.returncode}, stdout is not JSON"
        return run

    def add(self, rt, each=None):
        """ADD through the chain. Returns (result, runs): result is the last
        plugin's output, None when a plugin failed or printed no result (then the
        last run says which). `each(entry, prev_result, run)` sees every run as it
        ends and may stop the chain by returning False."""
        runs, prev = [], None
        for entry in self.conflist["plugins"]:
            run = self.run_plugin("ADD", entry, rt, prev)
            runs.append(run)
            if not run.ok or run.result is None:
                return None, runs
            if each is not None and each(entry, prev, run) is False:
                return None, runs
            prev = run.result
        return prev, runs

    def delete(self, rt, cached_result):
        """DEL through the chain in reverse order. Returns the runs; the last one
        failed if not all are ok."""
        if not self.version_at_least(0, 4):
            cached_result = None
        runs = []
        for entry in reversed(self.conflist["plugins"]):
            runs.append(self.run_plugin("DEL", entry, rt, cached_result))
            if not runs[-1].ok:
                break
        return runs

    def version_at_least(self, major, minor):
        parts = [int(p) if p.isdigit() else 0 for p in self.conflist["cniVersion"].split(".")]
        return (parts + [0, 0])[:2] >= [major, minor]


def ipv4_addresses(result):
    """The IPv4 addresses ("10.1.2.3/24") of a CNI result."""
    return [ip["address"] for ip in (result or {}).get("ips", [])
            if "." in ip.get("address", "")]
