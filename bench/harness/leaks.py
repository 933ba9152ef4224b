"""What a meshlane node holds, read with bpftool from its pins only (the load
scripts' leak checks and memory figures). Nothing here knows meshlane's structs: an
entry "references" a netns when the cookie's 8 bytes (little-endian, as every
meshlane key and value stores it) appear anywhere in its key or value, so a map that
meshlane forgets to clean shows up even if no code knows it holds cookies."""

import json
import os
import subprocess

from .sysutil import BenchError

# Socket storage cannot be listed from user space (its keys are sockets): its
# entries are freed by the kernel with their socket.
UNLISTABLE = ("sk_storage",)


def bpftool(*args):
    done = subprocess.run(["bpftool", "-j", *args], capture_output=True, timeout=300,
                          check=False)
    if done.returncode != 0:
        raise BenchError(f"bpftool {' '.join(args)}: {done.stderr.decode().strip()}")
    return json.loads(done.stdout or b"null")


def pinned_maps(pin_root):
    maps_dir = os.path.join(pin_root, "maps")
    return {name: os.path.join(maps_dir, name) for name in sorted(os.listdir(maps_dir))}


def map_info(path):
    return bpftool("map", "show", "pinned", path)


def _bytes(hexes):
    return bytes(int(x, 16) for x in hexes)


def _entry_blobs(entry):
    """The key and every value (per-CPU maps have one per CPU) of a dumped entry."""
    blobs = [_bytes(entry.get("key", []))]
    if "value" in entry and isinstance(entry["value"], list):
        blobs.append(_bytes(entry["value"]))
    for per_cpu in entry.get("values", []):
        if isinstance(per_cpu.get("value"), list):
            blobs.append(_bytes(per_cpu["value"]))
    return blobs


def walk(pin_root, cookies):
    """Every pinned map, every entry: {map: (type, entries, {cookie: references})} and
    the maps that cannot be listed."""
    needles = {c: c.to_bytes(8, "little") for c in cookies}
    found, unlistable = {}, []
    for name, path in pinned_maps(pin_root).items():
        info = map_info(path)
        if info.get("type") in UNLISTABLE:
            unlistable.append(name)
            continue
        entries = bpftool("map", "dump", "pinned", path) or []
        refs = {}
        for entry in entries:
            for blob in _entry_blobs(entry):
                for cookie, needle in needles.items():
                    if needle in blob:
                        refs[cookie] = refs.get(cookie, 0) + 1
        found[name] = (info.get("type"), len(entries), refs)
    return found, unlistable


def memory(pin_root):
    """{map: (type, max_entries, bytes_memlock)} of every pinned map."""
    out = {}
    for name, path in pinned_maps(pin_root).items():
        info = map_info(path)
        out[name] = (info.get("type"), info.get("max_entries"), info.get("bytes_memlock", 0))
    return out


def pins(pin_root):
    """Every pinned file under the root, relative to it."""
    found = []
    for root, _dirs, files in os.walk(pin_root):
        for f in files:
            found.append(os.path.relpath(os.path.join(root, f), pin_root))
    return sorted(found)


def our_links(pin_root):
    """The kernel's links whose program is one of this node's (pinned under its root,
    or behind one of its pinned links): [(id, type, prog name)]."""
    prog_ids = set()
    for rel in pins(pin_root):
        path = os.path.join(pin_root, rel)
        if rel.startswith("maps/"):
            continue
        try:
            prog_ids.add(bpftool("prog", "show", "pinned", path)["id"])
        except BenchError:
            prog_ids.add(bpftool("link", "show", "pinned", path)["prog_id"])
    links = bpftool("link", "show") or []
    progs = {p["id"]: p.get("name", "") for p in bpftool("prog", "show") or []}
    return [(link["id"], link.get("type"), progs.get(link["prog_id"], ""))
            for link in links if link.get("prog_id") in prog_ids]
