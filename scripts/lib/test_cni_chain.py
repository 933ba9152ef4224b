"""Unit tests of the CNI chain runner's libcni rules and of the mountinfo parser
(standard library only).

  python3 -m unittest discover -s scripts/lib -p 'test_*.py'

scripts/test.sh runs them. No root: the chain's runs through real plugins are
checked by the demo and the benchmark's smoke run (tests/demo_smoke.rs,
tests/bench_smoke.rs).
"""

import os
import signal
import subprocess
import sys
import time
import unittest

# No __pycache__ in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cni_chain  # noqa: E402
import mountinfo  # noqa: E402

CONFLIST = {
    "cniVersion": "1.0.0",
    "name": "net",
    "plugins": [
        {"type": "bridge", "bridge": "br0"},
        {"type": "meshlane", "capabilities": {cni_chain.POD_ANNOTATIONS: True,
                                              "portMappings": False}},
    ],
}


class PluginConfig(unittest.TestCase):
    def test_a_pod_without_annotations_passes_null_as_containerd_does(self):
        for none in (None, {}):
            rt = cni_chain.runtime_conf("id", "/run/netns/p", annotations=none)
            conf = cni_chain.plugin_config(CONFLIST, CONFLIST["plugins"][1], None,
                                           rt["capability_args"])
            self.assertIn("runtimeConfig", conf)
            self.assertIsNone(conf["runtimeConfig"][cni_chain.POD_ANNOTATIONS])

    def test_only_declared_capabilities_reach_runtime_config(self):
        args = {cni_chain.POD_ANNOTATIONS: {"a": "b"}, "portMappings": [{"hostPort": 80}]}
        meshlane = cni_chain.plugin_config(CONFLIST, CONFLIST["plugins"][1], None, args)
        self.assertEqual(meshlane["runtimeConfig"], {cni_chain.POD_ANNOTATIONS: {"a": "b"}})
        bridge = cni_chain.plugin_config(CONFLIST, CONFLIST["plugins"][0], None, args)
        self.assertNotIn("runtimeConfig", bridge)

    def test_the_list_name_version_and_prev_result_are_injected(self):
        prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}
        conf = cni_chain.plugin_config(CONFLIST, CONFLIST["plugins"][0], prev, {})
        self.assertEqual((conf["name"], conf["cniVersion"]), ("net", "1.0.0"))
        self.assertEqual(conf["prevResult"], prev)
        self.assertNotIn("prevResult",
                         cni_chain.plugin_config(CONFLIST, CONFLIST["plugins"][0], None, {}))
        self.assertNotIn("name", CONFLIST["plugins"][0], "the conflist is left as it was")

    def test_the_environment_is_cni_and_path_only(self):
        rt = cni_chain.runtime_conf("id", "/run/netns/p", "eth0", "K8S_POD_NAME=a")
        self.assertEqual(cni_chain.plugin_env("DEL", rt, "/opt/cni/bin"), {
            "PATH": cni_chain.PLUGIN_PATH, "CNI_COMMAND": "DEL", "CNI_CONTAINERID": "id",
            "CNI_NETNS": "/run/netns/p", "CNI_IFNAME": "eth0", "CNI_ARGS": "K8S_POD_NAME=a",
            "CNI_PATH": "/opt/cni/bin",
        })

    def test_del_gets_the_cached_result_from_0_4_0_on(self):
        for version, expected in (("0.3.1", False), ("0.4.0", True), ("1.0.0", True)):
            chain = cni_chain.Chain(dict(CONFLIST, cniVersion=version), "/bin", "/ns")
            self.assertEqual(chain.version_at_least(0, 4), expected, version)


class TimedRun(unittest.TestCase):
    """finish_timed, which times every plugin run of the benchmark."""

    @staticmethod
    def start(script):
        started = time.perf_counter()
        proc = subprocess.Popen(["sh", "-c", script], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return proc, started

    def test_stdin_in_output_and_exit_status_out(self):
        proc, started = self.start("cat; echo oops >&2; exit 3")
        done, seconds = cni_chain.finish_timed(proc, b"prev result", started, 30)
        self.assertEqual((done.returncode, done.stdout, done.stderr),
                         (3, b"prev result", b"oops\n"))
        self.assertGreater(seconds, 0)

    def test_a_process_past_its_timeout_is_killed_and_reported(self):
        proc, started = self.start("exec sleep 30")
        with self.assertRaises(subprocess.TimeoutExpired):
            cni_chain.finish_timed(proc, b"", started, 0.2)
        self.assertEqual(proc.returncode, -signal.SIGKILL)


class Mountinfo(unittest.TestCase):
    HYBRID = (
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:9 - cgroup cgroup rw\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
        "50 23 0:40 / /tmp/a\\040b rw - bpf bpf rw\n"
    )

    def test_every_mount_with_its_type_and_unescaped_point(self):
        self.assertEqual(mountinfo.parse(self.HYBRID), [
            ("/sys/fs/cgroup", "tmpfs"),
            ("/sys/fs/cgroup/systemd", "cgroup"),
            ("/sys/fs/cgroup/unified", "cgroup2"),
            ("/tmp/a b", "bpf"),
        ])

    def test_lines_without_a_separator_are_skipped(self):
        self.assertEqual(mountinfo.parse("garbage\n\n"), [])


if __name__ == "__main__":
    unittest.main()
