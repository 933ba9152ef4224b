"""Unit tests of the OCI image writer and the install image's spec (standard library only).

  python3 -m unittest discover -s scripts/lib -p 'test_*.py'

scripts/test.sh runs them. No root, no network, no container runtime: what
containerd makes of the archives is checked by tests/tools/test_images.py.
"""

import contextlib
import gzip
import hashlib
import io
import json
import os
import struct
import sys
import tarfile
import tempfile
import unittest
from unittest import mock

# No __pycache__ in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import install_image  # noqa: E402
import oci_image  # noqa: E402
from oci_image import Dir, File, ImageError, ImageSpec, Symlink  # noqa: E402


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Workdir(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="oci-image-test.")
        self.tmp = self._tmp.name
        self.addCleanup(self._tmp.cleanup)
        env = mock.patch.dict(os.environ)
        env.start()
        self.addCleanup(env.stop)
        os.environ.pop("SOURCE_DATE_EPOCH", None)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def write(self, name, data, mode=0o644):
        with open(self.path(name), "wb") as f:
            f.write(data)
        os.chmod(self.path(name), mode)
        return self.path(name)

    def spec(self, **overrides):
        binary = self.write("app", b"\x7fELF pretend binary\n" * 100, 0o700)
        fields = dict(
            name="meshlane.test/app", tag="1",
            entries=[File("/usr/local/bin/app", src=binary, mode=0o755),
                     File("/etc/app.conf", data=b"key = value\n"),
                     Dir("/tmp", 0o1777),
                     Symlink("/bin/app", "/usr/local/bin/app")],
            entrypoint=["/usr/local/bin/app"], cmd=["serve", "--port", "80"],
            env=["A=1", "B=two words"], user="1337:1337", workdir="/srv",
            labels={"org.example": "yes"})
        fields.update(overrides)
        return ImageSpec(**fields)


def blob_name(digest):
    """Where the OCI layout keeps the blob of `digest` ("sha256:<hex>")."""
    return "blobs/sha256/" + digest[7:]


class ArchiveLayout(Workdir):
    """What is inside an archive: the OCI layout, the config, the layer."""

    def build(self, compression="gzip", **overrides):
        out = self.path(f"image-{compression}.tar")
        result = oci_image.build_image(self.spec(**overrides), out, compression=compression)
        return result, tarfile.open(out)

    def read(self, tar, name):
        return tar.extractfile(name).read()

    def blob(self, tar, digest):
        """The blob of `digest` ("sha256:...") in the archive's OCI layout."""
        return self.read(tar, blob_name(digest))

    def blob_json(self, tar, digest):
        return json.loads(self.blob(tar, digest))

    def only_layer(self, tar, result):
        """The descriptor of the image's one layer, from its manifest."""
        [layer] = self.blob_json(tar, result.digest)["layers"]
        return layer

    def test_layout_files_and_annotations(self):
        result, tar = self.build()
        with tar:
            names = tar.getnames()
            self.assertEqual(json.loads(self.read(tar, "oci-layout")),
                             {"imageLayoutVersion": "1.0.0"})
            index = json.loads(self.read(tar, "index.json"))
            self.assertEqual(index["schemaVersion"], 2)
            [desc] = index["manifests"]
            self.assertEqual(desc["mediaType"], oci_image.MEDIA_MANIFEST)
            self.assertEqual(desc["annotations"], {
                "io.containerd.image.name": "meshlane.test/app:1",
                "org.opencontainers.image.ref.name": "1"})
            self.assertEqual(desc["platform"], {"architecture": "amd64", "os": "linux"})
            self.assertEqual(desc["digest"], result.digest)
            manifest_bytes = self.blob(tar, desc["digest"])
            self.assertEqual(sha(manifest_bytes), desc["digest"])
            self.assertEqual(len(manifest_bytes), desc["size"])
            manifest = json.loads(manifest_bytes)
            for blob in [manifest["config"]] + manifest["layers"]:
                data = self.blob(tar, blob["digest"])
                self.assertEqual(sha(data), blob["digest"])
                self.assertEqual(len(data), blob["size"])
            # Every member of the outer tar is root's, at the fixed time.
            for member in tar.getmembers():
                self.assertEqual((member.uid, member.gid, member.mtime), (0, 0, 0), member.name)
            self.assertIn("manifest.json", names)
            self.assertEqual(result.ref, "meshlane.test/app:1")

    def test_config_carries_what_the_runtime_runs(self):
        result, tar = self.build()
        with tar:
            config = self.blob_json(tar, result.config_digest)
        self.assertEqual(config["architecture"], "amd64")
        self.assertEqual(config["os"], "linux")
        self.assertEqual(config["config"], {
            "Entrypoint": ["/usr/local/bin/app"], "Cmd": ["serve", "--port", "80"],
            "Env": ["A=1", "B=two words"], "User": "1337:1337", "WorkingDir": "/srv",
            "Labels": {"org.example": "yes"}})
        self.assertEqual(config["rootfs"], {"type": "layers", "diff_ids": [result.diff_id]})
        self.assertEqual(config["created"], "1970-01-01T00:00:00Z")

    def test_default_env_is_a_path_and_empty_env_is_none(self):
        for env, expected in ((None, oci_image.DEFAULT_ENV), ([], [])):
            result, tar = self.build(env=env)
            with tar:
                config = self.blob_json(tar, result.config_digest)
            self.assertEqual(config["config"]["Env"], expected)

    def test_gzip_layer_is_deterministic_and_diff_id_is_of_the_tar(self):
        result, tar = self.build("gzip")
        with tar:
            layer = self.only_layer(tar, result)
            self.assertEqual(layer["mediaType"], oci_image.MEDIA_LAYER_GZIP)
            blob = self.blob(tar, layer["digest"])
        # gzip header: magic, deflate, no flags (no file name), mtime 0.
        self.assertEqual(blob[:8], b"\x1f\x8b\x08\x00\x00\x00\x00\x00")
        self.assertEqual(sha(gzip.decompress(blob)), result.diff_id)

    def test_uncompressed_layer(self):
        result, tar = self.build("none")
        with tar:
            layer = self.only_layer(tar, result)
            self.assertEqual(layer["mediaType"], oci_image.MEDIA_LAYER)
            self.assertEqual(layer["digest"], result.diff_id)

    def test_layer_entries_sorted_with_parents_modes_and_owners(self):
        result, tar = self.build("none")
        with tar:
            layer = tarfile.open(fileobj=io.BytesIO(
                self.blob(tar, result.layer_digest)))
            members = layer.getmembers()
            names = [m.name for m in members]
            self.assertEqual(names, ["bin", "bin/app", "etc", "etc/app.conf", "tmp", "usr",
                                     "usr/local", "usr/local/bin", "usr/local/bin/app"])
            by_name = {m.name: m for m in members}
            for member in members:
                self.assertEqual((member.uid, member.gid, member.uname, member.gname,
                                  member.mtime), (0, 0, "", "", 0), member.name)
            self.assertTrue(by_name["usr"].isdir())
            self.assertEqual(by_name["usr"].mode, 0o755)
            self.assertEqual(by_name["tmp"].mode, 0o1777)
            # The spec's mode, not the source file's (0700).
            self.assertEqual(by_name["usr/local/bin/app"].mode, 0o755)
            self.assertEqual(by_name["etc/app.conf"].mode, 0o644)
            self.assertTrue(by_name["bin/app"].issym())
            self.assertEqual(by_name["bin/app"].linkname, "/usr/local/bin/app")
            self.assertEqual(layer.extractfile("etc/app.conf").read(), b"key = value\n")
            with open(self.path("app"), "rb") as f:
                self.assertEqual(layer.extractfile("usr/local/bin/app").read(), f.read())

    def test_docker_manifest_points_into_blobs(self):
        result, tar = self.build()
        with tar:
            [entry] = json.loads(self.read(tar, "manifest.json"))
            self.assertEqual(entry["RepoTags"], ["meshlane.test/app:1"])
            self.assertEqual(entry["Config"], blob_name(result.config_digest))
            self.assertEqual(entry["Layers"], [blob_name(result.layer_digest)])
            for name in [entry["Config"]] + entry["Layers"]:
                self.assertIn(name, tar.getnames())

    def test_source_symlinks_are_followed(self):
        real = self.write("real", b"content\n")
        os.symlink(real, self.path("link"))
        result, tar = self.build("none", entries=[File("/x", src=self.path("link"))])
        with tar:
            layer = tarfile.open(fileobj=io.BytesIO(
                self.blob(tar, result.layer_digest)))
            member = layer.getmember("x")
            self.assertTrue(member.isfile())
            self.assertEqual(layer.extractfile(member).read(), b"content\n")


class Reproducible(Workdir):
    def test_same_inputs_same_bytes(self):
        spec = self.spec()
        a = oci_image.build_image(spec, self.path("a.tar"))
        os.utime(self.path("app"), (12345, 12345))  # host mtimes do not matter
        b = oci_image.build_image(self.spec(), self.path("b.tar"))
        self.assertEqual(a.digest, b.digest)
        with open(self.path("a.tar"), "rb") as fa, open(self.path("b.tar"), "rb") as fb:
            self.assertEqual(fa.read(), fb.read())

    def test_entry_order_in_the_spec_does_not_matter(self):
        spec = self.spec()
        a = oci_image.build_image(spec, self.path("a.tar"))
        spec.entries.reverse()
        b = oci_image.build_image(spec, self.path("b.tar"))
        self.assertEqual(a.digest, b.digest)

    def test_content_mode_and_config_change_the_digest(self):
        base = oci_image.build_image(self.spec(), self.path("base.tar")).digest
        changed = [
            self.spec(entries=[File("/etc/app.conf", data=b"other\n")]),
            self.spec(entries=[File("/etc/app.conf", data=b"key = value\n", mode=0o600)]),
            self.spec(cmd=["other"]),
        ]
        digests = {oci_image.build_image(s, self.path(f"c{i}.tar")).digest
                   for i, s in enumerate(changed)}
        self.assertEqual(len(digests), len(changed))
        self.assertNotIn(base, digests)
        # The name is the index's, not the manifest's: a retag is the same image.
        retagged = oci_image.build_image(self.spec(tag="2"), self.path("tag2.tar"))
        self.assertEqual(retagged.digest, base)
        self.assertEqual(retagged.ref, "meshlane.test/app:2")

    def test_source_date_epoch(self):
        os.environ["SOURCE_DATE_EPOCH"] = "1700000000"
        result = oci_image.build_image(self.spec(), self.path("a.tar"), compression="none")
        with tarfile.open(self.path("a.tar")) as tar:
            config = json.loads(tar.extractfile(
                blob_name(result.config_digest)).read())
            layer = tarfile.open(fileobj=tar.extractfile(
                blob_name(result.layer_digest)))
            self.assertEqual({m.mtime for m in layer.getmembers()}, {1700000000})
        self.assertEqual(config["created"], "2023-11-14T22:13:20Z")


class Reuse(Workdir):
    def test_unchanged_inputs_keep_the_archive(self):
        out = self.path("a.tar")
        first = oci_image.build_image(self.spec(), out, reuse=True)
        self.assertFalse(first.reused)
        mtime = os.stat(out).st_mtime_ns
        second = oci_image.build_image(self.spec(), out, reuse=True)
        self.assertTrue(second.reused)
        self.assertEqual(second.digest, first.digest)
        self.assertEqual(os.stat(out).st_mtime_ns, mtime)

    def test_changed_source_content_rebuilds(self):
        out = self.path("a.tar")
        first = oci_image.build_image(self.spec(), out, reuse=True)
        spec = self.spec()
        self.write("app", b"a new build\n")  # same path, new content
        second = oci_image.build_image(spec, out, reuse=True)
        self.assertFalse(second.reused)
        self.assertNotEqual(second.digest, first.digest)

    def test_a_damaged_archive_is_rebuilt(self):
        out = self.path("a.tar")
        oci_image.build_image(self.spec(), out, reuse=True)
        with open(out, "ab") as f:
            f.write(b"junk")
        self.assertFalse(oci_image.build_image(self.spec(), out, reuse=True).reused)

    def test_without_reuse_it_always_writes(self):
        out = self.path("a.tar")
        oci_image.build_image(self.spec(), out)
        self.assertFalse(oci_image.build_image(self.spec(), out).reused)


class Names(unittest.TestCase):
    def test_normalize_like_containerd(self):
        cases = {
            "meshlane": "docker.io/library/meshlane",
            "me/meshlane": "docker.io/me/meshlane",
            "docker.io/library/x": "docker.io/library/x",
            "ghcr.io/meshlane/meshlane": "ghcr.io/meshlane/meshlane",
            "localhost/x": "localhost/x",
            "registry.example:5000/team/x": "registry.example:5000/team/x",
            "meshlane.test/app": "meshlane.test/app",
        }
        for name, expected in cases.items():
            self.assertEqual(oci_image.normalize_name(name), expected, name)

    def test_bad_names_and_tags(self):
        for name in ("Meshlane", "x/Y", "x:1", "x@sha256:00", "", "a//b"):
            with self.assertRaises(ImageError, msg=name):
                oci_image.normalize_name(name)
        for tag in ("", "-x", ".x", "a" * 129, "a:b", "a/b"):
            with self.assertRaises(ImageError, msg=tag):
                oci_image.check_tag(tag)
        oci_image.check_tag("0.1.0-rc.1_x")


class BadSpecs(Workdir):
    def fails(self, message, **overrides):
        with self.assertRaises(ImageError) as ctx:
            oci_image.build_image(self.spec(**overrides), self.path("x.tar"))
        self.assertIn(message, str(ctx.exception))
        self.assertFalse(os.path.exists(self.path("x.tar")))

    def test_paths(self):
        self.fails("must be absolute", entries=[Dir("relative")])
        self.fails("must not contain ..", entries=[Dir("/a/../../b")])
        self.fails("the root is implicit", entries=[Dir("/")])

    def test_conflicts(self):
        self.fails("given twice", entries=[Dir("/a"), File("/a", data=b"")])
        self.fails("not a directory", entries=[File("/a", data=b""), File("/a/b", data=b"")])

    def test_files(self):
        self.fails("is not a file", entries=[File("/a", src=self.path("missing"))])
        self.fails("exactly one of", entries=[File("/a")])

    def test_config(self):
        self.fails("not KEY=VALUE", env=["NOEQUALS"])
        self.fails("list of strings", cmd=["ok", 1])

    def test_same_entry_twice_is_fine(self):
        spec = self.spec(entries=[Dir("/a"), Dir("/a")])
        oci_image.build_image(spec, self.path("ok.tar"))


class ReadBack(Workdir):
    def test_inspect_reports_refs_config_and_files(self):
        oci_image.build_image(self.spec(), self.path("a.tar"))
        summary = oci_image.inspect(self.path("a.tar"))
        [image] = summary["images"]
        self.assertEqual(image["name"], "meshlane.test/app:1")
        self.assertEqual(image["ref_name"], "1")
        self.assertEqual(image["config"]["Entrypoint"], ["/usr/local/bin/app"])
        files = {f["path"]: f for f in image["layers"][0]["files"]}
        self.assertEqual(files["/tmp"], {"path": "/tmp", "type": "dir", "mode": "1777",
                                         "uid": 0, "gid": 0})
        self.assertEqual(files["/bin/app"]["target"], "/usr/local/bin/app")
        self.assertEqual(summary["docker_manifest"][0]["RepoTags"], ["meshlane.test/app:1"])

    def test_a_corrupted_blob_is_found(self):
        result = oci_image.build_image(self.spec(), self.path("a.tar"), compression="none")
        with open(self.path("a.tar"), "r+b") as f:
            data = f.read()
            # Flip one byte of the binary inside the layer blob.
            offset = data.index(b"pretend binary")
            f.seek(offset)
            f.write(b"P")
        with self.assertRaises(ImageError) as ctx:
            oci_image.inspect(self.path("a.tar"))
        self.assertIn(result.layer_digest, str(ctx.exception))

    def test_extract_keeps_modes(self):
        oci_image.build_image(self.spec(), self.path("a.tar"))
        root = oci_image.extract(self.path("a.tar"), self.path("rootfs"))
        st = os.lstat(os.path.join(root, "tmp"))
        self.assertEqual(st.st_mode & 0o7777, 0o1777)
        self.assertEqual(os.lstat(os.path.join(root, "usr/local/bin/app")).st_mode & 0o7777,
                         0o755)
        self.assertEqual(os.readlink(os.path.join(root, "bin/app")), "/usr/local/bin/app")
        with open(os.path.join(root, "etc/app.conf"), "rb") as f:
            self.assertEqual(f.read(), b"key = value\n")

    def test_extract_refuses_to_write_through_a_symlink(self):
        # A layer whose /lib64 links to a host directory, then writes lib64/evil: a
        # hostile archive (the writer never makes one, so build it by hand).
        outside = self.path("outside")
        os.mkdir(outside)
        layer = io.BytesIO()
        with tarfile.open(fileobj=layer, mode="w") as t:
            link = tarfile.TarInfo("lib64")
            link.type, link.linkname = tarfile.SYMTYPE, outside
            t.addfile(link)
            evil = tarfile.TarInfo("lib64/evil")
            evil.size = 1
            t.addfile(evil, io.BytesIO(b"x"))
        bad = self.hostile_archive(layer.getvalue())
        with self.assertRaises(ImageError):
            oci_image.extract(bad, self.path("rootfs"))
        self.assertFalse(os.path.exists(os.path.join(outside, "evil")))

    def hostile_archive(self, layer):
        """An OCI archive around a given layer tar (bypassing the writer's checks)."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": oci_image.MEDIA_MANIFEST,
            "config": {"mediaType": oci_image.MEDIA_CONFIG, "digest": sha(config),
                       "size": len(config)},
            "layers": [{"mediaType": oci_image.MEDIA_LAYER, "digest": sha(layer),
                        "size": len(layer)}]}).encode()
        index = json.dumps({"schemaVersion": 2, "manifests": [
            {"mediaType": oci_image.MEDIA_MANIFEST, "digest": sha(manifest),
             "size": len(manifest)}]}).encode()
        path = self.path("hostile.tar")
        with tarfile.open(path, "w") as tar:
            for name, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                               ("index.json", index),
                               (blob_name(sha(config)), config),
                               (blob_name(sha(manifest)), manifest),
                               (blob_name(sha(layer)), layer)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path


class CommandLine(Workdir):
    def run_main(self, *argv):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            code = oci_image.main(list(argv))
        return code, out.getvalue()

    def test_spec_file_with_relative_sources_and_cli_additions(self):
        self.write("bin", b"binary\n")
        with open(self.path("spec.json"), "w") as f:
            json.dump({"name": "meshlane.test/x", "tag": "1",
                       "entrypoint": ["/bin/x"], "env": ["A=1"],
                       "files": [{"src": "bin", "path": "/bin/x", "mode": "0755"},
                                 {"content": "hello\n", "path": "/etc/motd"}],
                       "dirs": [{"path": "/tmp", "mode": "1777"}],
                       "symlinks": [{"path": "/usr/bin/x", "target": "../../bin/x"}]}, f)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir("/")  # the spec's own dir resolves "bin", not the cwd
        code, out = self.run_main(
            "build", "--spec", self.path("spec.json"), "--out", self.path("x.tar"),
            "--tag", "2", "--env", "B=2", "--cmd", '["--flag"]', "--user", "65532",
            "--label", "k=v", "--dir", "/data:0700", "--compression", "none")
        self.assertEqual(code, 0)
        result = json.loads(out)
        self.assertEqual(result["ref"], "meshlane.test/x:2")
        summary = oci_image.inspect(self.path("x.tar"))
        [image] = summary["images"]
        self.assertEqual(image["config"], {"Entrypoint": ["/bin/x"], "Cmd": ["--flag"],
                                           "Env": ["A=1", "B=2"], "User": "65532",
                                           "Labels": {"k": "v"}})
        files = {f["path"]: f for f in image["layers"][0]["files"]}
        self.assertEqual(files["/bin/x"]["mode"], "0755")
        self.assertEqual(files["/data"]["mode"], "0700")
        self.assertEqual(files["/usr/bin/x"]["target"], "../../bin/x")
        self.assertEqual(files["/etc/motd"]["size"], 6)

    def test_file_flags_and_plain_word_entrypoint(self):
        self.write("bin", b"binary\n")
        code, out = self.run_main(
            "build", "--name", "x", "--tag", "latest", "--out", self.path("x.tar"),
            "--file", f"{self.path('bin')}:/x:0755", "--entrypoint", "/x")
        self.assertEqual(code, 0)
        self.assertEqual(json.loads(out)["ref"], "docker.io/library/x:latest")
        [image] = oci_image.inspect(self.path("x.tar"))["images"]
        self.assertEqual(image["config"]["Entrypoint"], ["/x"])
        self.assertEqual(image["config"]["Env"], oci_image.DEFAULT_ENV)

    def test_errors_exit_non_zero(self):
        code, _ = self.run_main("build", "--out", self.path("x.tar"), "--tag", "1")
        self.assertEqual(code, 1)
        code, _ = self.run_main("build", "--out", self.path("x.tar"), "--name", "x",
                                "--tag", "1", "--file", "only-one-part")
        self.assertEqual(code, 1)
        code, _ = self.run_main("inspect", self.path("missing.tar"))
        self.assertEqual(code, 1)

    def test_extract_command(self):
        oci_image.build_image(self.spec(), self.path("a.tar"))
        code, _ = self.run_main("extract", self.path("a.tar"), self.path("root"))
        self.assertEqual(code, 0)
        self.assertTrue(os.path.isfile(self.path("root", "etc", "app.conf")))


def elf(interp):
    """A minimal x86-64 ELF header with one program header: PT_INTERP or PT_LOAD."""
    header = bytearray(64)
    header[:4] = b"\x7fELF"
    header[4], header[5], header[6] = 2, 1, 1
    struct.pack_into("<HHI", header, 16, 2, 62, 1)
    struct.pack_into("<Q", header, 32, 64)           # e_phoff
    struct.pack_into("<HHH", header, 52, 64, 56, 1)  # e_ehsize, e_phentsize, e_phnum
    phdr = bytearray(56)
    struct.pack_into("<I", phdr, 0, 3 if interp else 1)
    return bytes(header + phdr)


class InstallImage(Workdir):
    def test_static_check(self):
        install_image.check_static(self.write("static", elf(False), 0o755))
        with self.assertRaises(ImageError) as ctx:
            install_image.check_static(self.write("dynamic", elf(True), 0o755))
        self.assertIn("dynamically linked", str(ctx.exception))
        with self.assertRaises(ImageError):
            install_image.check_static(self.write("script", b"#!/bin/sh\n", 0o755))

    def test_the_dockerfiles_image(self):
        binary = self.write("meshlane", elf(False), 0o755)
        result = install_image.build(binary, self.path("install.tar"))
        version = install_image.cargo_version()
        self.assertEqual(result.ref, f"ghcr.io/meshlane/meshlane:{version}")
        [image] = oci_image.inspect(self.path("install.tar"))["images"]
        config = image["config"]
        self.assertEqual(config["Entrypoint"], ["/meshlane"])
        self.assertEqual(config["Cmd"], ["install"])
        self.assertEqual(config["User"], "0")
        self.assertEqual(config["Labels"]["org.opencontainers.image.version"], version)
        self.assertEqual(image["layers"][0]["mediaType"], oci_image.MEDIA_LAYER_GZIP)
        files = {f["path"]: f for f in image["layers"][0]["files"]}
        self.assertEqual(set(files), {"/meshlane", "/etc", "/etc/passwd", "/etc/group",
                                      "/etc/nsswitch.conf", "/tmp"})
        self.assertEqual(files["/meshlane"]["mode"], "0755")
        self.assertEqual(files["/tmp"]["mode"], "1777")

    def test_the_rootfs_is_the_layer_unpacked(self):
        binary = self.write("meshlane", elf(False), 0o755)
        root = install_image.write_rootfs(binary, self.path("rootfs"))
        with open(os.path.join(root, "etc", "nsswitch.conf")) as f:
            self.assertEqual(f.read(), "hosts: files dns\n")
        self.assertEqual(os.stat(os.path.join(root, "meshlane")).st_mode & 0o777, 0o755)
        self.assertEqual(os.stat(os.path.join(root, "tmp")).st_mode & 0o7777, 0o1777)

    def test_name_and_tag(self):
        binary = self.write("meshlane", elf(False), 0o755)
        result = install_image.build(binary, self.path("i.tar"), "registry.example/ml", "dev")
        self.assertEqual(result.ref, "registry.example/ml:dev")
        self.assertTrue(install_image.default_out("dev").endswith(
            os.path.join("target", "images", "meshlane-dev.oci.tar")))

    def test_a_dynamic_binary_is_refused(self):
        binary = self.write("meshlane", elf(True), 0o755)
        with self.assertRaises(ImageError):
            install_image.build(binary, self.path("i.tar"))
        self.assertFalse(os.path.exists(self.path("i.tar")))


if __name__ == "__main__":
    unittest.main()
