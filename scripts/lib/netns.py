"""Entering a network namespace from Python (standard library only), as
`nsenter --net` does, for scripts that run processes inside a pod's or a node's
netns (the CNI chain runner, the benchmark's harness)."""

import contextlib
import ctypes
import os

CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd):
    """Moves the calling thread into the network namespace open at fd."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(path):
    """Runs the block with this thread in the netns at `path` and switches back
    afterwards. Processes started inside (vfork + exec) and sockets created inside
    live in that netns. Meant for single-threaded scripts: nothing else of the
    process runs in the meantime."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(target)
        try:
            yield
        finally:
            setns(own)
    finally:
        os.close(target)
        os.close(own)
