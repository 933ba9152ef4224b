"""perf, attached to running processes by pid, for bench/breakdown.py.

`SyscallCount`: `perf stat -e raw_syscalls:sys_enter,context-switches -p PID` (a
counter per event, no record per call: cheap). `IoSizes`: `perf record` of the
exits of the read and write system calls of a process, whose return value is the
bytes moved, so that `perf script` gives the size of every read and write (a
record per call: a few microseconds each, so only in the traced pass). Both run
for a fixed time (`-- sleep SECONDS`); the output files go in the node's temp dir,
which the teardown removes."""

import os
import re
import subprocess

from .sysutil import CHILD_PATH, BenchError

READS = ("read", "readv", "recvfrom", "recvmsg")
WRITES = ("write", "writev", "sendto", "sendmsg")
EAGAIN = -11
_LINE = re.compile(r"\ssyscalls:sys_exit_(\w+):\s+(0x[0-9a-f]+|-?\d+)\s*$")


class _Perf:
    """What both kinds share: perf for `seconds` on `pid`, its output in `out`."""

    def __init__(self, kind, pid, seconds, out, args):
        self.what, self.out, self.seconds = f"perf {kind} -p {pid}", out, seconds
        with open(out + ".err", "wb") as err:
            self.proc = subprocess.Popen(
                ["perf", kind, *args, "-p", str(pid), "--", "sleep", str(seconds)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                env={"PATH": CHILD_PATH}, cwd="/")

    def finish(self):
        """Waits for perf's end; raises when it failed."""
        try:
            status = self.proc.wait(self.seconds + 30)
        except subprocess.TimeoutExpired:
            self.stop()
            raise BenchError(f"{self.what}: perf did not finish in time") from None
        if status != 0:
            with open(self.out + ".err", encoding="utf-8", errors="replace") as f:
                raise BenchError(f"{self.what}: perf failed (exit status {status}): "
                                 f"{f.read()[-400:]}")

    def stop(self):
        """Kills perf when it still runs (after a failure elsewhere)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class SyscallCount(_Perf):
    """System calls and context switches of every thread of `pid`, for `seconds`."""

    def __init__(self, pid, seconds, out_file):
        super().__init__("stat", pid, seconds, out_file,
                         ["-x", ",", "-o", out_file, "-e",
                          "raw_syscalls:sys_enter,context-switches"])

    def result(self):
        self.finish()
        counts = {}
        with open(self.out, encoding="utf-8") as f:
            for line in f:
                fields = line.strip().split(",")
                if len(fields) > 2 and fields[2] in ("raw_syscalls:sys_enter",
                                                     "context-switches"):
                    if not fields[0].isdigit():
                        raise BenchError(f"{self.what}: {fields[2]} not counted: {line.strip()}")
                    counts[fields[2].split(":")[-1]] = int(fields[0])
        if len(counts) != 2:
            raise BenchError(f"{self.what}: no counts in {self.out}")
        return {"syscalls": counts["sys_enter"], "context_switches": counts["context-switches"]}


class IoSizes(_Perf):
    """Every read and write system call's result of every thread of `pid`."""

    def __init__(self, pid, seconds, out_file):
        events = ",".join(f"syscalls:sys_exit_{name}" for name in READS + WRITES)
        super().__init__("record", pid, seconds, out_file, ["-q", "-o", out_file, "-e", events])

    def result(self):
        self.finish()
        done = subprocess.run(["perf", "script", "-i", self.out], capture_output=True,
                              env={"PATH": CHILD_PATH}, cwd="/", timeout=300, check=False)
        if done.returncode != 0:
            raise BenchError(f"perf script -i {self.out}: {done.stderr.decode()[-400:]}")
        os.unlink(self.out)
        out = {kind: {"calls": 0, "with_data": 0, "bytes": 0, "eagain": 0}
               for kind in ("read", "write")}
        for line in done.stdout.decode(errors="replace").splitlines():
            m = _LINE.search(line)
            if not m:
                continue
            value = int(m.group(2), 0)
            if value >= 1 << 63:
                value -= 1 << 64  # perf prints the negative errno as an unsigned
            entry = out["read" if m.group(1) in READS else "write"]
            entry["calls"] += 1
            if value > 0:
                entry["with_data"] += 1
                entry["bytes"] += value
            elif value == EAGAIN:
                entry["eagain"] += 1
        return out
