"""One measurement session on the benchmark's node, shared by bench/run.py and
bench/breakdown.py: the machine-wide lock, the tool check, the sweep of what an
earlier run left, and a body run with the node's teardown guaranteed (also after
Ctrl-C, SIGTERM or a closed terminal)."""

import argparse
import fcntl
import os
import shutil
import signal
import sys
import traceback

from . import sysutil
from .node import leftovers, remove_leftovers
from .sysutil import BenchError

# Machine-wide, not per checkout: the names (netns, cgroup, temp dirs) are the
# machine's, and a run's start-up sweep removes another checkout's running node.
LOCK_PATH = "/run/lock/meshlane-bench.lock"


def log(message=""):
    """Progress on stdout, at once (the output may be a pipe)."""
    print(message, flush=True)


def parser(doc, smoke_help, report_help):
    """The options the measurement scripts of bench/ share."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help=smoke_help)
    p.add_argument("--meshlane")
    p.add_argument("--envoy")
    p.add_argument("--connrate", help="bench/tools/connrate.rs, built")
    p.add_argument("--report-only", metavar="RESULTS.json", help=report_help)
    p.add_argument("--reps", type=int)
    return p


def take_lock(wait=False):
    """One benchmark at a time: the names are fixed and a run sweeps what it finds.
    A run fails at once when another holds the lock; with `wait`, it waits for it."""
    os.makedirs(os.path.dirname(LOCK_PATH), exist_ok=True)
    lock = open(LOCK_PATH, "a")  # noqa: SIM115 (held for the run)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        lock.close()
        raise BenchError("another benchmark (scripts/bench.sh) is running on this machine "
                         f"({LOCK_PATH} is locked)")
    return lock


def check_tools(paths, tools=()):
    """Raises naming every missing command (on the children's PATH) and executable."""
    base = ("ip", "qperf", "sockperf", "iptables-restore", "bpftool", "mount", "umount")
    missing = [tool for tool in (*base, *tools)
               if not shutil.which(tool, path=sysutil.CHILD_PATH)]
    for path in (*paths, "/usr/lib/cni/bridge", "/usr/lib/cni/host-local"):
        if not os.access(path, os.X_OK):
            missing.append(path)
    if missing:
        raise BenchError(f"missing: {', '.join(missing)} (install with: sudo scripts/deps.sh)")


def prepare(log, paths, tools=(), wait=False):
    """Root, the lock (take_lock), the tools (check_tools), and a clean machine:
    returns the lock (hold it for the run)."""
    if os.geteuid() != 0:
        raise BenchError("the benchmark needs root (netns, cgroups, bpffs): sudo scripts/bench.sh")
    lock = take_lock(wait)
    check_tools(paths, tools)
    found = leftovers()
    if found:
        log("==> removing what an earlier run left behind: "
            + ", ".join(f"{k} {v}" for k, v in found))
        left = remove_leftovers()
        if left:
            raise BenchError(f"cannot remove the leftovers of an earlier run: {left}")
    return lock


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt


def run_then_teardown(node, body, log):
    """body() with node.teardown() after it, whatever happens. Returns (status,
    error): status "ok", "failed" or "interrupted"; a teardown that leaves something
    behind is a failure."""
    status, error = "ok", None
    # SIGINT is set explicitly: a shell starts background jobs with it ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    try:
        body()
    except KeyboardInterrupt:
        status, error = "interrupted", "interrupted (Ctrl-C or SIGTERM)"
    except BenchError as err:
        status, error = "failed", str(err)
    except Exception as err:  # noqa: BLE001 (reported to the caller)
        status, error = "failed", f"{err!r}\n{traceback.format_exc()}"
    finally:
        # The teardown must run to its end, even when Ctrl-C is pressed again.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        log("==> cleanup")
        left = node.teardown()
        if left:
            log(f"    LEFT BEHIND: {left}")
            status, error = "failed", (error or "") + f"; cleanup left {left}"
        else:
            log("    removed the netns, the cgroups, the bpffs and the temp dir")
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    return status, error


def exit_with(main, label):
    """Runs a script's main() and exits with its status; a BenchError is reported
    as `label FAILED: why` and exits 1."""
    try:
        sys.exit(main())
    except BenchError as err:
        print(f"{label} FAILED: {err}", file=sys.stderr)
        sys.exit(1)


def profile_of(profiles, args, options):
    """The run's mode ("smoke" with --smoke, else "full") and its profile, with the
    value of each of `options` (attributes of args, keys of the profile) given."""
    mode = "smoke" if args.smoke else "full"
    profile = dict(profiles[mode])
    for key in options:
        if getattr(args, key):
            profile[key] = getattr(args, key)
    return mode, profile
