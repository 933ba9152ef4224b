#!/usr/bin/env python3
"""The container images of the containerd test node, as OCI archives (no Docker, no registry).

  images.py [--out DIR] [--meshlane PATH] [--envoy PATH] [--only NAME,...]
            [--install-name NAME] [--install-tag TAG] [--check]

Writes DIR/<image>.oci.tar for each image and prints one JSON line per image:
  {"name": "app", "ref": "meshlane.test/app:1", "archive": "/abs/DIR/app.oci.tar",
   "digest": "sha256:...", "reused": false}
Import each with `ctr -n k8s.io images import ARCHIVE`: it is named `ref`.

  pause    meshlane.test/pause:1         tests/tools/pause.c (static), /pause, as 65535
  envoy    meshlane.test/envoy:1.40.0    target/tools/envoy + the libraries ldd lists,
                                         /usr/local/bin/envoy, as 1337, /etc/envoy
  app      meshlane.test/app:1           tests/tools/node_app.c (static), /node-app
  install  ghcr.io/meshlane/meshlane:<Cargo version>  scripts/image.sh's archive
           (scripts/lib/install_image.py); --meshlane is the static binary, else
           install/build-static.sh builds it

--out defaults to target/test-images. Compiled programs go to DIR/bin. Nothing is
rebuilt when its inputs (sources, compiler, files, spec: by content hash) did not
change. --check unpacks each image and runs its entrypoint in a chroot (root only):
pause -v, node-app --help, envoy --version as UID 1337, meshlane version.
"""

import argparse
import glob
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# No __pycache__ in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(REPO, "scripts", "lib"))
import install_image  # noqa: E402
import oci_image  # noqa: E402

TOOLS = os.path.dirname(os.path.abspath(__file__))
IMAGES = ("pause", "envoy", "app", "install")
CFLAGS = ["-static", "-O2", "-Wall", "-Wextra", "-Werror"]
PROXY_UID = 1337  # Istio's istio-proxy
ENVOY_VERSION = "1.40.0"

# Istio's proxy image has these users; Envoy itself looks none up.
ENVOY_PASSWD = ("root:x:0:0:root:/root:/sbin/nologin\n"
                "istio-proxy:x:1337:1337:istio-proxy:/home/istio-proxy:/sbin/nologin\n")
ENVOY_GROUP = "root:x:0:\nistio-proxy:x:1337:\n"


class BuildError(Exception):
    pass


def log(message):
    print(f"[images] {message}", file=sys.stderr, flush=True)


def compile_static(source, output):
    """gcc -static a C program from tests/tools unless the source, the flags and the
    compiler are those of the last build (a .key file next to the binary)."""
    compiler = subprocess.run(["gcc", "--version"], capture_output=True, text=True,
                              check=True).stdout.splitlines()[0]
    # The tools' own headers (pid1.h) are part of every source.
    parts = [source] + sorted(glob.glob(os.path.join(TOOLS, "*.h")))
    digest = hashlib.sha256()
    for part in parts:
        with open(part, "rb") as f:
            digest.update(f.read())
    digest.update(json.dumps([CFLAGS, compiler]).encode())
    key = digest.hexdigest()
    stamp = output + ".key"
    try:
        with open(stamp) as f:
            if f.read().strip() == key and os.path.isfile(output):
                return output
    except OSError:
        pass
    os.makedirs(os.path.dirname(output), exist_ok=True)
    log(f"gcc {' '.join(CFLAGS)} {os.path.relpath(source, REPO)}")
    tmp = output + ".tmp"
    build = subprocess.run(["gcc", *CFLAGS, "-o", tmp, source], capture_output=True, text=True)
    # glibc's linker note about getaddrinfo in static programs is expected: the
    # static glibc resolves with /etc/hosts and DNS built in.
    noise = [line for line in build.stderr.splitlines()
             if line.strip() and "getaddrinfo" not in line and "in function" not in line]
    if build.returncode != 0:
        raise BuildError(f"gcc {source} failed:\n{build.stderr}")
    if noise:
        log("\n".join(noise))
    os.replace(tmp, output)
    with open(stamp, "w") as f:
        f.write(key + "\n")
    return output


def ldd_libraries(binary):
    """[(path as ldd resolves it, the file)] for every shared library and the loader."""
    run = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if run.returncode != 0:
        raise BuildError(f"ldd {binary}: {run.stdout}{run.stderr}")
    libs = []
    for line in run.stdout.splitlines():
        line = line.strip()
        if "=>" in line:
            name, _, rest = line.partition("=>")
            path = rest.strip().split(" (")[0].strip()
            if not path:
                continue  # linux-vdso.so.1 => (none): provided by the kernel
            if path == "not found":
                raise BuildError(f"ldd {binary}: {name.strip()} not found")
        else:
            path = line.split(" (")[0].strip()
        if not path.startswith("/"):
            continue  # linux-vdso.so.1
        libs.append((path, os.path.realpath(path)))
    if not any("ld-linux" in path for path, _ in libs):
        raise BuildError(f"ldd {binary}: no dynamic loader listed:\n{run.stdout}")
    return libs


def pause_spec(workdir):
    binary = compile_static(os.path.join(TOOLS, "pause.c"), os.path.join(workdir, "pause"))
    return oci_image.ImageSpec(
        name="meshlane.test/pause", tag="1",
        entries=[oci_image.File("/pause", src=binary, mode=0o755)],
        # As Kubernetes' pause image: it needs no privilege at all.
        entrypoint=["/pause"], user="65535:65535", env=[])


def app_spec(workdir):
    binary = compile_static(os.path.join(TOOLS, "node_app.c"),
                            os.path.join(workdir, "node-app"))
    return oci_image.ImageSpec(
        name="meshlane.test/app", tag="1",
        entries=[oci_image.File("/node-app", src=binary, mode=0o755),
                 oci_image.Dir("/tmp", mode=0o1777)],
        entrypoint=["/node-app"], cmd=["--help"], workdir="/")


def envoy_spec(envoy):
    if not os.path.isfile(envoy):
        raise BuildError(f"no Envoy at {envoy} (scripts/deps.sh unpacks it there)")
    entries = [oci_image.File("/usr/local/bin/envoy", src=envoy, mode=0o755),
               oci_image.Dir("/etc/envoy", mode=0o755),
               oci_image.Dir("/tmp", mode=0o1777),
               oci_image.File("/etc/passwd", data=ENVOY_PASSWD.encode()),
               oci_image.File("/etc/group", data=ENVOY_GROUP.encode())]
    for path, real in ldd_libraries(envoy):
        # The file itself at the path ldd printed (no host symlinks): the loader
        # finds the libraries in its default directories without an ld.so.cache.
        mode = 0o755 if "ld-linux" in path else 0o644
        entries.append(oci_image.File(path, src=real, mode=mode))
    return oci_image.ImageSpec(
        name="meshlane.test/envoy", tag=ENVOY_VERSION, entries=entries,
        entrypoint=["/usr/local/bin/envoy"], user=f"{PROXY_UID}:{PROXY_UID}", workdir="/")


def static_meshlane():
    env = dict(os.environ)
    env["PATH"] = os.path.expanduser("~/.cargo/bin") + os.pathsep + env.get("PATH", "")
    log("install/build-static.sh")
    run = subprocess.run([os.path.join(REPO, "install", "build-static.sh")],
                         stdout=subprocess.PIPE, text=True, env=env)
    if run.returncode != 0:
        raise BuildError("install/build-static.sh failed")
    return run.stdout.strip()


def build(names, out_dir, meshlane=None, envoy=None, install_name=None, install_tag=None):
    """Builds the named images into out_dir; yields a dict per image."""
    out_dir = os.path.abspath(out_dir)
    workdir = os.path.join(out_dir, "bin")
    for name in names:
        archive = os.path.join(out_dir, f"{name}.oci.tar")
        if name == "install":
            result = install_image.build(meshlane or static_meshlane(), archive,
                                         install_name or install_image.DEFAULT_NAME,
                                         install_tag)
        else:
            spec = {"pause": lambda: pause_spec(workdir),
                    "app": lambda: app_spec(workdir),
                    "envoy": lambda: envoy_spec(envoy)}[name]()
            # Uncompressed layers: these archives never leave the machine, and
            # gzip would cost seconds for Envoy's 100 MB.
            result = oci_image.build_image(spec, archive, compression="none", reuse=True)
        yield {"name": name, "ref": result.ref, "archive": result.archive,
               "digest": result.digest, "reused": result.reused}


CHECKS = {
    "pause": (None, ["/pause", "-v"], r"^pause"),
    "app": (None, ["/node-app", "--help"], r"node-app serve"),
    "envoy": (f"{PROXY_UID}:{PROXY_UID}", ["/usr/local/bin/envoy", "--version"],
              rf"/{re.escape(ENVOY_VERSION)}/"),
    "install": (None, ["/meshlane", "version"], r"^meshlane "),
}


def check(name, archive):
    """Unpacks the archive and runs its program in a chroot, as the image's user."""
    if os.geteuid() != 0:
        raise BuildError("--check runs chroot: run as root")
    userspec, argv, expect = CHECKS[name]
    with tempfile.TemporaryDirectory(prefix=f"meshlane-image-{name}.") as tmp:
        os.chmod(tmp, 0o755)  # the rootfs must be reachable for UID 1337
        root = os.path.join(tmp, "rootfs")
        oci_image.extract(archive, root)
        command = ["chroot"] + ([f"--userspec={userspec}"] if userspec else []) + [root] + argv
        run = subprocess.run(command, capture_output=True, text=True, timeout=60)
        output = run.stdout + run.stderr
        if run.returncode != 0 or not re.search(expect, output, re.M):
            raise BuildError(f"{' '.join(command)} failed ({run.returncode}):\n{output}")
        return output.strip().splitlines()[0] if output.strip() else ""


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", metavar="DIR",
                        default=os.path.join(REPO, "target", "test-images"),
                        help="where the archives go (default target/test-images)")
    parser.add_argument("--meshlane", metavar="PATH",
                        help="the static meshlane for the install image (default: "
                        "install/build-static.sh builds it)")
    parser.add_argument("--envoy", metavar="PATH",
                        default=os.path.join(REPO, "target", "tools", "envoy"),
                        help="default target/tools/envoy (scripts/deps.sh)")
    parser.add_argument("--only", metavar="NAME,...",
                        help=f"a subset of {','.join(IMAGES)}")
    parser.add_argument("--install-name", metavar="NAME", default=install_image.DEFAULT_NAME,
                        help=f"default {install_image.DEFAULT_NAME}")
    parser.add_argument("--install-tag", metavar="TAG",
                        help="default: the version in Cargo.toml")
    parser.add_argument("--check", action="store_true",
                        help="run each image's program from its unpacked rootfs (root)")
    args = parser.parse_args(argv)
    names = IMAGES
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = set(names) - set(IMAGES)
        if unknown:
            parser.error(f"--only: unknown images {sorted(unknown)}")
    try:
        for image in build(names, args.out, args.meshlane, args.envoy, args.install_name,
                           args.install_tag):
            if args.check:
                image["check"] = check(image["name"], image["archive"])
            print(json.dumps(image), flush=True)
    except (BuildError, oci_image.ImageError, OSError, subprocess.SubprocessError) as err:
        print(f"images.py: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
