#!/usr/bin/env python3
"""Writes container images as OCI image layout tars, with no Docker (standard library only).

One image = one layer (a tar of the files named in a spec) + an image config + a
manifest, in an OCI image layout (oci-layout, index.json, blobs/sha256/...) packed
into one tar. `ctr -n k8s.io images import` (containerd 1.6) and skopeo
(`oci-archive:FILE`) read it. The tar also carries a docker-archive style
manifest.json that points into blobs/, as `docker save` has done since Docker 25, for
tools that only know that format (containerd ignores it when oci-layout is there).

Reproducible: the same spec and the same input bytes give the same archive, byte
for byte (entries sorted, mtimes fixed — SOURCE_DATE_EPOCH or 0 —, uid/gid 0, no
user names, modes from the spec, deterministic gzip header, sorted JSON).

  oci_image.py build --name NAME --tag TAG --out FILE [--spec SPEC.json]
                     [--file SRC:DEST[:MODE]]... [--dir PATH[:MODE]]...
                     [--symlink PATH:TARGET]... [--entrypoint JSON] [--cmd JSON]
                     [--env K=V]... [--user U] [--workdir DIR] [--label K=V]...
                     [--compression gzip|none] [--mtime N] [--reuse]
  oci_image.py inspect ARCHIVE       checks every digest, prints refs, config, files
  oci_image.py extract ARCHIVE DIR   unpacks the image's root filesystem into DIR

A spec file (JSON; relative `src` paths are relative to the spec file):

  {"name": "ghcr.io/meshlane/meshlane", "tag": "0.1.0",
   "entrypoint": ["/meshlane"], "cmd": ["install"], "env": ["K=V"],
   "user": "0", "workdir": "/", "labels": {"k": "v"},
   "files": [{"src": "target/.../meshlane", "path": "/meshlane", "mode": "0755"},
             {"content": "root:x:0:0::/root:/sbin/nologin\\n", "path": "/etc/passwd"}],
   "dirs": [{"path": "/tmp", "mode": "1777"}],
   "symlinks": [{"path": "/lib64", "target": "usr/lib64"}]}

Command-line options add to (and name/tag/config options override) the spec file.
Parent directories are added (0755) unless listed. Files are read through symlinks:
the image gets the content, never a link to the build host.
"""

import argparse
import dataclasses
import datetime
import gzip
import hashlib
import io
import json
import os
import posixpath
import re
import sys
import tarfile
import tempfile

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
# containerd names an imported image after this annotation (its own exporter writes
# it); without it, `ctr images import` names it import-<date>:<ref.name>.
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"
# The OCI layout's own name for a manifest: the tag, as Docker and containerd write it.
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
# What Docker and distroless put in an image that sets no PATH of its own.
DEFAULT_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
CHUNK = 1 << 20

_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_PATH_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")


class ImageError(Exception):
    """A spec or an archive that cannot be used; the message says why."""


# --- the spec ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class File:
    """A regular file at `path` in the image, from `src` on the host or `data`."""

    path: str
    src: str = None
    data: bytes = None
    mode: int = 0o644


@dataclasses.dataclass(frozen=True)
class Dir:
    path: str
    mode: int = 0o755


@dataclasses.dataclass(frozen=True)
class Symlink:
    path: str
    target: str


@dataclasses.dataclass
class ImageSpec:
    """Everything an image is made of. `env=None` means DEFAULT_ENV; [] means none."""

    name: str
    tag: str
    entries: list = dataclasses.field(default_factory=list)
    entrypoint: list = None
    cmd: list = None
    env: list = None
    user: str = None
    workdir: str = None
    labels: dict = dataclasses.field(default_factory=dict)
    architecture: str = "amd64"
    os: str = "linux"

    @property
    def ref(self):
        return f"{normalize_name(self.name)}:{self.tag}"


@dataclasses.dataclass
class BuildResult:
    archive: str
    ref: str
    digest: str  # the manifest's: what `ctr images ls` and registries show
    config_digest: str
    layer_digest: str
    diff_id: str
    reused: bool = False

    def as_dict(self):
        return dataclasses.asdict(self)


def normalize_name(name):
    """The fully qualified repository name, as containerd's CRI looks images up:
    `meshlane` -> docker.io/library/meshlane, `me/x` -> docker.io/me/x."""
    if not name or name != name.strip() or ":" in name.split("/")[-1] or "@" in name:
        raise ImageError(f"image name {name!r}: give the repository without tag or digest")
    parts = name.split("/")
    if len(parts) == 1 or not ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        if len(parts) == 1:
            parts = ["library"] + parts
        parts = ["docker.io"] + parts
    for component in parts[1:]:
        if not _PATH_COMPONENT_RE.match(component):
            raise ImageError(f"image name {name!r}: {component!r} is not a valid path "
                             "component (lowercase letters, digits, separators)")
    return "/".join(parts)


def check_tag(tag):
    if not _TAG_RE.match(tag or ""):
        raise ImageError(f"image tag {tag!r}: up to 128 of [A-Za-z0-9_.-], not starting with . or -")
    return tag


def image_path(path):
    """A path inside the image, normalized, without the leading slash (tar style)."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ImageError(f"image path {path!r}: must be absolute")
    if any(part == ".." for part in path.split("/")):
        raise ImageError(f"image path {path!r}: must not contain ..")
    norm = posixpath.normpath(path)
    if norm.startswith("//"):
        norm = norm[1:]
    if norm == "/":
        raise ImageError("image path /: the root is implicit")
    return norm.lstrip("/")


def parse_mode(value, default):
    if value is None:
        return default
    mode = value if isinstance(value, int) else int(str(value), 8)
    if not 0 <= mode <= 0o7777:
        raise ImageError(f"mode {value!r}: not between 0 and 07777")
    return mode


def spec_from_dict(data, base_dir="."):
    """An ImageSpec from the JSON spec format (see the module docstring)."""
    known = {"name", "tag", "entrypoint", "cmd", "env", "user", "workdir", "labels",
             "files", "dirs", "symlinks", "architecture", "os"}
    unknown = set(data) - known
    if unknown:
        raise ImageError(f"spec: unknown keys {sorted(unknown)}")
    entries = []
    for item in data.get("files", []):
        mode = parse_mode(item.get("mode"), 0o644)
        if ("src" in item) == ("content" in item):
            raise ImageError(f"spec file {item.get('path')!r}: give exactly one of src, content")
        if "src" in item:
            entries.append(File(item["path"], src=os.path.join(base_dir, item["src"]), mode=mode))
        else:
            entries.append(File(item["path"], data=item["content"].encode(), mode=mode))
    for item in data.get("dirs", []):
        entries.append(Dir(item["path"], parse_mode(item.get("mode"), 0o755)))
    for item in data.get("symlinks", []):
        entries.append(Symlink(item["path"], item["target"]))
    return ImageSpec(name=data.get("name"), tag=data.get("tag"), entries=entries,
                     entrypoint=data.get("entrypoint"), cmd=data.get("cmd"),
                     env=data.get("env"), user=data.get("user"), workdir=data.get("workdir"),
                     labels=dict(data.get("labels", {})),
                     architecture=data.get("architecture", "amd64"), os=data.get("os", "linux"))


def resolve_entries(entries):
    """Sorted tar members {path: entry}, parents added, duplicates refused."""
    members = {}
    for entry in entries:
        path = image_path(entry.path)
        if isinstance(entry, File):
            if (entry.src is None) == (entry.data is None):
                raise ImageError(f"file /{path}: give exactly one of src, data")
            if entry.src is not None and not os.path.isfile(entry.src):
                raise ImageError(f"file /{path}: source {entry.src} is not a file")
        elif isinstance(entry, Symlink):
            if not entry.target:
                raise ImageError(f"symlink /{path}: empty target")
        elif not isinstance(entry, Dir):
            raise ImageError(f"unknown entry {entry!r}")
        previous = members.get(path)
        if previous is not None and previous != entry:
            raise ImageError(f"/{path} is given twice: {previous} and {entry}")
        members[path] = entry
    for path in list(members):
        parent = posixpath.dirname(path)
        while parent:
            existing = members.get(parent)
            if existing is None:
                members[parent] = Dir("/" + parent)
            elif not isinstance(existing, Dir):
                raise ImageError(f"/{parent} is a parent of /{path}, but not a directory")
            parent = posixpath.dirname(parent)
    return dict(sorted(members.items()))


# --- writing -----------------------------------------------------------------------


class _HashingWriter:
    """A write-only file object that hashes and counts what goes through it."""

    def __init__(self, target):
        self.target = target
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.sha.update(data)
        self.size += len(data)
        return self.target.write(data)

    def tell(self):
        return self.size

    def flush(self):
        self.target.flush()

    @property
    def digest(self):
        return "sha256:" + self.sha.hexdigest()


def _tarinfo(name, kind, mode, mtime, size=0, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = mtime
    info.size = size
    info.linkname = linkname
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_layer(members, out, mtime):
    """The layer tar of `members` (from resolve_entries) into the file object `out`."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, entry in members.items():
            if isinstance(entry, Dir):
                tar.addfile(_tarinfo(path, tarfile.DIRTYPE, entry.mode, mtime))
            elif isinstance(entry, Symlink):
                tar.addfile(_tarinfo(path, tarfile.SYMTYPE, 0o777, mtime,
                                     linkname=entry.target))
            elif entry.data is not None:
                tar.addfile(_tarinfo(path, tarfile.REGTYPE, entry.mode, mtime,
                                     size=len(entry.data)), io.BytesIO(entry.data))
            else:
                with open(entry.src, "rb") as src:
                    size = os.fstat(src.fileno()).st_size
                    tar.addfile(_tarinfo(path, tarfile.REGTYPE, entry.mode, mtime, size=size),
                                src)


def _json_bytes(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _descriptor(media_type, data_or_digest, size=None, **extra):
    if isinstance(data_or_digest, bytes):
        digest = "sha256:" + hashlib.sha256(data_or_digest).hexdigest()
        size = len(data_or_digest)
    else:
        digest = data_or_digest
    return dict({"mediaType": media_type, "digest": digest, "size": size}, **extra)


def _created(mtime):
    return datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def image_config(spec, diff_id, mtime):
    """The OCI image config: what a runtime (containerd's CRI) runs by default."""
    config = {"Env": list(DEFAULT_ENV if spec.env is None else spec.env)}
    if spec.entrypoint is not None:
        config["Entrypoint"] = list(spec.entrypoint)
    if spec.cmd is not None:
        config["Cmd"] = list(spec.cmd)
    if spec.user is not None:
        config["User"] = spec.user
    if spec.workdir is not None:
        config["WorkingDir"] = spec.workdir
    if spec.labels:
        config["Labels"] = dict(spec.labels)
    for key in ("Entrypoint", "Cmd", "Env"):
        value = config.get(key)
        if value is not None and not all(isinstance(v, str) for v in value):
            raise ImageError(f"{key} must be a list of strings, not {value!r}")
    for item in config["Env"]:
        if "=" not in item:
            raise ImageError(f"Env entry {item!r}: not KEY=VALUE")
    created = _created(mtime)
    return {
        "architecture": spec.architecture,
        "os": spec.os,
        "created": created,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "meshlane scripts/lib/oci_image.py"}],
    }


def default_mtime():
    """SOURCE_DATE_EPOCH (the reproducible-builds convention) or 0."""
    return int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)


def build_image(spec, out, compression="gzip", mtime=None, reuse=False, compresslevel=6):
    """Writes `spec` as an OCI archive at `out` (atomically) and returns a BuildResult.

    reuse: when `out` was built from the same inputs (the same spec and the same
    content of every source file, by sha256) and by this same writer, keep it.
    """
    if compression not in ("gzip", "none"):
        raise ImageError(f"compression {compression!r}: gzip or none")
    mtime = default_mtime() if mtime is None else int(mtime)
    ref = spec.ref
    tag = check_tag(spec.tag)
    members = resolve_entries(spec.entries)
    key = inputs_key(spec, members, compression, mtime, compresslevel)
    stamp = out + ".inputs"
    if reuse:
        previous = _read_stamp(stamp, out)
        if previous is not None and previous.get("key") == key:
            result = BuildResult(**previous["result"])
            result.archive, result.reused = out, True
            return result

    out_dir = os.path.dirname(os.path.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".oci-image.") as tmp:
        layer_path = os.path.join(tmp, "layer")
        with open(layer_path, "wb") as raw:
            stored = _HashingWriter(raw)
            if compression == "gzip":
                # No file name, a fixed mtime: the gzip header is the same every time.
                with gzip.GzipFile(filename="", mode="wb", fileobj=stored, mtime=0,
                                   compresslevel=compresslevel) as gz:
                    plain = _HashingWriter(gz)
                    write_layer(members, plain, mtime)
            else:
                plain = stored
                write_layer(members, plain, mtime)
        diff_id, layer_digest, layer_size = plain.digest, stored.digest, stored.size

        config = _json_bytes(image_config(spec, diff_id, mtime))
        layer_type = MEDIA_LAYER_GZIP if compression == "gzip" else MEDIA_LAYER
        manifest = _json_bytes({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": _descriptor(MEDIA_CONFIG, config),
            "layers": [_descriptor(layer_type, layer_digest, layer_size)],
        })
        manifest_desc = _descriptor(
            MEDIA_MANIFEST, manifest,
            platform={"architecture": spec.architecture, "os": spec.os},
            annotations={ANNOTATION_CONTAINERD_NAME: ref, ANNOTATION_REF_NAME: tag})
        index = _json_bytes({"schemaVersion": 2, "mediaType": MEDIA_INDEX,
                             "manifests": [manifest_desc]})
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()

        def blob_name(digest):
            return "blobs/sha256/" + digest.split(":", 1)[1]

        docker_manifest = _json_bytes([{"Config": blob_name(config_digest),
                                        "RepoTags": [ref],
                                        "Layers": [blob_name(layer_digest)]}])
        blobs = {
            blob_name(config_digest): config,
            blob_name(manifest_desc["digest"]): manifest,
        }
        archive_tmp = os.path.join(tmp, "archive")
        with tarfile.open(archive_tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
            def add_bytes(name, data):
                tar.addfile(_tarinfo(name, tarfile.REGTYPE, 0o644, mtime, size=len(data)),
                            io.BytesIO(data))
            for name in ("blobs", "blobs/sha256"):
                tar.addfile(_tarinfo(name, tarfile.DIRTYPE, 0o755, mtime))
            names = sorted(list(blobs) + [blob_name(layer_digest)])
            for name in names:
                if name in blobs:
                    add_bytes(name, blobs[name])
                else:
                    with open(layer_path, "rb") as layer:
                        tar.addfile(_tarinfo(name, tarfile.REGTYPE, 0o644, mtime,
                                             size=layer_size), layer)
            add_bytes("index.json", index)
            add_bytes("manifest.json", docker_manifest)
            add_bytes("oci-layout", _json_bytes({"imageLayoutVersion": "1.0.0"}))
        os.chmod(archive_tmp, 0o644)
        os.replace(archive_tmp, out)

    result = BuildResult(archive=out, ref=ref, digest=manifest_desc["digest"],
                         config_digest=config_digest, layer_digest=layer_digest,
                         diff_id=diff_id)
    size = os.stat(out).st_size
    with open(stamp + ".tmp", "w") as f:
        json.dump({"key": key, "size": size, "result": result.as_dict()}, f, sort_keys=True)
    os.replace(stamp + ".tmp", stamp)
    return result


def file_sha256(path):
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                return sha.hexdigest()
            sha.update(chunk)


def inputs_key(spec, members=None, compression="gzip", mtime=0, compresslevel=6):
    """sha256 over everything the archive is made from: the spec, the content of each
    source file, the options, and this file (a change in the writer rebuilds)."""
    members = resolve_entries(spec.entries) if members is None else members
    entries = []
    for path, entry in members.items():
        if isinstance(entry, File):
            content = (file_sha256(entry.src) if entry.src is not None
                       else hashlib.sha256(entry.data).hexdigest())
            entries.append(["file", path, entry.mode, content])
        elif isinstance(entry, Dir):
            entries.append(["dir", path, entry.mode])
        else:
            entries.append(["symlink", path, entry.target])
    fields = {
        "writer": file_sha256(os.path.abspath(__file__)),
        "ref": spec.ref, "tag": spec.tag, "entries": entries,
        "entrypoint": spec.entrypoint, "cmd": spec.cmd, "env": spec.env, "user": spec.user,
        "workdir": spec.workdir, "labels": spec.labels, "architecture": spec.architecture,
        "os": spec.os, "compression": compression, "mtime": mtime,
        "compresslevel": compresslevel,
    }
    return hashlib.sha256(_json_bytes(fields)).hexdigest()


def _read_stamp(stamp, out):
    try:
        with open(stamp) as f:
            previous = json.load(f)
        if os.stat(out).st_size != previous["size"]:
            return None
        return previous
    except (OSError, ValueError, KeyError):
        return None


# --- reading back ------------------------------------------------------------------


def _safe_member_name(name):
    norm = posixpath.normpath(name)
    if name.startswith("/") or norm == ".." or norm.startswith("../"):
        raise ImageError(f"archive member {name!r} escapes the archive")
    return norm


class Archive:
    """An OCI archive opened for reading; every blob read is checked against its digest."""

    def __init__(self, path):
        self.path = path
        self.tar = tarfile.open(path, mode="r:")
        self.members = {}
        for member in self.tar.getmembers():
            self.members[_safe_member_name(member.name)] = member
        layout = json.loads(self.read("oci-layout"))
        if layout.get("imageLayoutVersion") != "1.0.0":
            raise ImageError(f"{path}: oci-layout version {layout!r}")
        self.index = json.loads(self.read("index.json"))

    def close(self):
        self.tar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def read(self, name):
        member = self.members.get(name)
        if member is None or not member.isfile():
            raise ImageError(f"{self.path}: no {name}")
        return self.tar.extractfile(member).read()

    def open_blob(self, descriptor):
        """The blob of `descriptor`, after checking its size and sha256."""
        algo, _, hexdigest = descriptor["digest"].partition(":")
        if algo != "sha256":
            raise ImageError(f"digest {descriptor['digest']}: only sha256 is supported")
        name = f"blobs/sha256/{hexdigest}"
        member = self.members.get(name)
        if member is None:
            raise ImageError(f"{self.path}: blob {descriptor['digest']} is missing")
        if member.size != descriptor["size"]:
            raise ImageError(f"{self.path}: blob {descriptor['digest']} has {member.size} "
                             f"bytes, its descriptor says {descriptor['size']}")
        sha = hashlib.sha256()
        blob = self.tar.extractfile(member)
        while True:
            chunk = blob.read(CHUNK)
            if not chunk:
                break
            sha.update(chunk)
        if sha.hexdigest() != hexdigest:
            raise ImageError(f"{self.path}: blob {descriptor['digest']} has digest "
                             f"sha256:{sha.hexdigest()}")
        return self.tar.extractfile(member)

    def blob_json(self, descriptor):
        return json.loads(self.open_blob(descriptor).read())

    def images(self):
        """[(index descriptor, manifest, config)] for each manifest in index.json."""
        out = []
        for desc in self.index.get("manifests", []):
            manifest = self.blob_json(desc)
            config = self.blob_json(manifest["config"])
            out.append((desc, manifest, config))
        return out

    def layer_members(self, layer_desc):
        """The entries of a layer blob (checked), as a list of TarInfo."""
        blob = self.open_blob(layer_desc)
        mode = "r|gz" if layer_desc["mediaType"].endswith("+gzip") else "r|"
        with tarfile.open(fileobj=blob, mode=mode) as layer:
            return list(layer)


def inspect(path, list_files=True):
    """A summary of the archive (every blob digest checked), as a dict."""
    with Archive(path) as archive:
        images = []
        for desc, manifest, config in archive.images():
            annotations = desc.get("annotations", {})
            diff_ids = config.get("rootfs", {}).get("diff_ids", [])
            layers = []
            for layer_desc, diff_id in zip(manifest["layers"], diff_ids):
                entry = {"digest": layer_desc["digest"], "mediaType": layer_desc["mediaType"],
                         "size": layer_desc["size"], "diff_id": diff_id}
                members = archive.layer_members(layer_desc)
                if list_files:
                    entry["files"] = [_describe_member(m) for m in members]
                layers.append(entry)
            images.append({
                "name": annotations.get(ANNOTATION_CONTAINERD_NAME),
                "ref_name": annotations.get(ANNOTATION_REF_NAME),
                "digest": desc["digest"],
                "platform": desc.get("platform"),
                "config": config.get("config", {}),
                "architecture": config.get("architecture"),
                "os": config.get("os"),
                "layers": layers,
            })
        docker = (json.loads(archive.read("manifest.json"))
                  if "manifest.json" in archive.members else None)
        return {"archive": path, "images": images, "docker_manifest": docker}


def _describe_member(member):
    kind = {tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.REGTYPE: "file",
            tarfile.AREGTYPE: "file", tarfile.LNKTYPE: "hardlink"}.get(member.type, "other")
    out = {"path": "/" + member.name.rstrip("/"), "type": kind, "mode": f"{member.mode:04o}",
           "uid": member.uid, "gid": member.gid}
    if kind == "file":
        out["size"] = member.size
    if kind in ("symlink", "hardlink"):
        out["target"] = member.linkname
    return out


def _check_extract_target(dest, member):
    """Refuses a member that would land outside `dest`, e.g. under a symlink to an
    absolute path (/lib64 -> /usr/lib64 means the host's /usr/lib64 here)."""
    name = _safe_member_name(member.name)
    root = os.path.realpath(dest)
    parent = os.path.realpath(os.path.join(root, posixpath.dirname(name)))
    if parent != root and not parent.startswith(root + os.sep):
        raise ImageError(f"layer member {member.name!r} would be written outside {dest} "
                         f"(through a symlink to {parent})")


def extract(path, dest):
    """Unpacks the (single) image's layers into `dest`, modes and owners as stored."""
    with Archive(path) as archive:
        images = archive.images()
        if len(images) != 1:
            raise ImageError(f"{path}: {len(images)} images, extract wants one")
        _, manifest, _ = images[0]
        os.makedirs(dest, exist_ok=True)
        for layer_desc in manifest["layers"]:
            blob = archive.open_blob(layer_desc)
            mode = "r|gz" if layer_desc["mediaType"].endswith("+gzip") else "r|"
            with tarfile.open(fileobj=blob, mode=mode) as layer:
                for member in layer:
                    _check_extract_target(dest, member)
                    # Our own checked archive: keep setuid/sticky bits and owners
                    # (the 'tar' filter of Python >= 3.12 would clear them).
                    if hasattr(tarfile, "fully_trusted_filter"):
                        layer.extract(member, dest, filter="fully_trusted")
                    else:
                        layer.extract(member, dest)
    return dest


# --- command line ------------------------------------------------------------------


def _split_spec_arg(text, what, parts):
    pieces = text.split(":")
    if len(pieces) < parts[0] or len(pieces) > parts[1]:
        raise ImageError(f"{what} {text!r}: expected {'|'.join(parts[2])}")
    return pieces


def _json_list(text, what):
    try:
        value = json.loads(text)
    except ValueError:
        return [text]  # a plain word: a one-element list
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ImageError(f"{what}: a JSON list of strings, e.g. '[\"/meshlane\"]'")
    return value


def spec_from_args(args):
    if args.spec:
        with open(args.spec) as f:
            spec = spec_from_dict(json.load(f), os.path.dirname(os.path.abspath(args.spec)))
    else:
        spec = ImageSpec(name=None, tag=None)
    for text in args.file:
        pieces = _split_spec_arg(text, "--file", (2, 3, ["SRC:DEST", "SRC:DEST:MODE"]))
        spec.entries.append(File(pieces[1], src=pieces[0],
                                 mode=parse_mode(pieces[2] if len(pieces) > 2 else None,
                                                 0o644)))
    for text in args.dir:
        pieces = _split_spec_arg(text, "--dir", (1, 2, ["PATH", "PATH:MODE"]))
        spec.entries.append(Dir(pieces[0], parse_mode(pieces[1] if len(pieces) > 1 else None,
                                                      0o755)))
    for text in args.symlink:
        path, sep, target = text.partition(":")
        if not sep:
            raise ImageError(f"--symlink {text!r}: expected PATH:TARGET")
        spec.entries.append(Symlink(path, target))
    for field in ("name", "tag", "user", "workdir"):
        if getattr(args, field) is not None:
            setattr(spec, field, getattr(args, field))
    if args.entrypoint is not None:
        spec.entrypoint = _json_list(args.entrypoint, "--entrypoint")
    if args.cmd is not None:
        spec.cmd = _json_list(args.cmd, "--cmd")
    if args.env:
        spec.env = list(DEFAULT_ENV if spec.env is None else spec.env) + args.env
    for text in args.label:
        key, sep, value = text.partition("=")
        if not sep:
            raise ImageError(f"--label {text!r}: expected KEY=VALUE")
        spec.labels[key] = value
    if not spec.name or not spec.tag:
        raise ImageError("the image needs --name and --tag (or name and tag in --spec)")
    return spec


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Writes OCI image archives without Docker (see the module docstring).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1])
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("build", help="write an OCI archive; prints a JSON line")
    p.add_argument("--out", required=True, help="the archive to write")
    p.add_argument("--spec", help="a JSON spec file")
    p.add_argument("--name", help="repository, e.g. ghcr.io/meshlane/meshlane")
    p.add_argument("--tag", help="e.g. 0.1.0")
    p.add_argument("--file", action="append", default=[], metavar="SRC:DEST[:MODE]")
    p.add_argument("--dir", action="append", default=[], metavar="PATH[:MODE]")
    p.add_argument("--symlink", action="append", default=[], metavar="PATH:TARGET")
    p.add_argument("--entrypoint", metavar="JSON", help='e.g. \'["/meshlane"]\'')
    p.add_argument("--cmd", metavar="JSON", help='e.g. \'["install"]\'')
    p.add_argument("--env", action="append", default=[], metavar="K=V",
                   help=f"added to the spec's env (default {DEFAULT_ENV[0]})")
    p.add_argument("--user")
    p.add_argument("--workdir")
    p.add_argument("--label", action="append", default=[], metavar="K=V")
    p.add_argument("--compression", choices=["gzip", "none"], default="gzip")
    p.add_argument("--mtime", type=int, help="file and config times (default "
                   "SOURCE_DATE_EPOCH or 0)")
    p.add_argument("--reuse", action="store_true",
                   help="keep --out when it was built from the same inputs")

    p = commands.add_parser("inspect", help="check every digest; print a JSON summary")
    p.add_argument("archive")
    p.add_argument("--no-files", action="store_true", help="leave out the file lists")

    p = commands.add_parser("extract", help="unpack the root filesystem into DIR")
    p.add_argument("archive")
    p.add_argument("dir")

    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            result = build_image(spec_from_args(args), args.out, compression=args.compression,
                                 mtime=args.mtime, reuse=args.reuse)
            print(json.dumps(result.as_dict()))
        elif args.command == "inspect":
            print(json.dumps(inspect(args.archive, list_files=not args.no_files), indent=1))
        else:
            extract(args.archive, args.dir)
    except (ImageError, OSError, ValueError, tarfile.TarError) as err:
        print(f"oci_image.py: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
