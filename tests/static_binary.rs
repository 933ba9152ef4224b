//! The binary the install image ships: built by install/build-static.sh, it
//! must be statically linked (the image is distroless static: no libc, no
//! libelf) and must work as the CLI, as the CNI plugin and for the BPF probes.
//!
//! It must also reach an API server by hostname (EKS and GKE kubeconfigs name
//! one) from inside the install image, which has no glibc NSS modules: the
//! image's filesystem is unpacked and the binary run chrooted in it, in a netns
//! of the test's own, once with the name in /etc/hosts and once with a DNS
//! server on loopback.
//!
//! One release build (a few minutes the first time; later runs reuse
//! `<target>/static`). Needs root for the BPF probes, the chroot and the netns;
//! fails loudly otherwise.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{json, Value};

use common::api_server::{status_json, ApiServer, Authority, Reply, ServerOptions};
use common::dns_server::DnsServer;
use common::exec::run_ok;
use common::names::{InstanceId, TMP_ROOT};
use common::netns::{join_before_exec, NamedNetns};
use common::tmpdir::TempDir;

fn build() -> PathBuf {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("install/build-static.sh");
    let mut command = Command::new(&script);
    // The cargo that runs this test builds the binary too.
    if let Some(cargo) = std::env::var_os("CARGO") {
        command.env("CARGO", cargo);
    }
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|err| panic!("running {}: {err}", script.display()));
    assert!(
        output.status.success(),
        "install/build-static.sh failed: {}",
        output.status
    );
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    assert!(
        path.is_file(),
        "build-static.sh printed {path:?}, not a file"
    );
    path
}

fn run(binary: &PathBuf, args: &[&str]) -> (i32, String) {
    let output = Command::new(binary).args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}

#[test]
fn the_image_binary_is_static_and_works() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this privileged test probes BPF support: run the tests as root"
    );
    let binary = build();

    let file = Command::new("file")
        .arg(&binary)
        .output()
        .expect("the `file` tool");
    let file = String::from_utf8_lossy(&file.stdout);
    // Static, and at a fixed load address unless MESHLANE_PIE=1 asked for a PIE:
    // a PIE would relocate itself at every CNI ADD (install/README.md).
    let expected = if std::env::var("MESHLANE_PIE").as_deref() == Ok("1") {
        ["LSB pie executable", "static-pie linked"]
    } else {
        ["LSB executable", "statically linked"]
    };
    assert!(
        expected.iter().all(|form| file.contains(form)),
        "not the static form build-static.sh ships ({expected:?}): {file}"
    );
    let ldd = Command::new("ldd")
        .arg(&binary)
        .output()
        .expect("the `ldd` tool");
    let ldd =
        String::from_utf8_lossy(&ldd.stdout).into_owned() + &String::from_utf8_lossy(&ldd.stderr);
    assert!(
        ldd.contains("not a dynamic executable") || ldd.contains("statically linked"),
        "ldd lists dependencies: {ldd}"
    );

    let (code, version) = run(&binary, &["version"]);
    assert_eq!(code, 0, "{version}");
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");

    // As the CNI plugin (what kubelet's runtime runs from the host's bin dir).
    let mut plugin = Command::new(&binary)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    plugin
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"cniVersion":"1.0.0"}"#)
        .unwrap();
    let answer = plugin.wait_with_output().unwrap();
    let answer: serde_json::Value =
        serde_json::from_slice(&answer.stdout).expect("VERSION answers JSON");
    assert!(answer["supportedVersions"]
        .as_array()
        .is_some_and(|versions| versions.iter().any(|v| v == "1.0.0")));

    // The statically linked libbpf probes the kernel like the dynamic build.
    // (bpffs may be unmounted on a test machine: that line may FAIL, the probes
    // must not.)
    let (code, report) = run(&binary, &["precheck"]);
    assert!(
        code == 0 || code == 1,
        "precheck crashed ({code}): {report}"
    );
    for line in [
        "kernel",
        "program type sk_lookup",
        "helper sk_assign in sk_lookup",
    ] {
        let found = report
            .lines()
            .find(|l| l.contains(line))
            .unwrap_or_else(|| panic!("no {line:?} check in\n{report}"));
        assert!(found.starts_with("OK"), "{found}");
    }
    assert!(report.contains("verdict:"), "{report}");
}

/// The API server's name in the kubeconfig: not resolvable anywhere but
/// through what the test sets up (`.test` is reserved, RFC 2606).
const API_HOST: &str = "api.meshlane.test";
const TOKEN: &str = "static-binary-token";

/// The install image's filesystem, unpacked (scripts/lib/install_image.py
/// writes the same layer the OCI archive carries).
fn image_rootfs(binary: &Path, dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/lib/install_image.py");
    run_ok(
        Command::new("python3")
            .arg(&script)
            .arg("--binary")
            .arg(binary)
            .arg("--rootfs")
            .arg(&root),
    );
    // What the test relies on: the image has no shared library at all.
    let libs: Vec<_> = ["lib", "lib64", "usr/lib"]
        .iter()
        .filter(|d| root.join(d).exists())
        .collect();
    assert!(libs.is_empty(), "the image has library dirs: {libs:?}");
    root
}

/// `meshlane precheck --kubeconfig /kubeconfig -o json`, chrooted in `root`
/// and inside `netns`, as the DaemonSet's pod would run it; the API check.
fn api_check_in_image(root: &Path, netns: &Path) -> Value {
    let netns = File::open(netns).unwrap();
    let mut command = Command::new("/meshlane");
    command
        .args(["precheck", "--kubeconfig", "/kubeconfig", "-o", "json"])
        .env_clear()
        .stdin(Stdio::null());
    join_before_exec(&mut command, &netns);
    let root = root.to_path_buf();
    // SAFETY: between fork and exec: chroot and chdir are single syscalls on
    // a path allocated before the fork.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::chroot(&root)?;
            nix::unistd::chdir("/")?;
            Ok(())
        });
    }
    let output = command.output().expect("running /meshlane in the image");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|err| {
        panic!(
            "precheck -o json printed no JSON ({err}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Kubernetes API")
        .unwrap_or_else(|| panic!("no API check in {report:#}"))
        .clone()
}

#[test]
fn the_image_binary_reaches_the_api_server_by_hostname() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this privileged test chroots into the image and makes a netns: run the tests as root"
    );
    common::sweep::sweep_leftovers_once();
    let binary = build();
    let id = InstanceId::next();
    let dir = TempDir::create(Path::new(TMP_ROOT).join(id.dir_name())).unwrap();
    let root = image_rootfs(&binary, dir.path());
    let netns = NamedNetns::create(&id.netns_name("static")).unwrap();

    let ca = Authority::new("static-binary-ca");
    let server = ApiServer::start(
        &ca,
        ServerOptions {
            names: &[API_HOST],
            netns: Some(netns.path().to_path_buf()),
            ..ServerOptions::default()
        },
        Box::new(|seen| {
            if seen.authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
                return Reply::Json(401, status_json(401, "Unauthorized", "Unauthorized"));
            }
            match seen.path.as_str() {
                "/version" => Reply::Json(200, json!({"gitVersion": "v1.31.0"}).to_string()),
                _ => Reply::Json(404, status_json(404, "NotFound", "not found")),
            }
        }),
    );
    let ca_data = base64::engine::general_purpose::STANDARD.encode(ca.pem());
    std::fs::write(
        root.join("kubeconfig"),
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n\
             clusters:\n- name: k\n  cluster:\n    server: https://{API_HOST}:{}\n\
             \x20   certificate-authority-data: {ca_data}\n\
             users:\n- name: u\n  user:\n    token: {TOKEN}\n",
            server.addr.port()
        ),
    )
    .unwrap();
    let hosts = root.join("etc/hosts");
    let resolv = root.join("etc/resolv.conf");
    let answers = |check: &Value| {
        check["verdict"] == "OK"
            && check["detail"]
                .as_str()
                .is_some_and(|d| d.contains(API_HOST) && d.contains("v1.31.0"))
    };

    // Neither source knows the name: the check says so (the test can fail).
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )
    .unwrap();
    let unknown = api_check_in_image(&root, netns.path());
    assert!(!answers(&unknown), "resolved with no source: {unknown:#}");
    assert_eq!(server.connections(), 0, "{unknown:#}");

    // /etc/hosts (a pod's hostAliases land there).
    std::fs::write(
        &hosts,
        format!("127.0.0.1 localhost\n127.0.0.1 {API_HOST}\n"),
    )
    .unwrap();
    let by_hosts = api_check_in_image(&root, netns.path());
    assert!(answers(&by_hosts), "through /etc/hosts: {by_hosts:#}");

    // A DNS server (the cluster's, as a pod's resolv.conf names it).
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let dns = DnsServer::start(netns.path(), API_HOST);
    let by_dns = api_check_in_image(&root, netns.path());
    assert!(answers(&by_dns), "through DNS: {by_dns:#}");
    assert!(
        dns.a_queries().iter().any(|name| name == API_HOST),
        "{:?}",
        dns.a_queries()
    );
    drop(dns);
    drop(server);
}
