//! The binary the install image ships: built by install/build-static.sh, it
//! must be statically linked (the image is distroless static: no libc, no
//! libelf) and must work as the CLI, as the CNI plugin and for the BPF probes.
//!
//! One release build (a few minutes the first time; later runs reuse
//! `<target>/static`). Needs root for the BPF probes; fails loudly otherwise.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

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
    assert!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "not static: {file}"
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
