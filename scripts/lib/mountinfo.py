#!/usr/bin/env python3
"""The mount table, from /proc/self/mountinfo (python3 standard library only).

The one mountinfo parser of the project's scripts: the benchmark's harness and
tests/tools/sockmap_lab.py import it, scripts/demo.sh runs it as a command:

  mountinfo.py cgroup2          the cgroup2 mount point (nothing printed if none)
  mountinfo.py below PREFIX     mount points whose path starts with PREFIX, deepest
                                first (the order umount needs)

A line is "<id> <parent> <maj:min> <root> <mount point> <options> [optional...] -
<fstype> <source> <super options>": the number of optional fields varies, so the
filesystem type is the field after the " - " separator. Mount points escape space,
tab, newline and backslash as \\ooo (octal).
"""

import collections
import re
import sys

MOUNTINFO = "/proc/self/mountinfo"

Mount = collections.namedtuple("Mount", ["mount_point", "fstype"])


def _unescape(field):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse(text):
    """Every mount listed in a mountinfo text, in its order."""
    found = []
    for line in text.splitlines():
        before, sep, after = line.partition(" - ")
        fields, fstype = before.split(), after.split()[:1]
        if sep and len(fields) > 4 and fstype:
            found.append(Mount(_unescape(fields[4]), fstype[0]))
    return found


def mounts():
    """This process's mounts."""
    with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as f:
        return parse(f.read())


def cgroup2_mount():
    """The cgroup2 mount point (on hybrid hosts /sys/fs/cgroup/unified, not
    /sys/fs/cgroup), or None."""
    return next((m.mount_point for m in mounts() if m.fstype == "cgroup2"), None)


def mounts_below(prefix):
    """Mount points whose path starts with prefix (a string prefix), deepest first."""
    return sorted((m.mount_point for m in mounts() if m.mount_point.startswith(prefix)),
                  reverse=True)


def main(argv):
    if argv[:1] == ["cgroup2"] and len(argv) == 1:
        point = cgroup2_mount()
        if point:
            print(point)
    elif argv[:1] == ["below"] and len(argv) == 2:
        for point in mounts_below(argv[1]):
            print(point)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
