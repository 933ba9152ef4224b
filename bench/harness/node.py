"""The benchmark's node: its own netns where the real bridge + host-local CNI
plugins run (chained with meshlane for the meshlane cases), pods as network
namespaces, sidecars and servers as processes in the benchmark's own child cgroups,
a private bpffs. Everything carries the name meshlane-bench and is removed by
`Node.teardown` (also after Ctrl-C) or by the sweep at the start of the next run."""

import contextlib
import dataclasses
import glob
import json
import os
import re
import shutil
import socket
import time

import cni_chain  # scripts/lib, shared with the demo (see __init__.py)
import mountinfo

from . import sysutil
from .sysutil import BenchError, Place, in_netns

NAME = "meshlane-bench"
NODE_NETNS = f"{NAME}-node"
BRIDGE = "mlbench0"
# Lives only inside the node netns and the pods, never on the host's networks. A
# /16 holds the 8 measured pods and the pod-setup pods.
SUBNET = "10.231.0.0/16"
PROXY_ID = 1337
APP_ID = 1000

ENVOY_ADMIN_PORT = 15000
OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
QPERF_PORT = 19765
QPERF_DATA_PORT = 19766
CONNRATE_PORT = 18080
SOCKPERF_PORT = 11111
HOST_CONNRATE_PORT = {"on": 18081, "off": 18082}

# What Istio's injector writes on a pod it gave a sidecar (with the CNI plugin doing
# the capture it adds istio-validation instead of istio-init): meshlane's Istio
# selection captures the pod because of it.
INJECTED_STATUS = json.dumps({"initContainers": ["istio-validation"],
                              "containers": ["istio-proxy"], "templates": ["sidecar"]})

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ISTIO_RULES = os.path.join(BENCH_DIR, "istio-sidecar.rules")

# The cases, in the order each repetition runs them.
CASES = {
    1: {"name": "no mesh", "key": "direct",
        "what": "pod to pod over the bridge, no sidecar"},
    2: {"name": "Istio iptables", "key": "iptables",
        "what": "Envoy sidecars, Istio's REDIRECT rules (iptables-restore) in both pods"},
    3: {"name": "meshlane", "key": "meshlane",
        "what": "Envoy sidecars, meshlane capture, \"shortPath\": false"},
    4: {"name": "meshlane + short path", "key": "meshlane-sp",
        "what": "Envoy sidecars, meshlane capture, \"shortPath\": true"},
    5: {"name": "Envoy floor", "key": "floor",
        "what": "the same Envoys with no capture: the client app connects to its Envoy's "
                "listener for the destination, which connects to the server Envoy's plain "
                "listener, which forwards to the app on localhost"},
}
# Case 5 (the floor): one listener per destination port on each Envoy, since no
# original destination is there to read. The client app connects to its own Envoy
# on 127.0.0.1:PORT; the client Envoy connects to the server pod's FLOOR_INBOUND[PORT],
# where the server Envoy listens and forwards to 127.0.0.1:PORT.
FLOOR_PORTS = (QPERF_PORT, QPERF_DATA_PORT, CONNRATE_PORT, SOCKPERF_PORT)
FLOOR_INBOUND = {port: 15100 + i for i, port in enumerate(FLOOR_PORTS)}
# meshlane instances: one per node-wide setting, each with its own bpffs root and
# its own cgroup (see docs/benchmarks.md, "How the cases are built").
INSTANCES = {"off": {"short_path": False, "case": 3}, "on": {"short_path": True, "case": 4}}


def random_id():
    return os.urandom(32).hex()


# --- what both nodes are made of (this one and meshnode.MeshNode) ----------------

def private_node(name, subdirs):
    """A node's own temp dir /tmp/<name>.*/ (bin/ with the primary CNI plugins, a
    private bpffs on bpffs/, and `subdirs`) and its own child cgroup <name> of the
    cgroup2 mount, never the root cgroup. Unmounting the bpffs drops every pin in
    it, which detaches meshlane's programs. Returns (temp dir, cgroup)."""
    root = mountinfo.cgroup2_mount()
    if not root:
        raise BenchError("no cgroup2 mount in /proc/self/mountinfo (meshlane needs cgroup v2)")
    tmp = sysutil.private_tmp(f"{name}.", ("bpffs", "bin", *subdirs))
    sysutil.run(["mount", "-t", "bpf", "bpf", os.path.join(tmp, "bpffs")])
    cgroup = os.path.join(root, name)
    os.mkdir(cgroup)
    for plugin in ("bridge", "host-local"):
        os.symlink(f"/usr/lib/cni/{plugin}", os.path.join(tmp, "bin", plugin))
    return tmp, cgroup


def bridge_entry(bridge, tmp, subnet):
    """The primary plugin: `bridge` with host-local IPAM keeping its state in the
    node's temp dir, no ipMasq (no iptables rule of the host's)."""
    return {
        "type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
        "ipam": {"type": "host-local", "dataDir": os.path.join(tmp, "ipam"),
                 "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}]},
    }


def meshlane_entry(bpffs_root, cgroup, log_file, **keys):
    """meshlane chained after the bridge. Every path points inside the node:
    otherwise meshlane would pin under /sys/fs/bpf, attach to the machine's cgroup2
    root and log to /var/log."""
    return {
        "type": "meshlane",
        "capabilities": {"io.kubernetes.cri.pod-annotations": True},
        "bpffsRoot": bpffs_root,
        "cgroupPath": cgroup,
        "logFile": log_file,
        **keys,
    }


def chain_add(chain, pod):
    """The chain's ADD of `pod`: keeps its result and IPv4 address on the pod;
    returns the plugin runs."""
    result, runs = chain.add(pod.runtime())
    if result is None:
        plugin_seconds(runs[-1])
        raise BenchError(f"CNI {runs[-1].plugin} ADD of {pod.name} returned no result")
    pod.result = result
    pod.ip = cni_chain.ipv4_addresses(result)[0].split("/")[0]
    return runs


# --- leftovers --------------------------------------------------------------------

def leftovers():
    """Everything of an earlier run that is still there, named."""
    found = []
    root = mountinfo.cgroup2_mount()
    if root and os.path.isdir(os.path.join(root, NAME)):
        found.append(("cgroup", os.path.join(root, NAME)))
    for path in sorted(glob.glob(os.path.join(sysutil.NETNS_DIR, NAME + "-*"))):
        found.append(("netns", os.path.basename(path)))
    for point in mountinfo.mounts_below(f"/tmp/{NAME}."):
        found.append(("mount", point))
    for path in sorted(glob.glob(f"/tmp/{NAME}.*")):
        if re.fullmatch(rf"/tmp/{re.escape(NAME)}\.[A-Za-z0-9_]{{8}}", path) \
                and os.path.isdir(path) and not os.path.islink(path):
            found.append(("dir", path))
    return found


def remove_leftovers():
    """Removes every meshlane-bench thing: processes (through the cgroup), netns,
    bpffs mounts (which drops meshlane's pins and detaches its programs), cgroups,
    temp dirs. Returns what could not be removed."""
    root = mountinfo.cgroup2_mount()
    cg = os.path.join(root, NAME) if root else None
    if cg and os.path.isdir(cg):
        sysutil.kill_cgroup(cg)
    for kind, item in leftovers():
        if kind == "netns":
            sysutil.del_netns(item)
    for point in mountinfo.mounts_below(f"/tmp/{NAME}."):
        sysutil.run(["umount", point], check=False)
    if cg:
        sysutil.remove_cgroup_tree(cg)
    for kind, item in leftovers():
        if kind == "dir" and not mountinfo.mounts_below(item + "/"):
            shutil.rmtree(item, ignore_errors=True)
    return leftovers()


# --- the node ---------------------------------------------------------------------

@dataclasses.dataclass(eq=False)
class Pod:
    """A pod: its netns, its case and conflist (None on a MeshNode), what the chain's
    ADD returned, and the processes started in it by name."""
    name: str
    case: int | None
    netns: str
    container_id: str
    conflist: str | None
    annotations: dict
    result: dict | None = None
    ip: str | None = None
    processes: dict = dataclasses.field(default_factory=dict)

    def runtime(self):
        """The attachment as the runtime describes it to the CNI plugins."""
        return cni_chain.runtime_conf(
            self.container_id, self.netns, "eth0",
            f"IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={self.name};"
            f"K8S_POD_INFRA_CONTAINER_ID={self.container_id}",
            self.annotations)


def plugin_seconds(run):
    """Seconds from spawn to exit of a CNI plugin run; a failed run is an error."""
    if not run.ok:
        raise BenchError(f"CNI {run.describe()}")
    return run.seconds


@dataclasses.dataclass(eq=False)
class Node:
    """The benchmark's node; `build` makes it, `teardown` removes it."""
    meshlane: str
    envoy: str
    connrate: str
    log: object = print
    tmp: str | None = None
    cgroup: str | None = None
    node_netns: str | None = None
    pods: dict = dataclasses.field(default_factory=dict)
    # Path of each of the benchmark's cgroups, by case or role.
    cgroups: dict = dataclasses.field(default_factory=dict)
    conflists: dict = dataclasses.field(default_factory=dict)
    host_servers: dict = dataclasses.field(default_factory=dict)
    # "absent" or "unmounted" when this run's first `ip netns add` made /run/netns.
    run_netns_was: str | None = None

    # --- building ---------------------------------------------------------------

    def build(self):
        # Envoy (1337) and the apps (1000) read their files in the temp dir. Each
        # meshlane instance pins under its own root of the private bpffs.
        self.tmp, self.cgroup = private_node(NAME, ("ipam", "envoy", "logs"))
        # Below the benchmark's own cgroup: meshlane attaches its node-wide
        # programs to mesh-off and mesh-on, and every benchmark process runs in one
        # of these (cpu.stat of each gives the CPU of one case).
        layout = {
            "case1": "case1", "case2": "case2", "case5": "case5",
            "mesh-off": "mesh-off", "case3": "mesh-off/pods",
            "mesh-on": "mesh-on", "case4": "mesh-on/pods",
            "host-on": "mesh-on/host", "host-off": "host-plain",
        }
        for key, rel in layout.items():
            path = os.path.join(self.cgroup, rel)
            os.makedirs(path, exist_ok=True)
            self.cgroups[key] = path
        # The first `ip netns add` on a machine may create /run/netns and make it a
        # mount point: note it, so the teardown can undo it.
        if not os.path.isdir(sysutil.NETNS_DIR):
            self.run_netns_was = "absent"
        elif not os.path.ismount(sysutil.NETNS_DIR):
            self.run_netns_was = "unmounted"
        # The node: the CNI plugins run here (bridge makes its bridge and veths in the
        # netns it runs in), so the host's own network is untouched.
        self.node_netns = sysutil.add_netns(NODE_NETNS)
        os.symlink(self.meshlane, os.path.join(self.tmp, "bin", "meshlane"))
        # UID 1337 may not reach the Envoy binary (e.g. under /root): use copies. A
        # node that only adds pods (bench/pod_setup.py) runs neither.
        if self.envoy:
            self.envoy = self._private_copy(self.envoy, "envoy-bin")
        if self.connrate:
            self.connrate = self._private_copy(self.connrate, "connrate")
        self._write_conflists()

    def _private_copy(self, path, name):
        copy = os.path.join(self.tmp, name)
        shutil.copy(path, copy)
        os.chmod(copy, 0o755)
        return copy

    def _write_conflists(self):
        bridge = bridge_entry(BRIDGE, self.tmp, SUBNET)
        # One network name for every conflist: the pods share one bridge and one
        # host-local pool.
        self.conflists["plain"] = {"cniVersion": "1.0.0", "name": NAME, "plugins": [bridge]}
        for inst, spec in INSTANCES.items():
            entry = meshlane_entry(self.bpffs_root(inst), self.cgroups[f"mesh-{inst}"],
                                   os.path.join(self.tmp, "logs", f"meshlane-{inst}.log"),
                                   shortPath=spec["short_path"])
            self.conflists[inst] = {"cniVersion": "1.0.0", "name": NAME,
                                    "plugins": [bridge, entry]}
        for key, conflist in self.conflists.items():
            with open(os.path.join(self.tmp, f"{key}.conflist"), "w", encoding="utf-8") as f:
                json.dump(conflist, f, indent=2)

    def bpffs_root(self, inst):
        return os.path.join(self.tmp, "bpffs", inst)

    # --- CNI (what libcni does for a runtime: scripts/lib/cni_chain.py) ----------

    def chain(self, key):
        """The CNI chain of one of the conflists, run in the node netns."""
        return cni_chain.Chain(self.conflists[key], os.path.join(self.tmp, "bin"),
                               self.node_netns)

    def chain_add(self, pod):
        chain_add(self.chain(pod.conflist), pod)

    def chain_del(self, pod):
        plugin_seconds(self.chain(pod.conflist).delete(pod.runtime(), pod.result)[-1])

    # --- pods -------------------------------------------------------------------------

    def new_pod(self, name, case, conflist, captured):
        netns = sysutil.add_netns(f"{NAME}-{name}")
        annotations = {"sidecar.istio.io/status": INJECTED_STATUS} if captured else {}
        pod = Pod(name, case, netns, random_id(), conflist, annotations)
        self.pods[name] = pod
        return pod

    def add_case_pods(self, case, extra_annotations=None):
        """The client and server pod of a case, through the case's chain; Istio's
        rules in case 2; per-netns sysctls alike in every case. extra_annotations
        go on both pods (e.g. meshlane's per-pod short-path setting for case 4)."""
        conflist = {1: "plain", 2: "plain", 3: "off", 4: "on", 5: "plain"}[case]
        pods = []
        for role in ("client", "server"):
            pod = self.new_pod(f"c{case}-{role}", case, conflist, captured=case in (3, 4))
            pod.annotations.update(extra_annotations or {})
            self.chain_add(pod)
            # Many short connections per second: let TIME_WAIT ports be reused (the
            # default, 2, allows it over loopback only). The same in every case.
            sysutil.write_sysctl_in(pod.netns, "net.ipv4.tcp_tw_reuse", "1")
            if case == 2:
                self.apply_istio_rules(pod.netns)
            pods.append(pod)
        return pods

    def apply_istio_rules(self, netns):
        """iptables-restore --noflush of Istio's rule set in the netns; returns the
        seconds the iptables-restore process took (spawn to exit)."""
        with open(ISTIO_RULES, "rb") as f:
            rules = f.read()
        # Timed like the plugin runs (cni_chain.run_in_netns), so the two compare.
        done, took = cni_chain.run_in_netns(["iptables-restore", "--noflush"], rules,
                                            {"PATH": sysutil.CHILD_PATH}, netns)
        if done.returncode != 0:
            raise BenchError(f"iptables-restore in {netns} failed: "
                             f"{done.stderr.decode(errors='replace').strip()}")
        return took

    def time_process(self, argv, stdin, env=None):
        """Seconds from spawn to exit of a process started in the node netns the way
        the timed CNI plugin runs are started."""
        done, seconds = cni_chain.run_in_netns(argv, stdin, env or {"PATH": sysutil.CHILD_PATH},
                                               self.node_netns)
        if done.returncode != 0:
            raise BenchError(f"{' '.join(argv)} failed (exit status {done.returncode}): "
                             f"{done.stderr.decode(errors='replace').strip()}")
        return seconds

    def place(self, pod_name):
        pod = self.pods[pod_name]
        return Place(pod_name, pod.netns, self.cgroups[f"case{pod.case}"])

    def host_place(self, hooks):
        return Place(f"host-{hooks}", self.node_netns, self.cgroups[f"host-{hooks}"])

    # --- processes ----------------------------------------------------------------

    def log_path(self, name):
        return os.path.join(self.tmp, "logs", name)

    def start_servers(self, case):
        """qperf and connrate servers in the case's server pod, as an app user."""
        name = f"c{case}-server"
        place = self.place(name)
        pod = self.pods[name]
        pod.processes["qperf"] = place.popen(["qperf", "--listen_port", str(QPERF_PORT)],
                                             uid=APP_ID, gid=APP_ID,
                                             log=self.log_path(f"{name}-qperf.log"))
        pod.processes["connrate"] = place.popen(
            [self.connrate, "server", "--listen", f"0.0.0.0:{CONNRATE_PORT}", "--threads", "4"],
            uid=APP_ID, gid=APP_ID, log=self.log_path(f"{name}-connrate.log"))
        pod.processes["sockperf"] = place.popen(
            ["sockperf", "server", "--tcp", "-i", "0.0.0.0", "-p", str(SOCKPERF_PORT)],
            uid=APP_ID, gid=APP_ID, log=self.log_path(f"{name}-sockperf.log"))
        for port in (QPERF_PORT, CONNRATE_PORT, SOCKPERF_PORT):
            self.wait_listening(pod, port)

    def start_host_servers(self):
        for hooks, port in HOST_CONNRATE_PORT.items():
            place = self.host_place(hooks)
            proc = place.popen([self.connrate, "server", "--listen", f"127.0.0.1:{port}",
                                "--threads", "4"], uid=APP_ID, gid=APP_ID,
                               log=self.log_path(f"host-{hooks}-connrate.log"))
            self.host_servers[hooks] = proc
            self.wait_port(self.node_netns, "127.0.0.1", port, proc, f"host-{hooks} server")

    def wait_listening(self, pod, port):
        proc = next(iter(pod.processes.values()))
        self.wait_port(pod.netns, "127.0.0.1", port, proc, f"{pod.name}:{port}")

    def wait_port(self, netns, addr, port, proc, what, timeout=30):
        """Polls until something listens. The probe comes from the harness, which is
        outside every meshlane cgroup and runs as root: it is never captured."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise BenchError(f"{what} exited during start-up")
            with in_netns(netns):
                s = socket.socket()
            try:
                s.settimeout(0.5)
                s.connect((addr, port))
                return
            except OSError:
                time.sleep(0.05)
            finally:
                s.close()
        raise BenchError(f"nothing listens on {addr}:{port} for {what} after {timeout}s")

    def envoy_bootstrap(self, pod_name):
        if self.pods[pod_name].case == 5:
            return envoy_bootstrap(pod_name, *self._floor_resources(pod_name))
        return envoy_bootstrap(pod_name, *capture_resources())

    def _floor_resources(self, pod_name):
        """Case 5: plain listeners and static clusters, nothing transparent. The
        client Envoy has 127.0.0.1:PORT → server pod:FLOOR_INBOUND[PORT]; the server
        Envoy has 0.0.0.0:FLOOR_INBOUND[PORT] → 127.0.0.1:PORT."""
        listeners, clusters = [], []
        for port, inbound in FLOOR_INBOUND.items():
            if pod_name.endswith("-client"):
                name, listen, upstream = f"out-{port}", ("127.0.0.1", port), \
                    (self.pods["c5-server"].ip, inbound)
            else:
                name, listen, upstream = f"in-{port}", ("0.0.0.0", inbound), ("127.0.0.1", port)
            listeners.append({
                "name": name,
                "address": {"socket_address": {"address": listen[0], "port_value": listen[1]}},
                "filter_chains": [{"filters": [_tcp_proxy(name, name)]}]})
            clusters.append({
                "name": name, "type": "STATIC", "connect_timeout": "5s",
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {
                        "address": upstream[0], "port_value": upstream[1]}}}}]}]}})
        return listeners, clusters

    def server_addr(self, case):
        """Where the case's client app connects: the server pod, which the capture
        (cases 2-4) sends through both sidecars; in case 5 the client's own Envoy."""
        return "127.0.0.1" if case == 5 else self.pods[f"c{case}-server"].ip

    def start_envoy(self, pod_name, concurrency):
        pod = self.pods[pod_name]
        work = os.path.join(self.tmp, "envoy", pod_name)
        os.mkdir(work)
        os.chown(work, PROXY_ID, PROXY_ID)
        bootstrap = os.path.join(work, "bootstrap.json")
        with open(bootstrap, "w", encoding="utf-8") as f:
            json.dump(self.envoy_bootstrap(pod_name), f, indent=1)
        os.chmod(bootstrap, 0o644)
        proc = self.place(pod_name).popen(
            [self.envoy, "-c", bootstrap, "--disable-hot-restart",
             "--concurrency", str(concurrency), "--log-level", "warn"],
            uid=PROXY_ID, gid=PROXY_ID, log=os.path.join(work, "envoy.log"))
        pod.processes["envoy"] = proc
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(f"Envoy in {pod_name} exited during start-up: "
                                 f"{sysutil.tail(os.path.join(work, 'envoy.log'), 20)}")
            with contextlib.suppress(OSError):
                status, body = self.admin_get(pod_name, "/ready")
                if status == 200 and body.startswith("LIVE"):
                    return proc
            time.sleep(0.1)
        raise BenchError(f"Envoy in {pod_name} not ready after 60 s")

    def admin_get(self, pod_name, path):
        """GET on the sidecar's admin port (127.0.0.1:15000 in the pod), from the
        harness (outside every meshlane cgroup; Istio's rules RETURN 127.0.0.1)."""
        with in_netns(self.pods[pod_name].netns):
            s = socket.create_connection(("127.0.0.1", ENVOY_ADMIN_PORT), timeout=2)
        try:
            s.settimeout(5)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
        status = int(head.split()[1])
        if "transfer-encoding: chunked" in head.lower():
            body = _dechunk(body)
        return status, body

    def envoy_counters(self, pod_name):
        """Downstream connections accepted by a sidecar's listeners for the apps'
        traffic: outbound (the capture's 15001, case 5's 127.0.0.1:PORT listeners)
        and inbound (15006, case 5's FLOOR_INBOUND listeners), summed per direction."""
        listeners = {f"0.0.0.0_{OUTBOUND_PORT}": "outbound_cx",
                     f"0.0.0.0_{INBOUND_PORT}": "inbound_cx"}
        for port, inbound in FLOOR_INBOUND.items():
            listeners[f"127.0.0.1_{port}"] = "outbound_cx"
            listeners[f"0.0.0.0_{inbound}"] = "inbound_cx"
        _, body = self.admin_get(pod_name, "/stats?filter=downstream_cx_total")
        counters = {}
        for line in body.splitlines():
            name, _, value = line.partition(": ")
            listener = name.removeprefix("listener.").removesuffix(".downstream_cx_total")
            key = listeners.get(listener) if name.startswith("listener.") else None
            if key:
                counters[key] = counters.get(key, 0) + int(value)
        return counters

    def meshlane_cli(self, inst, command):
        done = sysutil.run([self.meshlane, command, "--bpffs-root", self.bpffs_root(inst)],
                           check=False)
        return done.returncode, done.stdout.decode(errors="replace") + \
            done.stderr.decode(errors="replace")

    # --- teardown -----------------------------------------------------------------

    def teardown(self):
        """Stops every process, removes the pods' and the node's netns, the bpffs,
        the cgroups and the temp dir. Returns what is left behind (empty: clean)."""
        if self.cgroup:
            sysutil.kill_cgroup(self.cgroup)
        for pod in list(self.pods.values()):
            sysutil.del_netns(os.path.basename(pod.netns))
        sysutil.del_netns(NODE_NETNS)
        left = remove_leftovers()
        self._restore_run_netns()
        return left

    def _restore_run_netns(self):
        if self.run_netns_was is None:
            return
        with contextlib.suppress(OSError):
            if os.listdir(sysutil.NETNS_DIR):
                return
            if os.path.ismount(sysutil.NETNS_DIR):
                sysutil.run(["umount", sysutil.NETNS_DIR], check=False)
            if self.run_netns_was == "absent":
                os.rmdir(sysutil.NETNS_DIR)


def envoy_bootstrap(pod_name, listeners, clusters):
    """A sidecar's bootstrap: its admin port on 127.0.0.1, static listeners and
    clusters (bench/churn.py's sidecars: `capture_resources()`)."""
    return {
        "node": {"id": f"sidecar~0.0.0.0~{pod_name}.bench~bench.svc.cluster.local",
                 "cluster": NAME},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                 "port_value": ENVOY_ADMIN_PORT}}},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }


def _tcp_proxy(stat_prefix, cluster):
    return {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "stat_prefix": stat_prefix, "cluster": cluster}}


def _capture_listener(name, port, cluster):
    # Istio's virtualOutbound / virtualInbound reduced to TCP: original_dst
    # reads SO_ORIGINAL_DST, tcp_proxy forwards to that address; a connection
    # made straight to the listener port goes to the blackhole (loop guard).
    return {
        "name": name,
        "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
        "listener_filters": [{"name": "envoy.filters.listener.original_dst", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"}}],
        "filter_chains": [
            {"name": f"{name}-blackhole", "filter_chain_match": {"destination_port": port},
             "filters": [_tcp_proxy("BlackHoleCluster", "BlackHoleCluster")]},
            {"name": f"{name}-passthrough", "filters": [_tcp_proxy(cluster, cluster)]},
        ],
    }


def capture_resources():
    """Cases 2-4: a sidecar's capture listeners and clusters, as Istio's."""
    listeners = [
        _capture_listener("virtualOutbound", OUTBOUND_PORT, "PassthroughCluster"),
        _capture_listener("virtualInbound", INBOUND_PORT, "InboundPassthroughClusterIpv4"),
    ]
    clusters = [
        {"name": "PassthroughCluster", "type": "ORIGINAL_DST",
         "lb_policy": "CLUSTER_PROVIDED", "connect_timeout": "5s"},
        # Istio's inbound hand-off: to the original destination, from
        # 127.0.0.6, which neither capture touches again.
        {"name": "InboundPassthroughClusterIpv4", "type": "ORIGINAL_DST",
         "lb_policy": "CLUSTER_PROVIDED", "connect_timeout": "5s",
         "upstream_bind_config": {"source_address": {"address": "127.0.0.6",
                                                     "port_value": 0}}},
        {"name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "1s"},
    ]
    return listeners, clusters


def _dechunk(body):
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition("\r\n")
        try:
            size = int(size_line.strip() or "0", 16)
        except ValueError:
            break
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2:]
    return "".join(out)
