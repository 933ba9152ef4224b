#!/usr/bin/env python3
"""The sockmap lab: what sk_msg redirection costs and does on this kernel, hop by hop.

  sudo tests/tools/sockmap_lab.py bench [--sizes 1,64,...] [--reps 3] [--seconds 2]
                                        [--topology loopback,pods]
  sudo tests/tools/sockmap_lab.py edges

`bench` measures qperf tcp_bw and tcp_lat between two sockets with the lab's
programs (tests/tools/sockmap_lab.bpf.c) in each mode, interleaved, and prints the
medians as Markdown tables:

  mode 0  TCP: the sockets are in no map
  mode 1  in a sockhash with the sk_msg program, not redirected (SK_PASS)
  mode 3  in a sockhash without a program (what a receiver pays)
  mode 2  every message handed to the peer socket (bpf_msg_redirect_hash, ingress)

over two topologies: `loopback` (both ends in one netns, as an app and its sidecar)
and `pods` (two netns on a bridge through veths, as two pods of a node).

`edges` runs the cases where redirection changes what a socket does (splice and
sendfile readers and writers, a blocking reader next to a writer, a slow reader,
RST, urgent data) in modes 0, 1 and 2 and prints what each saw.

Everything it creates carries its PID and is removed on exit: a private bpffs, a
child cgroup of the cgroup2 mount (never the root cgroup), network namespaces.
Traffic stays inside them. Needs root, clang, bpftool, qperf (scripts/deps.sh).
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PID = os.getpid()
NS = {"lo": f"mllab-{PID}-lo", "node": f"mllab-{PID}-node", "a": f"mllab-{PID}-a",
      "b": f"mllab-{PID}-b"}
POD_A, POD_B = "10.254.0.2", "10.254.0.3"
UNITS = {"GB/sec": 1000, "MB/sec": 1, "KB/sec": 0.001, "ns": 0.001, "us": 1, "ms": 1000}
MODE_NAMES = {0: "TCP", 1: "in map, passed", 3: "receiver only", 2: "redirected"}


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


def cgroup2_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup2":
                return fields[4]
    raise SystemExit("no cgroup2 mount")


class Lab:
    """The lab's programs, loaded and attached to a private cgroup."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix=f"mllab-{PID}-")
        self.bpffs = os.path.join(self.tmp, "bpffs")
        self.cgroup = os.path.join(cgroup2_mount(), f"meshlane-sockmap-lab-{PID}")
        self.servers = []

    def __enter__(self):
        try:
            self.setup()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def setup(self):
        obj = os.path.join(self.tmp, "lab.o")
        arch = os.uname().machine.replace("x86_64", "x86_64-linux-gnu").replace(
            "aarch64", "aarch64-linux-gnu")
        sh("clang", "-O2", "-g", "-Wall", "-target", "bpf", f"-I{REPO}/bpf",
           f"-I/usr/include/{arch}", "-c", os.path.join(HERE, "sockmap_lab.bpf.c"), "-o", obj)
        os.makedirs(self.bpffs)
        sh("mount", "-t", "bpf", "bpf", self.bpffs)
        os.makedirs(self.cgroup)
        sh("bpftool", "prog", "loadall", obj, f"{self.bpffs}/progs", "pinmaps",
           f"{self.bpffs}/maps")
        sh("bpftool", "cgroup", "attach", self.cgroup, "sock_ops", "pinned",
           f"{self.bpffs}/progs/lab_sockops")
        sh("bpftool", "prog", "attach", "pinned", f"{self.bpffs}/progs/lab_msg", "msg_verdict",
           "pinned", f"{self.bpffs}/maps/lab_tx")
        sh("ip", "netns", "add", NS["lo"])
        sh("ip", "-n", NS["lo"], "link", "set", "lo", "up")
        for name in ("node", "a", "b"):
            sh("ip", "netns", "add", NS[name])
            sh("ip", "-n", NS[name], "link", "set", "lo", "up")
        sh("ip", "-n", NS["node"], "link", "add", "mllab0", "type", "bridge")
        sh("ip", "-n", NS["node"], "link", "set", "mllab0", "up")
        for pod, ip in (("a", POD_A), ("b", POD_B)):
            sh("ip", "-n", NS["node"], "link", "add", f"veth{pod}", "type", "veth", "peer",
               "name", "eth0", "netns", NS[pod])
            sh("ip", "-n", NS["node"], "link", "set", f"veth{pod}", "master", "mllab0", "up")
            sh("ip", "-n", NS[pod], "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", NS[pod], "link", "set", "eth0", "up")

    def __exit__(self, *_):
        for proc in self.servers:
            proc.kill()
            proc.wait()
        for name in NS.values():
            sh("ip", "netns", "del", name, check=False)
        if os.path.isdir(self.cgroup):
            with open(os.path.join(self.cgroup, "cgroup.procs")) as f:
                for pid in f.read().split():
                    sh("kill", "-9", pid, check=False)
            sh("bpftool", "cgroup", "detach", self.cgroup, "sock_ops", "pinned",
               f"{self.bpffs}/progs/lab_sockops", check=False)
            for _ in range(50):
                try:
                    os.rmdir(self.cgroup)
                    break
                except OSError:
                    time.sleep(0.1)
        sh("umount", self.bpffs, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def mode(self, mode):
        value = " ".join(str(b) for b in mode.to_bytes(8, "little"))
        sh("bpftool", "map", "update", "pinned", f"{self.bpffs}/maps/lab_state", "key",
           "0", "0", "0", "0", "value", *value.split())

    def counters(self):
        out = json.loads(sh("bpftool", "-j", "map", "dump", "pinned",
                            f"{self.bpffs}/maps/lab_state").stdout)
        def number(raw):
            # bpftool prints plain numbers with BTF, lists of hex bytes without.
            if isinstance(raw, int):
                return raw
            return int.from_bytes(bytes(int(b, 16) for b in raw), "little")

        values = {number(entry["key"]): number(entry["value"]) for entry in out}
        return {"redirected": values.get(1, 0), "no_peer": values.get(2, 0)}

    def cmd(self, netns, *args):
        """A command line that runs in the lab's cgroup and the given netns."""
        return ["sh", "-c", f'echo $$ > {self.cgroup}/cgroup.procs && exec "$@"', "sh",
                "ip", "netns", "exec", NS[netns], *args]

    def start(self, netns, *args):
        proc = subprocess.Popen(self.cmd(netns, *args), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        self.servers.append(proc)
        time.sleep(0.3)
        return proc

    def run(self, netns, *args, timeout=120):
        return subprocess.run(self.cmd(netns, *args), capture_output=True, text=True,
                              timeout=timeout)


def qperf(lab, client_ns, target, size, test, seconds):
    out = lab.run(client_ns, "qperf", "-t", str(seconds), "-m", str(size), target, test).stdout
    match = re.search(r"(bw|latency)\s+=\s+([\d.]+) (\S+)", out)
    return float(match.group(2)) * UNITS[match.group(3)] if match else float("nan")


def bench(args):
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = [0, 1, 3, 2]
    topologies = {"loopback": ("lo", "lo", "127.0.0.1"), "pods": ("a", "b", POD_B)}
    with Lab() as lab:
        for topology in args.topology.split(","):
            client, server, target = topologies[topology]
            lab.start(server, "qperf")
            results = {}
            for size in sizes:
                for _ in range(args.reps):
                    for mode in modes:
                        lab.mode(mode)
                        for test in ("tcp_bw", "tcp_lat"):
                            results.setdefault((size, mode, test), []).append(
                                qperf(lab, client, target, size, test, args.seconds))
            print(f"\n### {topology}: qperf medians of {args.reps}, {args.seconds} s each\n")
            print("| size | " + " | ".join(f"bw {MODE_NAMES[m]} MB/s" for m in modes) + " | "
                  + " | ".join(f"lat {MODE_NAMES[m]} µs" for m in modes) + " |")
            print("|---:" * (1 + 2 * len(modes)) + "|")
            for size in sizes:
                bw = [statistics.median(results[(size, m, "tcp_bw")]) for m in modes]
                lat = [statistics.median(results[(size, m, "tcp_lat")]) for m in modes]
                print(f"| {size} | " + " | ".join(f"{b:.1f}" for b in bw) + " | "
                      + " | ".join(f"{v:.2f}" for v in lat) + " |", flush=True)
            if args.raw:
                print(json.dumps({f"{topology}/{k[0]}/{k[1]}/{k[2]}": v
                                  for k, v in results.items()}))
        print(f"\nlab counters: {lab.counters()}")


# Each edge case is a small Python program run in the lab's netns: it prints one
# JSON line. A server thread and a client in one process, over loopback.
EDGE_PRELUDE = textwrap.dedent('''
    import hashlib, json, os, select, socket, struct, threading, time
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0)); srv.listen(8); port = srv.getsockname()[1]
    out = {}
    def sha(b): return hashlib.sha256(b).hexdigest()[:12]
''')
EDGES = {
    "splice reader": '''
        N = 4 << 20; payload = os.urandom(N)
        def server():
            c, _ = srv.accept(); r, w = os.pipe(); got = b""
            while True:
                n = os.splice(c.fileno(), w, 65536)
                if n == 0: break
                got += os.read(r, n)
            out["read"] = len(got); out["intact"] = got == payload
        t = threading.Thread(target=server); t.start()
        c = socket.create_connection(("127.0.0.1", port)); c.sendall(payload); c.close(); t.join()
    ''',
    "sendfile writer": '''
        import tempfile
        N = 4 << 20; payload = os.urandom(N)
        def server():
            c, _ = srv.accept(); got = b""
            while True:
                d = c.recv(65536)
                if not d: break
                got += d
            out["read"] = len(got); out["intact"] = got == payload
        t = threading.Thread(target=server); t.start()
        f = tempfile.TemporaryFile(); f.write(payload); f.flush()
        c = socket.create_connection(("127.0.0.1", port)); off = 0
        while off < N: off += os.sendfile(c.fileno(), f.fileno(), off, N - off)
        c.close(); t.join()
    ''',
    "blocking reader beside a writer": '''
        N = 20 << 20
        def server():
            c, _ = srv.accept(); got = 0
            while got < N:
                d = c.recv(65536)
                if not d: break
                got += len(d)
            time.sleep(0.2); c.sendall(b"done"); c.close()
        t = threading.Thread(target=server); t.start()
        c = socket.create_connection(("127.0.0.1", port))
        def reader():
            try: out["reader"] = c.recv(100).decode()
            except OSError as e: out["reader"] = repr(e)
        r = threading.Thread(target=reader); r.start(); time.sleep(0.1)
        c.sendall(os.urandom(N)); r.join(); t.join()
    ''',
    "slow reader": '''
        def server():
            c, _ = srv.accept(); time.sleep(3); got = 0
            while True:
                d = c.recv(1 << 20)
                if not d: break
                got += len(d)
        t = threading.Thread(target=server); t.start()
        c = socket.create_connection(("127.0.0.1", port)); buf = os.urandom(1 << 20)
        c.setblocking(False); sent = 0; t0 = time.time()
        while time.time() - t0 < 2:
            try: sent += c.send(buf)
            except BlockingIOError: select.select([], [c], [], 0.1)
        out["queued at a reader that reads nothing, MiB"] = sent >> 20
        c.setblocking(True); c.close(); t.join()
    ''',
    "rst after data": '''
        N = 100000; payload = os.urandom(N)
        def server():
            c, _ = srv.accept(); time.sleep(0.5); got = b""
            try:
                while True:
                    d = c.recv(65536)
                    if not d: out["end"] = "EOF"; break
                    got += d
            except OSError as e: out["end"] = repr(e)
            out["read"] = len(got); out["intact_prefix"] = payload.startswith(got)
        t = threading.Thread(target=server); t.start()
        c = socket.create_connection(("127.0.0.1", port)); c.sendall(payload)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); c.close(); t.join()
    ''',
    "urgent data": '''
        def server():
            c, _ = srv.accept(); time.sleep(0.3); got = b""
            while True:
                d = c.recv(65536)
                if not d: break
                got += d
            out["inline bytes"] = got.decode()
        t = threading.Thread(target=server); t.start()
        c = socket.create_connection(("127.0.0.1", port)); c.sendall(b"ab")
        c.send(b"!", socket.MSG_OOB); c.sendall(b"cd"); c.close(); t.join()
    ''',
}


def edges(_args):
    with Lab() as lab:
        for name, body in EDGES.items():
            for mode in (0, 1, 2):
                lab.mode(mode)
                program = EDGE_PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(out))\n"
                try:
                    done = lab.run("lo", "/usr/bin/python3", "-c", program, timeout=30)
                    result = (done.stdout.strip().splitlines() or [done.stderr.strip()])[-1]
                except subprocess.TimeoutExpired:
                    result = "hung (30 s)"
                print(f"{name:34} mode {mode} ({MODE_NAMES[mode]}): {result}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("bench")
    p.add_argument("--sizes", default="1,64,256,1024,4096,16384,65536")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--seconds", type=int, default=2)
    p.add_argument("--topology", default="loopback,pods")
    p.add_argument("--raw", action="store_true", help="also print every sample as JSON")
    p.set_defaults(run=bench)
    p = commands.add_parser("edges")
    p.set_defaults(run=edges)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the sockmap lab needs root (bpffs, cgroups, netns)")
    args.run(args)


if __name__ == "__main__":
    sys.exit(main())
