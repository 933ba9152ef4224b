#!/usr/bin/env python3
"""The install DaemonSet's image (install/Dockerfile's), written without Docker.

scripts/image.sh builds the static binary and calls this; tests/tools/images.py
imports it, so the test node runs the very archive users push.

  install_image.py --binary PATH [--out FILE] [--name NAME] [--tag TAG] [--no-reuse]
  install_image.py --binary PATH --rootfs DIR

Prints one JSON line: {"archive", "ref", "digest", ...}. With --rootfs, writes the
image's one layer, unpacked, into DIR instead (tests/static_binary.rs runs the
binary chrooted there).

What the image holds, and why (install/Dockerfile uses distroless static; this is
the part of it the binary needs, and no more):
  /meshlane            the statically linked binary; ENTRYPOINT ["/meshlane"],
                       CMD ["install"], as root (it loads BPF programs and writes
                       host paths; the DaemonSet runs it privileged).
  /etc/passwd, group   root and nonroot (65532), as distroless has them, so that a
                       runAsUser override shows a name; meshlane looks up no user.
  /etc/nsswitch.conf   "hosts: files dns", as distroless has it: without the file,
                       glibc asks DNS first and reads /etc/hosts only when no DNS
                       server answers, so a pod's hostAliases would be ignored for
                       the kubeconfig's server. The static glibc (2.34 and later)
                       has both sources built in: no NSS module is loaded.
  /tmp                 1777, as in distroless; both manifests mount the root
                       filesystem read-only, and meshlane writes no temp file.
Not included: CA certificates (the API server's CA comes from the service account
or the kubeconfig; a kubeconfig without one is checked against the Mozilla roots
compiled into the binary, webpki-roots) and tzdata (log times are UTC).
"""

import argparse
import json
import os
import struct
import sys

# No __pycache__ in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oci_image  # noqa: E402  (next to this file)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_NAME = "ghcr.io/meshlane/meshlane"
PT_INTERP = 3

PASSWD = ("root:x:0:0:root:/root:/sbin/nologin\n"
          "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
GROUP = "root:x:0:\nnonroot:x:65532:\n"
NSSWITCH = "hosts: files dns\n"


def cargo_version(repo=REPO):
    """The package version in Cargo.toml (the default tag)."""
    import tomllib
    with open(os.path.join(repo, "Cargo.toml"), "rb") as f:
        return tomllib.load(f)["package"]["version"]


def check_static(path):
    """Refuses a dynamically linked ELF: the image has no loader and no libc."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
            raise oci_image.ImageError(f"{path}: not a 64-bit little-endian ELF file")
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        p_type, = struct.unpack_from("<I", table, i * phentsize)
        if p_type == PT_INTERP:
            raise oci_image.ImageError(
                f"{path} is dynamically linked; the image needs the static build "
                "(install/build-static.sh)")


def spec(binary, name=DEFAULT_NAME, tag=None):
    version = cargo_version()
    return oci_image.ImageSpec(
        name=name,
        tag=tag or version,
        entries=[
            oci_image.File("/meshlane", src=binary, mode=0o755),
            oci_image.File("/etc/passwd", data=PASSWD.encode(), mode=0o644),
            oci_image.File("/etc/group", data=GROUP.encode(), mode=0o644),
            oci_image.File("/etc/nsswitch.conf", data=NSSWITCH.encode(), mode=0o644),
            oci_image.Dir("/tmp", mode=0o1777),
        ],
        entrypoint=["/meshlane"],
        cmd=["install"],
        user="0",
        workdir="/",
        labels={
            "org.opencontainers.image.title": "meshlane",
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.source": "https://github.com/meshlane/meshlane",
            "org.opencontainers.image.licenses": "Apache-2.0",
        },
    )


def default_out(tag=None):
    return os.path.join(REPO, "target", "images", f"meshlane-{tag or cargo_version()}.oci.tar")


def build(binary, out=None, name=DEFAULT_NAME, tag=None, reuse=True):
    """Writes the install image; returns oci_image.BuildResult."""
    check_static(binary)
    image = spec(binary, name, tag)
    # gzip: this archive is what gets pushed to registries.
    return oci_image.build_image(image, out or default_out(image.tag), compression="gzip",
                                 reuse=reuse)


def write_rootfs(binary, directory):
    """The image's filesystem, unpacked into `directory` (from the same layer)."""
    import io
    import tarfile
    check_static(binary)
    members = oci_image.resolve_entries(spec(binary).entries)
    layer = io.BytesIO()
    oci_image.write_layer(members, layer, 0)
    layer.seek(0)
    os.makedirs(directory, exist_ok=True)
    with tarfile.open(fileobj=layer) as tar:
        # The layer was written just above from our own spec, so its modes are
        # kept as they are (the "tar" filter would clear /tmp's sticky bit).
        tar.extractall(directory, filter="fully_trusted")
    return directory


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True, help="the static meshlane")
    parser.add_argument("--out", help="default target/images/meshlane-<tag>.oci.tar")
    parser.add_argument("--name", default=DEFAULT_NAME)
    parser.add_argument("--tag", help="default: the version in Cargo.toml")
    parser.add_argument("--no-reuse", action="store_true",
                        help="rebuild even when --out was made from the same inputs")
    parser.add_argument("--rootfs", help="write the unpacked filesystem here, not an archive")
    args = parser.parse_args(argv)
    if args.rootfs:
        try:
            print(json.dumps({"rootfs": write_rootfs(args.binary, args.rootfs)}))
        except (oci_image.ImageError, OSError) as err:
            print(f"install_image.py: {err}", file=sys.stderr)
            return 1
        return 0
    try:
        result = build(args.binary, args.out, args.name, args.tag, reuse=not args.no_reuse)
    except (oci_image.ImageError, OSError) as err:
        print(f"install_image.py: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
