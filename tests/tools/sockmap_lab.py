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

  sudo tests/tools/sockmap_lab.py close [--iterations 50] [--variant "..."]...
                                        [--bound 3] [--topology pods] [--check]

`close` asks whether the receiving end of a redirected connection learns that its
peer closed (RST or FIN), with the receiver reading or not at that moment, data
queued or not (the variants are listed at CLOSE_VARIANTS below): one table row per
variant, with how many receivers were still ESTABLISHED after the bound and the
netns's TCPBacklogDrop count. --check: exit 1 when one was. docs/kernels.md
explains what it found. `stalled-receiver` and `rst-sender` are its "stalled"
variant as two processes, for a test through meshlane's short path.

  sudo tests/tools/sockmap_lab.py partial [--bytes 131072] [--part 32768]

`partial` hands over the first --part bytes of one message (bpf_msg_apply_bytes)
and answers SK_PASS on the rest, and says where the kernel sent the rest.

Everything it creates carries its PID and is removed on exit: a private bpffs, a
child cgroup of the cgroup2 mount (never the root cgroup), network namespaces.
Traffic stays inside them. Needs root, clang, bpftool, qperf (scripts/deps.sh).
"""

import argparse
import ctypes
import json
import mmap
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# No __pycache__ in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(REPO, "scripts", "lib"))
import mountinfo  # noqa: E402  (scripts/lib)
PID = os.getpid()
NS = {"lo": f"mllab-{PID}-lo", "node": f"mllab-{PID}-node", "a": f"mllab-{PID}-a",
      "b": f"mllab-{PID}-b"}
POD_A, POD_B = "10.254.0.2", "10.254.0.3"
UNITS = {"GB/sec": 1000, "MB/sec": 1, "KB/sec": 0.001, "ns": 0.001, "us": 1, "ms": 1000}
MODE_NAMES = {0: "TCP", 1: "in map, passed", 3: "receiver only", 2: "redirected"}


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


def cgroup2_mount():
    return mountinfo.cgroup2_mount() or sys.exit("no cgroup2 mount")


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
        self.slot(0, mode)

    def slot(self, index, value):
        sh("bpftool", "map", "update", "pinned", f"{self.bpffs}/maps/lab_state", "key",
           *(str(b) for b in index.to_bytes(4, "little")), "value",
           *(str(b) for b in value.to_bytes(8, "little")))

    def counters(self):
        out = json.loads(sh("bpftool", "-j", "map", "dump", "pinned",
                            f"{self.bpffs}/maps/lab_state").stdout)
        def number(raw):
            # bpftool prints plain numbers with BTF, lists of hex bytes without.
            if isinstance(raw, int):
                return raw
            return int.from_bytes(bytes(int(b, 16) for b in raw), "little")

        values = {number(entry["key"]): number(entry["value"]) for entry in out}
        return {"redirected": values.get(1, 0), "no_peer": values.get(2, 0),
                "rest_passed": values.get(6, 0)}

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


# The close experiment: does the receiving end of a redirected connection learn
# that its peer closed? Two sockets in two netns on the bridge (like two sidecars)
# or over loopback, both in the maps, every message of the sender handed into the
# receiver's queue (mode 2), as meshlane's short path does. The sender closes
# (RST or FIN) while the receiver reads, or not; the receiver must see EOF or
# ECONNRESET, and its socket must leave ESTABLISHED, within a bound.
#
# A variant is "close=rst|fin reader=busy|small|late bytes=N pending=yes|no
# unmap=no|before tcpfirst=no|yes":
#   reader   busy: recv into an 8 MiB buffer, back to back; small: 16 KiB reads
#            (as Envoy does); faulting: busy, into a buffer whose pages are given
#            back before each read, so that the copy, done with the socket locked,
#            is slower than the sender; late: not reading when the sender closes,
#            from 0.2 s after it; stalled: one read that holds the socket locked
#            while the sender closes (its buffer's first page fault waits on a
#            userfaultfd until 0.3 s after the close), then busy: the window a
#            slow machine opens by chance, opened on purpose
#   bytes    handed over right before the close (K and M suffixes)
#   chunk    the sender's send size (default 64K; "all": one send)
#   pending  yes: close right after the last send (the bytes are still unread);
#            no: wait until the receiver read them all (it waits in recv)
#   unmap    before: the sender's socket leaves both maps before it closes
#   tcpfirst yes: 100 bytes over TCP first (read before the handover starts)
CLOSE_VARIANTS = [
    "close=rst reader=busy bytes=4M",
    "close=rst reader=small bytes=4M chunk=all",
    "close=rst reader=faulting bytes=4M chunk=all",
    "close=rst reader=faulting bytes=4M chunk=all unmap=before",
    "close=rst reader=faulting bytes=4M chunk=all tcpfirst=yes",
    "close=rst reader=late bytes=4M",
    "close=rst reader=busy bytes=4M pending=no",
    "close=fin reader=faulting bytes=4M chunk=all",
    "close=rst reader=stalled bytes=4M",
    "close=rst reader=stalled bytes=256K",
    "close=fin reader=stalled bytes=4M",
]
CLOSE_DEFAULTS = {"close": "rst", "reader": "busy", "bytes": "4M", "chunk": "64K",
                  "pending": "yes", "unmap": "no", "tcpfirst": "no"}
TCP_STATES = {1: "ESTABLISHED", 7: "CLOSE", 8: "CLOSE_WAIT"}


def netstat_counter(name):
    """A TcpExt counter of the calling thread's network namespace."""
    with open("/proc/thread-self/net/netstat") as f:
        lines = [line.split() for line in f if line.startswith("TcpExt:")]
    return int(dict(zip(lines[0][1:], lines[1][1:]))[name])


def tcp_state(sock):
    state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
    return TCP_STATES.get(state, str(state))


def parse_variant(text):
    variant = dict(CLOSE_DEFAULTS)
    for item in text.split():
        name, _, value = item.partition("=")
        if name not in variant:
            raise SystemExit(f"unknown variant setting {name!r} in {text!r}")
        variant[name] = value
    return variant


def size_of(text):
    scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:].upper(), 1)
    return int(text.rstrip("KkMm")) * scale


class StalledBuffer:
    """Anonymous memory whose first page fault waits until release() (userfaultfd):
    a recv into it sits in the kernel with the socket locked until then."""

    SYSCALL = {"x86_64": 323, "aarch64": 282}
    API, REGISTER, ZEROPAGE = 0xC018AA3F, 0xC020AA00, 0xC020AA04  # _IOWR(0xAA, ...)

    def __init__(self, size):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.syscall.restype = ctypes.c_long
        self.libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
        self.fd = self.libc.syscall(self.SYSCALL[os.uname().machine], os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "userfaultfd")
        self.ioctl(self.API, 0xAA, 0, 0)
        self.map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        ref = ctypes.c_char.from_buffer(self.map)
        self.addr, self.size = ctypes.addressof(ref), size
        del ref
        self.ioctl(self.REGISTER, self.addr, size, 1, 0)  # UFFDIO_REGISTER_MODE_MISSING

    def ioctl(self, request, *words):
        arg = (ctypes.c_uint64 * len(words))(*words)
        if self.libc.ioctl(self.fd, request, ctypes.addressof(arg)) != 0:
            raise OSError(ctypes.get_errno(), f"userfaultfd ioctl {request:#x}")

    def wait_for_fault(self):
        """Returns once a fault on the buffer waits (reads the userfaultfd's event)."""
        os.read(self.fd, 32)

    def release(self):
        """Maps zero pages everywhere, which wakes the waiting fault."""
        self.ioctl(self.ZEROPAGE, self.addr, self.size, 0, 0)

    def close(self):
        os.close(self.fd)
        self.map.close()


def close_worker(args):
    """Runs in the lab's cgroup and netns A (the sender); the receiver is a thread
    that moved into netns B. Prints one JSON line per connection."""
    import netns  # scripts/lib

    spec = json.loads(args.spec)
    bound = spec["bound"]
    buffer = mmap.mmap(-1, 8 << 20)
    payload = os.urandom(8 << 20)
    ready = threading.Event()
    box = {}

    def key_of(sock):
        """The sender's key in the lab's maps (struct lab_key), as bpftool bytes."""
        local, lport = sock.getsockname()[:2]
        remote, rport = sock.getpeername()[:2]
        def addr(ip):
            return bytes(10) + b"\xff\xff" + socket.inet_aton(ip)
        raw = addr(local) + addr(remote) + struct.pack("<II", lport, rport)
        return [str(b) for b in raw]

    def receiver():
        with open(spec["netns_b"]) as f:
            netns.setns(f.fileno())
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((spec["server_ip"], 0))
        srv.listen(8)
        box["port"] = srv.getsockname()[1]
        ready.set()
        while True:
            conn, _ = srv.accept()
            run = box["run"]
            drops = netstat_counter("TCPBacklogDrop")
            conn.settimeout(0.05)
            got, end = 0, None
            if run["variant"]["reader"] == "late":
                run["closed"].wait()
                time.sleep(0.2)
            if run["variant"]["reader"] == "stalled":
                run["sent_all"].wait()
                try:
                    got += conn.recv_into(run["stall"].map, 1 << 20)
                except OSError as e:
                    end = type(e).__name__
            size = 16384 if run["variant"]["reader"] == "small" else len(buffer)
            while end is None:
                if run["variant"]["reader"] == "faulting":
                    buffer.madvise(mmap.MADV_DONTNEED)
                try:
                    n = conn.recv_into(buffer, size)
                    if n == 0:
                        end = "EOF"
                    got += n
                    run["got"] = got
                except socket.timeout:
                    pass
                except OSError as e:
                    end = type(e).__name__
                if end is None and run["closed"].is_set() \
                        and time.monotonic() > run["closed_at"] + bound:
                    end = "nothing"
            run["after_s"] = round(time.monotonic() - run["closed_at"], 3) \
                if run["closed"].is_set() else None
            run.update(end=end, read=got, state=tcp_state(conn),
                       backlog_drops=netstat_counter("TCPBacklogDrop") - drops)
            if run["state"] == "ESTABLISHED":
                run["ss"] = sh("ss", "-tnie", "state", "established", check=False).stdout
            conn.close()
            run["done"].set()

    threading.Thread(target=receiver, daemon=True).start()
    ready.wait()
    for text in spec["variants"]:
        variant = parse_variant(text)
        nbytes = size_of(variant["bytes"])
        for i in range(spec["iterations"]):
            run = {"variant": variant, "closed": threading.Event(),
                   "sent_all": threading.Event(), "done": threading.Event(), "got": 0,
                   "closed_at": 0.0}
            if variant["reader"] == "stalled":
                run["stall"] = StalledBuffer(1 << 20)
            box["run"] = run
            c = socket.create_connection((spec["server_ip"], box["port"]))
            sent = 0
            if variant["tcpfirst"] == "yes":
                c.sendall(b"t" * 100)  # at most lab_state[3] bytes: over TCP
                sent = 100
                while run["got"] < sent:
                    time.sleep(0.001)
            total = sent + nbytes
            step = nbytes if variant["chunk"] == "all" else size_of(variant["chunk"])
            while sent < total:
                chunk = payload[:min(step, total - sent)]
                c.sendall(chunk)
                sent += len(chunk)
            if variant["pending"] == "no":
                while run["got"] < sent:
                    time.sleep(0.001)
            run["sent_all"].set()
            if variant["reader"] == "stalled":
                time.sleep(0.1 * spec["time_scale"])  # the receiver waits in its fault
            if variant["unmap"] == "before":
                key = key_of(c)
                for m in ("lab_tx", "lab_rx"):
                    sh("bpftool", "map", "delete", "pinned", f"{spec['maps']}/{m}", "key", *key)
            if variant["close"] == "rst":
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            run["closed_at"] = time.monotonic()
            c.close()
            run["closed"].set()
            if variant["reader"] == "stalled":
                time.sleep(0.3 * spec["time_scale"])  # the close reaches the receiver
                run["stall"].release()
            run["done"].wait()
            if variant["reader"] == "stalled":
                run["stall"].close()
            print(json.dumps({"variant": text, "i": i, "sent": sent,
                              **{k: run.get(k) for k in
                                 ("end", "read", "after_s", "state", "backlog_drops", "ss")}}),
                  flush=True)


def close_experiment(args):
    variants = args.variant or CLOSE_VARIANTS
    for text in variants:
        parse_variant(text)
    bound = args.bound * args.time_scale
    failed = 0
    with Lab() as lab:
        lab.mode(2)
        lab.slot(3, 100)  # tcpfirst's 100 bytes go over TCP
        client, server, server_ip = {"pods": ("a", "b", POD_B),
                                     "loopback": ("lo", "lo", "127.0.0.1")}[args.topology]
        spec = {"netns_b": f"/run/netns/{NS[server]}", "server_ip": server_ip,
                "maps": f"{lab.bpffs}/maps", "bound": bound, "iterations": args.iterations,
                "time_scale": args.time_scale,
                "variants": variants}
        print(f"close experiment: kernel {os.uname().release}, {args.topology}, "
              f"{args.iterations} connections per variant, bound {bound:g} s", flush=True)
        proc = subprocess.Popen(lab.cmd(client, "/usr/bin/python3", os.path.abspath(__file__),
                                        "close-worker", json.dumps(spec)),
                                stdout=subprocess.PIPE, text=True)
        tally = {}
        for line in proc.stdout:
            try:
                r = json.loads(line)
            except ValueError:
                print(line, end="")
                continue
            t = tally.setdefault(r["variant"], {"runs": 0, "ended": 0, "stuck": 0,
                                                "drops": 0, "stuck_drops": 0, "slowest": 0})
            t["runs"] += 1
            t["drops"] += r["backlog_drops"]
            stuck = r["end"] == "nothing" or r["state"] == "ESTABLISHED"
            if stuck:
                t["stuck"] += 1
                t["stuck_drops"] += r["backlog_drops"]
                if t["stuck"] == 1 or args.verbose:
                    print(f"STUCK {json.dumps(r)}", flush=True)
            else:
                t["ended"] += 1
                t["slowest"] = max(t["slowest"], r["after_s"] or 0)
            if args.verbose:
                print(json.dumps({k: v for k, v in r.items() if k != "ss"}), flush=True)
        if proc.wait() != 0:
            raise SystemExit(f"the close worker failed (exit {proc.returncode})")
        print(f"\n| variant | connections | receiver saw the end | still ESTABLISHED after "
              f"{bound:g} s | TCPBacklogDrop (all / stuck ones) | slowest end, s |")
        print("|---|---:|---:|---:|---:|---:|")
        for text in variants:
            t = tally.get(text, {"runs": 0, "ended": 0, "stuck": 0, "drops": 0,
                                 "stuck_drops": 0, "slowest": 0})
            failed += t["stuck"]
            print(f"| {text} | {t['runs']} | {t['ended']} | {t['stuck']} | "
                  f"{t['drops']} / {t['stuck_drops']} | {t['slowest']:.3f} |", flush=True)
    return 1 if failed and args.check else 0


# The partial experiment: a message larger than lab_state[4] hands over that many
# bytes (bpf_msg_apply_bytes) and the program answers SK_PASS on the rest. Over
# TCP, the receiver's TCP_INFO counts the rest as bytes received; handed over, it
# counts nothing. One connection over loopback, one send.
TCPI_BYTES_RECEIVED, TCPI_BYTES_SENT = 128, 200  # offsets in struct tcp_info


def tcpi_u64(sock, offset):
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
    return struct.unpack_from("Q", raw, offset)[0]


def partial_worker(args):
    spec = json.loads(args.spec)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    c = socket.create_connection(srv.getsockname())
    s, _ = srv.accept()
    payload = os.urandom(spec["bytes"])
    c.sendall(payload)
    got = b""
    s.settimeout(5)
    while len(got) < len(payload):
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        got += chunk
    print(json.dumps({"sent": len(payload), "read": len(got), "intact": got == payload,
                      "receiver_tcp_bytes_received": tcpi_u64(s, TCPI_BYTES_RECEIVED),
                      "sender_tcp_bytes_sent": tcpi_u64(c, TCPI_BYTES_SENT)}), flush=True)


def partial_experiment(args):
    with Lab() as lab:
        lab.mode(2)
        lab.slot(4, args.part)
        spec = {"bytes": args.bytes}
        out = subprocess.run(lab.cmd("lo", "/usr/bin/python3", os.path.abspath(__file__),
                                     "partial-worker", json.dumps(spec)),
                             stdout=subprocess.PIPE, text=True, check=True).stdout
        result = json.loads(out.splitlines()[-1])
        result.update(lab.counters())
    rest = args.bytes - args.part
    tcp = result["receiver_tcp_bytes_received"]
    where = ("sent over TCP" if tcp >= rest else "handed over too" if tcp == 0
             else "partly sent over TCP")
    print(f"kernel {os.uname().release}: one send of {args.bytes} bytes, {args.part} handed "
          f"over, SK_PASS on the rest ({rest} bytes): the rest was {where}")
    print(json.dumps(result))
    return 0 if result["intact"] else 1


# The stalled pair, for tests/shortpath.rs: the close experiment's "stalled"
# variant with meshlane's short path instead of the lab's programs. Two processes,
# one per pod, that meet through files in a shared directory:
#
#   stalled-receiver --listen IP:PORT --dir DIR [--uid UID] [--bound S] [--hold S]
#       (root) listens with UID as its sockets' owner (the pod's proxy: a receiver
#       on the short path); for the first connection, once bytes wait, reads into
#       a StalledBuffer: when the read sits in the kernel, with the socket locked,
#       writes DIR/stalled, waits for DIR/rst-sent, HOLD seconds more, and lets the
#       read finish; then reads on. Prints one JSON line: how the connection ended
#       (EOF, ConnectionResetError, nothing within BOUND seconds), its TCP state,
#       what it held unread when it stalled, the netns's TCPBacklogDrop count.
#   rst-sender --to IP:PORT --dir DIR [--bytes N] [--send-for S]
#       sends up to N bytes without blocking for at most S seconds, waits for
#       DIR/stalled, closes with SO_LINGER 0 (an RST), writes DIR/rst-sent.


def wait_for_file(path, timeout):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} did not appear within {timeout:g} s")
        time.sleep(0.005)


def stalled_receiver(args):
    import fcntl
    import select
    import termios

    libc = ctypes.CDLL(None, use_errno=True)
    host, port = args.listen.rsplit(":", 1)
    libc.setfsuid(args.uid)  # the socket's owner (sk_uid) is the fsuid at socket()
    srv = socket.socket()
    libc.setfsuid(0)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, int(port)))
    srv.listen(8)
    print("READY", flush=True)
    conn, _ = srv.accept()
    drops = netstat_counter("TCPBacklogDrop")
    select.select([conn], [], [])
    time.sleep(0.1 * args.time_scale)  # the sender's burst lands
    held = int.from_bytes(fcntl.ioctl(conn, termios.FIONREAD, bytes(4)), "little")
    stall = StalledBuffer(1 << 20)

    def hold():
        stall.wait_for_fault()
        open(os.path.join(args.dir, "stalled"), "w").close()
        wait_for_file(os.path.join(args.dir, "rst-sent"), 60 * args.time_scale)
        time.sleep(args.hold * args.time_scale)
        stall.release()

    threading.Thread(target=hold, daemon=True).start()
    got, end = 0, None
    try:
        got += conn.recv_into(stall.map)
    except OSError as e:
        end = type(e).__name__
    deadline = time.monotonic() + args.bound * args.time_scale
    conn.settimeout(0.05)
    while end is None:
        try:
            n = conn.recv(1 << 20)
            got += len(n)
            if not n:
                end = "EOF"
        except socket.timeout:
            if time.monotonic() > deadline:
                end = "nothing"
        except OSError as e:
            end = type(e).__name__
    print(json.dumps({"end": end, "state": tcp_state(conn), "read": got,
                      "held_when_stalled": held,
                      "backlog_drops": netstat_counter("TCPBacklogDrop") - drops}), flush=True)


def rst_sender(args):
    host, port = args.to.rsplit(":", 1)
    c = socket.create_connection((host, int(port)))
    c.setblocking(False)
    payload, sent = os.urandom(1 << 20), 0
    deadline = time.monotonic() + args.send_for * args.time_scale
    while sent < args.bytes and time.monotonic() < deadline:
        try:
            sent += c.send(payload[:min(len(payload), args.bytes - sent)])
        except BlockingIOError:
            time.sleep(0.001)
    wait_for_file(os.path.join(args.dir, "stalled"), 60 * args.time_scale)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    open(os.path.join(args.dir, "rst-sent"), "w").close()
    print(json.dumps({"sent": sent}), flush=True)


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
    p = commands.add_parser("close")
    p.add_argument("--iterations", type=int, default=50, help="connections per variant")
    p.add_argument("--variant", action="append",
                   help="a variant (repeatable; default: the built-in list)")
    p.add_argument("--bound", type=float, default=3.0,
                   help="seconds the receiver may take to see the end")
    p.add_argument("--time-scale", type=float,
                   default=float(os.environ.get("MESHLANE_TEST_TIME_SCALE", "1")),
                   help="multiplies the bound (a TCG guest: 10)")
    p.add_argument("--topology", choices=("pods", "loopback"), default="pods")
    p.add_argument("--check", action="store_true",
                   help="exit 1 when a receiver stayed open")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(run=close_experiment)
    p = commands.add_parser("partial")
    p.add_argument("--bytes", type=int, default=131072, help="the one message's size")
    p.add_argument("--part", type=int, default=32768, help="bytes handed over")
    p.set_defaults(run=partial_experiment)
    p = commands.add_parser("partial-worker")
    p.add_argument("spec")
    p.set_defaults(run=partial_worker)
    p = commands.add_parser("close-worker")
    p.add_argument("spec")
    p.set_defaults(run=close_worker)
    time_scale = float(os.environ.get("MESHLANE_TEST_TIME_SCALE", "1"))
    p = commands.add_parser("stalled-receiver")
    p.add_argument("--listen", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--uid", type=int, default=1337)
    p.add_argument("--bound", type=float, default=3.0)
    p.add_argument("--hold", type=float, default=0.3)
    p.add_argument("--time-scale", type=float, default=time_scale)
    p.set_defaults(run=stalled_receiver, lab=False)
    p = commands.add_parser("rst-sender")
    p.add_argument("--to", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--bytes", type=int, default=4 << 20)
    p.add_argument("--send-for", type=float, default=0.2)
    p.add_argument("--time-scale", type=float, default=time_scale)
    p.set_defaults(run=rst_sender, lab=False)
    args = parser.parse_args()
    if getattr(args, "lab", True) and os.geteuid() != 0:
        raise SystemExit("the sockmap lab needs root (bpffs, cgroups, netns)")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
