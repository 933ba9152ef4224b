"""Tests of the containerd test node's images and of node-app (python3 standard library only).

  sudo python3 -m unittest discover -s tests/tools -p 'test_*.py'

scripts/test.sh runs them (as root, after scripts/deps.sh). They build the real
images (install/build-static.sh for the install image: minutes the first time),
run each image's program from its unpacked rootfs (Envoy as UID 1337), run
node-app's subcommands in a network namespace of their own (with real iptables
REDIRECT rules standing in for the capture), and import every archive into a
throwaway containerd of their own (own root, state and socket under a temp dir;
never the machine's) and run them with `ctr run`. Like the Rust integration
tests they fail, never skip, when something they need is missing.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

TOOLS = os.path.dirname(os.path.abspath(__file__))
# No __pycache__ in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, TOOLS)
import images  # noqa: E402

REPO = images.REPO
OUT = os.path.join(REPO, "target", "test-images")
NODE_APP = os.path.join(OUT, "bin", "node-app")
PROBE = os.path.join(TOOLS, "probe.py")


def need_root(test):
    if os.geteuid() != 0:
        test.fail("these tests run chroot, unshare, iptables and containerd: run them as root")


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def node_app():
    return images.compile_static(os.path.join(TOOLS, "node_app.c"), NODE_APP)


# --- scenarios: run inside `unshare --net --pid --fork --mount-proc` -------------------
#
# Each runs in a fresh network namespace and PID namespace: whatever it starts dies
# with it, and its iptables rules die with the netns. It prints one JSON object.


def sh(*argv, **kwargs):
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, **kwargs)


def start(*argv, user=None):
    """A background node-app; returns the Popen once it printed READY."""
    prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user else []
    proc = subprocess.Popen(prefix + [NODE_APP, *argv], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if line.strip() != "READY":
        raise RuntimeError(f"{argv}: no READY but {line!r}")
    return proc


def run_app(*argv, timeout=30):
    run = subprocess.run([NODE_APP, *argv], capture_output=True, text=True, timeout=timeout)
    return {"code": run.returncode, "lines": json_lines(run.stdout), "stderr": run.stderr}


def scenario_serve_call():
    sh("ip", "link", "set", "lo", "up")
    server = start("serve", "--port", "8080", "--name", "web")
    out = {
        "v4": run_app("call", "--to", "127.0.0.1:8080", "--send", 'say "hi"\t\u00e9'),
        "v6": run_app("call", "--to", "[::1]:8080"),
        "mapped": run_app("call", "--to", "[::ffff:127.0.0.1]:8080"),
        "refused": run_app("call", "--to", "127.0.0.1:8081"),
        "unresolvable": run_app("call", "--to", "no-such-name.invalid:80", "--timeout", "2"),
        "stream": run_app("stream", "--to", "127.0.0.1:8080", "--bytes", "3000000",
                          "--chunk", "7000"),
        "rate": run_app("stream", "--to", "[::1]:8080", "--bytes", "150000", "--rate",
                        "100000", "--chunk", "10000"),
    }
    # A stalled echo: stop the connection's server process (not the listener) for 3 s.
    stream = subprocess.Popen([NODE_APP, "stream", "--to", "127.0.0.1:8080", "--bytes",
                               "1000000", "--rate", "250000", "--chunk", "10000"],
                              stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    children = sh("pgrep", "-P", str(server.pid)).stdout.split()
    for pid in children:
        os.kill(int(pid), signal.SIGSTOP)
    time.sleep(3)
    for pid in children:
        os.kill(int(pid), signal.SIGCONT)
    stdout, _ = stream.communicate(timeout=30)
    out["gap"] = {"code": stream.returncode, "lines": json_lines(stdout)}
    server.send_signal(signal.SIGTERM)
    server_out, _ = server.communicate(timeout=10)
    out["server"] = {"code": server.returncode, "lines": json_lines(server_out)}
    return out


def scenario_istio_validation():
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "-6", "route", "add", "local", "::6/128", "dev", "lo")
    out = {"uncaptured": run_app("istio-validation", "--timeout", "2"),
           "uncaptured_probe": json.loads(sh(sys.executable, PROBE, "istio-validation",
                                             "--timeout", "2").stdout)}
    # Istio's own rule for this check's traffic (what istio-iptables would capture),
    # with the kernel's SO_ORIGINAL_DST as the answer: node-app must agree with
    # tests/tools/probe.py's reimplementation.
    sh("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "127.0.0.6",
       "-j", "REDIRECT", "--to-ports", "15001")
    sh("ip6tables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "::6",
       "-j", "REDIRECT", "--to-ports", "15006")
    out["captured"] = run_app("istio-validation")
    out["captured_probe"] = json.loads(sh(sys.executable, PROBE, "istio-validation").stdout)
    out["captured_v6"] = run_app("istio-validation", "--ipv6")
    out["captured_v6_probe"] = json.loads(sh(sys.executable, PROBE, "istio-validation",
                                             "--ipv6").stdout)
    return out


def scenario_original_dst_proxy():
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "addr", "add", "10.9.0.1/24", "dev", "lo")
    # Outbound port 80 of everyone but the proxy's UID goes to the proxy on 15001.
    sh("iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", "10.9.0.0/24",
       "--dport", "80", "-m", "owner", "!", "--uid-owner", "1337",
       "-j", "REDIRECT", "--to-ports", "15001")
    proxy = start("original-dst-proxy", "--port", "15001", user=1337)
    web = start("serve", "--port", "80", "--name", "web", "--original-dst")
    out = {"call": run_app("call", "--to", "10.9.0.2:80"),
           "stream": run_app("stream", "--to", "10.9.0.2:80", "--bytes", "2000000"),
           "direct": run_app("call", "--to", "127.0.0.1:15001")}
    time.sleep(0.3)
    for name, proc in (("proxy", proxy), ("web", web)):
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=10)
        out[name] = {"code": proc.returncode, "lines": json_lines(stdout)}
    return out


SCENARIOS = {f.__name__[len("scenario_"):]: f for f in
             (scenario_serve_call, scenario_istio_validation, scenario_original_dst_proxy)}


def in_netns(name):
    run = subprocess.run(
        ["unshare", "--net", "--pid", "--fork", "--mount-proc",
         sys.executable, os.path.abspath(__file__), "scenario", name],
        capture_output=True, text=True, timeout=120)
    if run.returncode != 0:
        raise AssertionError(f"scenario {name} failed ({run.returncode}):\n"
                             f"{run.stdout}\n{run.stderr}")
    return json.loads(run.stdout.splitlines()[-1])


class NodeApp(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        node_app()

    def setUp(self):
        need_root(self)

    def test_serve_call_stream(self):
        out = in_netns("serve_call")
        v4 = out["v4"]
        self.assertEqual(v4["code"], 0, v4)
        [line] = v4["lines"]
        self.assertTrue(line["ok"])
        self.assertEqual(line["peer"], "127.0.0.1:8080")
        self.assertEqual(line["reply"]["name"], "web")
        self.assertEqual(line["reply"]["got"], 'say "hi"\t\u00c3\u00a9')  # bytes, escaped
        self.assertEqual(line["reply"]["peer"], line["local"])
        self.assertEqual(out["v6"]["lines"][0]["peer"], "[::1]:8080")
        self.assertEqual(out["v6"]["lines"][0]["reply"]["local"], "[::1]:8080")
        self.assertEqual(out["mapped"]["lines"][0]["peer"], "127.0.0.1:8080")

        refused = out["refused"]
        self.assertEqual(refused["code"], 1)
        self.assertEqual(refused["lines"], [{"ok": False, "reply": None, "error": "ECONNREFUSED",
                                             "message": "Connection refused", "local": None,
                                             "peer": None}])
        self.assertEqual(out["unresolvable"]["lines"][0]["error"], "resolve")

        stream = out["stream"]["lines"]
        self.assertEqual(out["stream"]["code"], 0, stream)
        self.assertEqual(stream[0]["event"], "connected")
        self.assertEqual(stream[-1]["sent"], 3000000)
        self.assertEqual(stream[-1]["verified"], 3000000)
        rate = out["rate"]["lines"]
        self.assertTrue(rate[-1]["ok"], rate)
        # 150 kB at 100 kB/s, the first chunk at once: about 1.4 s.
        self.assertGreater(rate[-1]["seconds"], 1.2, rate)

        gap = out["gap"]
        self.assertEqual(gap["code"], 1, gap)
        self.assertFalse(gap["lines"][-1]["ok"])
        self.assertEqual(gap["lines"][-1]["verified"], 1000000)
        self.assertGreater(gap["lines"][-1]["max_gap_s"], 2.5)
        self.assertIn("gap", gap["lines"][-1]["error"])
        self.assertTrue(any(line.get("event") == "gap" for line in gap["lines"]), gap)

        server = out["server"]
        self.assertEqual(server["code"], 0, "serve exits 0 on SIGTERM")
        accepts = [line for line in server["lines"] if line.get("event") == "accept"]
        self.assertGreaterEqual(len(accepts), 6)
        self.assertEqual(accepts[0]["name"], "web")

    def test_istio_validation_agrees_with_probe_py(self):
        out = in_netns("istio_validation")
        self.assertEqual(out["uncaptured"]["code"], 1)
        [line] = out["uncaptured"]["lines"]
        self.assertFalse(line["ok"])
        self.assertFalse(out["uncaptured_probe"]["ok"])
        self.assertIn("capture does not work", out["uncaptured"]["stderr"])

        for key, listener, dst in (("captured", 15001, "127.0.0.6:15002"),
                                   ("captured_v6", 15006, "[::6]:15002")):
            self.assertEqual(out[key]["code"], 0, out[key])
            [line] = out[key]["lines"]
            self.assertEqual(line, {"ok": True, "listener": listener, "original_dst": dst,
                                    "error": None})
            probe = out[key + "_probe"]
            self.assertEqual((probe["ok"], probe["listener"], probe["original_dst"]),
                             (True, listener, dst))

    def test_original_dst_proxy(self):
        out = in_netns("original_dst_proxy")
        call = out["call"]
        self.assertEqual(call["code"], 0, call)
        [line] = call["lines"]
        self.assertEqual(line["peer"], "10.9.0.2:80")
        self.assertEqual(line["reply"]["name"], "web")
        self.assertEqual(out["stream"]["code"], 0, out["stream"])
        events = [e for e in out["proxy"]["lines"] if e.get("event") == "proxy"]
        self.assertEqual(len(events), 3, out["proxy"])
        self.assertEqual(events[0]["original_dst"], "10.9.0.2:80")
        self.assertEqual(events[0]["original_dst_level"], "SOL_IP")
        self.assertEqual(events[0]["peer"], line["local"])
        self.assertEqual(events[0]["upstream_local"], line["reply"]["peer"])
        # Dialing the proxy itself is refused instead of looping.
        self.assertEqual(out["direct"]["code"], 1)
        self.assertIn("proxy itself", events[2]["error"])
        self.assertEqual(out["proxy"]["code"], 0)
        self.assertEqual(out["web"]["code"], 0)


class Images(unittest.TestCase):
    """The archives images.py writes, run from their unpacked rootfs."""

    def setUp(self):
        need_root(self)

    def build(self, *args):
        run = subprocess.run([sys.executable, os.path.join(TOOLS, "images.py"), "--out", OUT,
                              *args], capture_output=True, text=True, timeout=1800)
        self.assertEqual(run.returncode, 0, run.stderr)
        return {line["name"]: line for line in json_lines(run.stdout)}

    def test_build_check_and_reuse(self):
        first = self.build("--check")
        self.assertEqual(list(first), ["pause", "envoy", "app", "install"])
        refs = {name: line["ref"] for name, line in first.items()}
        self.assertEqual(refs, {"pause": "meshlane.test/pause:1",
                                "envoy": "meshlane.test/envoy:1.40.0",
                                "app": "meshlane.test/app:1",
                                "install": f"ghcr.io/meshlane/meshlane:"
                                           f"{images.install_image.cargo_version()}"})
        self.assertIn("/1.40.0/", first["envoy"]["check"])  # envoy --version as 1337
        for line in first.values():
            self.assertTrue(os.path.isabs(line["archive"]), line)
            self.assertTrue(line["digest"].startswith("sha256:"), line)
        second = self.build()
        for name, line in second.items():
            self.assertTrue(line["reused"], line)
            self.assertEqual(line["digest"], first[name]["digest"])

    def test_envoy_image_has_every_library_at_ldd_s_path(self):
        self.build("--only", "envoy")
        summary = images.oci_image.inspect(os.path.join(OUT, "envoy.oci.tar"))
        [image] = summary["images"]
        files = {f["path"]: f for f in image["layers"][0]["files"]}
        for path, _ in images.ldd_libraries(os.path.join(REPO, "target", "tools", "envoy")):
            self.assertEqual(files[path]["type"], "file", path)
        self.assertEqual(files["/etc/envoy"]["mode"], "0755")
        self.assertEqual(image["config"]["User"], "1337:1337")
        self.assertEqual(image["config"]["Entrypoint"], ["/usr/local/bin/envoy"])

    def test_install_tag(self):
        out = tempfile.mkdtemp(prefix="meshlane-images-test.")
        self.addCleanup(shutil.rmtree, out)
        run = subprocess.run([sys.executable, os.path.join(TOOLS, "images.py"), "--out", out,
                              "--only", "install", "--install-tag", "under-test",
                              "--install-name", "registry.example/meshlane"],
                             capture_output=True, text=True, timeout=1800)
        self.assertEqual(run.returncode, 0, run.stderr)
        [line] = json_lines(run.stdout)
        self.assertEqual(line["ref"], "registry.example/meshlane:under-test")


# --- a throwaway containerd -----------------------------------------------------------


class Containerd:
    """containerd with its own config, root, state, socket and opt dir under `base`;
    the CRI plugin off (this is an import test). Stopped by pid, shims included."""

    def __init__(self, base):
        self.base = base
        self.sock = os.path.join(base, "containerd.sock")
        self.config = os.path.join(base, "config.toml")
        with open(self.config, "w") as f:
            f.write(f"""version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[debug]
  address = "{base}/debug.sock"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"
""")
        self.log = open(os.path.join(base, "containerd.log"), "w")
        self.proc = subprocess.Popen(["containerd", "--config", self.config],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"containerd did not start: {self.read_log()}")
            time.sleep(0.1)

    def read_log(self):
        with open(os.path.join(self.base, "containerd.log")) as f:
            return f.read()[-4000:]

    def ctr(self, *args, timeout=120):
        return subprocess.run(["ctr", "--address", self.sock, "-n", "k8s.io", *args],
                              capture_output=True, text=True, timeout=timeout)

    def stop(self):
        # Shims outlive containerd: find ours by their socket address, kill by pid.
        shims = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read().split(b"\0")
            except OSError:
                continue
            if cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") \
                    and self.sock.encode() in cmdline:
                shims.append(int(pid))
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in shims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()
        # Snapshots of containers still mounted (none when every run was --rm).
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f if self.base in line]
        for mount in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", mount], check=False)


class ContainerdImport(unittest.TestCase):
    """containerd 1.6 (Debian 12's) imports every archive under the right name, and
    runs what the image config says."""

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise AssertionError("run as root: the test starts its own containerd")
        for tool in ("containerd", "ctr", "runc"):
            if shutil.which(tool) is None:
                raise AssertionError(f"{tool} is missing (scripts/deps.sh installs "
                                     "containerd and runc)")
        run = subprocess.run([sys.executable, os.path.join(TOOLS, "images.py"), "--out", OUT],
                             capture_output=True, text=True, timeout=1800)
        if run.returncode != 0:
            raise AssertionError(run.stderr)
        cls.images = {line["name"]: line for line in json_lines(run.stdout)}
        cls.tmp = tempfile.mkdtemp(prefix="meshlane-containerd-test.")
        try:
            cls.containerd = Containerd(cls.tmp)
        except BaseException:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.containerd.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def ctr(self, *args, code=0):
        run = self.containerd.ctr(*args)
        self.assertEqual(run.returncode, code,
                         f"ctr {' '.join(args)}: {run.stdout}{run.stderr}\n"
                         f"{self.containerd.read_log()}")
        return run.stdout

    def run_image(self, ref, name, *argv, code=0):
        """`ctr run --rm`; ctr exits with the container's status."""
        return self.ctr("run", "--rm", "--snapshotter", "native", ref, name, *argv, code=code)

    def test_import_names_and_runs(self):
        for image in self.images.values():
            self.ctr("images", "import", "--snapshotter", "native", image["archive"])
        listed = self.ctr("images", "ls", "-q").split()
        for image in self.images.values():
            self.assertIn(image["ref"], listed)
        # The digest containerd lists is the manifest's, as images.py reported.
        table = self.ctr("images", "ls")
        for image in self.images.values():
            self.assertIn(image["digest"], table)

        self.assertIn("/1.40.0/", self.run_image(self.images["envoy"]["ref"], "envoy-version",
                                                 "/usr/local/bin/envoy", "--version"))
        self.assertIn("meshlane ", self.run_image(self.images["install"]["ref"], "ml-version",
                                                  "/meshlane", "version"))
        self.assertIn("pause", self.run_image(self.images["pause"]["ref"], "pause-v",
                                              "/pause", "-v"))
        # node-app in its own netns (ctr's default): nothing listens, refused, exit 1.
        [line] = json_lines(self.run_image(self.images["app"]["ref"], "app-call",
                                           "/node-app", "call", "--to", "127.0.0.1:9",
                                           code=1))
        self.assertEqual(line["error"], "ECONNREFUSED")
        # Without a capture, Istio's check fails, as an init container would.
        [line] = json_lines(self.run_image(self.images["app"]["ref"], "app-validation",
                                           "/node-app", "istio-validation", code=1))
        self.assertFalse(line["ok"])

    def test_all_platforms_import(self):
        self.ctr("images", "import", "--all-platforms", self.images["pause"]["archive"])
        self.assertIn(self.images["pause"]["ref"], self.ctr("images", "ls", "-q").split())

    def test_image_config_arrives(self):
        """Entrypoint, Cmd, Env, User and WorkingDir as containerd's runtime sees them
        (its CRI plugin builds the process from the same config)."""
        spec = images.oci_image.ImageSpec(
            name="meshlane.test/config-check", tag="1",
            entries=[images.oci_image.File("/node-app", src=node_app(), mode=0o755),
                     images.oci_image.Dir("/work", mode=0o755)],
            entrypoint=["/node-app", "info"], cmd=["from-cmd"], env=["FOO=bar baz"],
            user="1234:5678", workdir="/work")
        archive = os.path.join(self.tmp, "config-check.oci.tar")
        result = images.oci_image.build_image(spec, archive)
        self.ctr("images", "import", "--snapshotter", "native", archive)
        [info] = json_lines(self.run_image(result.ref, "config-check"))
        self.assertEqual(info["argv"], ["from-cmd"])
        self.assertEqual((info["uid"], info["gid"]), (1234, 5678))
        self.assertEqual(info["cwd"], "/work")
        # The image's Env, and HOME, which the runtime adds (the user has no passwd entry).
        self.assertEqual(sorted(info["env"]), ["FOO=bar baz", "HOME=/"])
        # The envoy image's user is Istio's proxy UID.
        self.ctr("images", "import", "--snapshotter", "native",
                 self.images["envoy"]["archive"])
        self.ctr("containers", "create", "--snapshotter", "native",
                 self.images["envoy"]["ref"], "envoy-user")
        try:
            spec = json.loads(self.ctr("containers", "info", "envoy-user"))["Spec"]
        finally:
            self.ctr("containers", "rm", "envoy-user")
        self.assertEqual((spec["process"]["user"]["uid"], spec["process"]["user"]["gid"]),
                         (1337, 1337))
        self.assertEqual(spec["process"]["args"], ["/usr/local/bin/envoy"])


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "scenario":
        print(json.dumps(SCENARIOS[sys.argv[2]]()), flush=True)
    else:
        unittest.main()
