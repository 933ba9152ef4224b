"""Per-process CPU, wake-ups and scheduling delay from /proc, for bench/breakdown.py.

For each thread of a process (/proc/PID/task/TID): `schedstat` gives the time on a
CPU and the time spent runnable but waiting for one, both in ns (CONFIG_SCHED_INFO;
on this kernel without IRQ time accounting, the softirq work a thread does in its
own context, e.g. the loopback and veth receive that runs when it sends, is part of
its time); `status` gives voluntary context switches (a sleep: each is a wake-up
later) and involuntary ones (preempted); `stat` gives utime and stime in clock ticks,
which split that time into user and kernel. Summed over the threads alive at the
time of reading."""

import os
import re
import time

from .sysutil import BenchError, in_netns, run

TICK_NS = 1e9 / os.sysconf("SC_CLK_TCK")
FIELDS = ("run_ns", "wait_ns", "user_ns", "sys_ns", "voluntary", "involuntary")


def _thread(path):
    with open(os.path.join(path, "schedstat"), encoding="ascii") as f:
        run_ns, wait_ns, _slices = (int(x) for x in f.read().split())
    with open(os.path.join(path, "stat"), encoding="ascii") as f:
        # The command name (field 2) may hold spaces: split after its ')'.
        rest = f.read().rsplit(")", 1)[1].split()
    user_ns, sys_ns = int(rest[11]) * TICK_NS, int(rest[12]) * TICK_NS
    vol = invol = 0
    with open(os.path.join(path, "status"), encoding="ascii") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                vol = int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                invol = int(line.split()[1])
    return {"run_ns": run_ns, "wait_ns": wait_ns, "user_ns": user_ns, "sys_ns": sys_ns,
            "voluntary": vol, "involuntary": invol}


def process(pid):
    """Each thread of `pid` by thread id ({tid: {field: value}}), so that a thread
    that starts or ends between two readings is seen."""
    task_dir = f"/proc/{pid}/task"
    threads = {}
    try:
        tids = os.listdir(task_dir)
    except FileNotFoundError as err:
        raise BenchError(f"process {pid} is gone") from err
    for tid in tids:
        try:
            threads[int(tid)] = _thread(os.path.join(task_dir, tid))
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended while being read
    return threads


def delta(before, after, what):
    """{field: after - before} summed over the threads; raises when a thread came
    or went between the readings (its share of the window would be unknown)."""
    if set(before) != set(after):
        raise BenchError(f"{what}: threads changed during the measured window "
                         f"({sorted(before)} -> {sorted(after)})")
    return {key: sum(after[tid][key] - before[tid][key] for tid in after) for key in FIELDS}


def bytes_read(pid):
    """Bytes `pid` has read through read system calls so far (/proc/PID/io rchar:
    read, readv, recvfrom and recvmsg on a socket all count)."""
    with open(f"/proc/{pid}/io", encoding="ascii") as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise BenchError(f"no rchar in /proc/{pid}/io")


def progress(pid, seconds, interval, hook=None, hook_every=10):
    """Polls bytes_read(pid) every `interval` seconds for `seconds`: the share of
    intervals in which it read nothing and the longest such stretch (seconds).
    hook(), when given, runs every `hook_every` polls."""
    idle = total = 0
    longest = stretch = 0.0
    last = bytes_read(pid)
    t_last = time.monotonic()
    end = t_last + seconds
    while t_last < end:
        time.sleep(interval)
        now, t_now = bytes_read(pid), time.monotonic()
        total += 1
        if now == last:
            idle += 1
            stretch += t_now - t_last
            longest = max(longest, stretch)
        else:
            stretch = 0.0
        last, t_last = now, t_now
        if hook and total % hook_every == 0:
            hook()
    return {"intervals": total, "no_progress": idle, "longest_s": longest}


_SKMEM = re.compile(r"skmem:\(r(\d+),rb(\d+),")


def socket_memory(netns):
    """The established TCP sockets of a netns (`ss -tmn`): [(local, peer,
    receive memory in use, receive buffer)]. Receive memory counts what a socket
    holds unread, handed-over messages included."""
    with in_netns(netns):
        done = run(["ss", "-tmnH", "state", "established"])
    found = []
    lines = done.stdout.decode(errors="replace").splitlines()
    for line, nxt in zip(lines, [*lines[1:], ""]):
        fields = line.split()
        m = _SKMEM.search(line) or _SKMEM.search(nxt)
        if len(fields) >= 4 and m and "skmem" not in fields[0]:
            found.append((fields[2], fields[3], int(m.group(1)), int(m.group(2))))
    return found


def proc_stat():
    """The machine's CPU time by kind (/proc/stat's first line), in ns."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(x) for x in f.readline().split()[1:9]]
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    return {name: value * TICK_NS for name, value in zip(names, values)}


def children(pid):
    """Pids whose parent is `pid`'s main thread (qperf's server, one thread, forks
    one per test)."""
    with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
        return [int(child) for child in f.read().split()]


# The TCP events of a pod's netns that stop a stream without using a CPU: a
# receiver advertising a zero window and the sender's probes of it (the persist
# timer), segments a receiver drops for want of receive memory (then resent after a
# retransmission timeout), delayed ACKs.
TCP_EVENTS = ("TcpExt:TCPToZeroWindowAdv", "TcpExt:TCPFromZeroWindowAdv",
              "TcpExt:TCPWantZeroWindowAdv", "TcpExt:TCPWinProbe", "TcpExt:TCPTimeouts",
              "TcpExt:TCPLossProbes", "TcpExt:TCPRcvQDrop", "TcpExt:TCPZeroWindowDrop",
              "TcpExt:PruneCalled", "TcpExt:RcvPruned", "TcpExt:DelayedACKs",
              "TcpExt:TCPBacklogDrop", "Tcp:RetransSegs", "Tcp:OutSegs", "Tcp:InSegs")


def tcp_counters(netns):
    """TCP_EVENTS of the netns at `netns` (/proc/net/{netstat,snmp} as seen from it)."""
    wanted = set(TCP_EVENTS)
    found = {}
    with in_netns(netns):
        for name in ("netstat", "snmp"):
            with open(f"/proc/thread-self/net/{name}", encoding="ascii") as f:
                lines = f.read().splitlines()
            # Pairs of lines: "Prefix: names..." then "Prefix: values...".
            for head, values in zip(lines[::2], lines[1::2]):
                prefix = head.split(":", 1)[0]
                for key, value in zip(head.split()[1:], values.split()[1:]):
                    if f"{prefix}:{key}" in wanted:
                        found[f"{prefix}:{key}"] = int(value)
    return found
