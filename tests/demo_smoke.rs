//! The README's first command, `scripts/demo.sh`, run for real with the binary of
//! this test build: it must show capture working end to end (the page arrives
//! through Envoy, with the original destination Envoy learned from SO_ORIGINAL_DST;
//! Istio's start-up check passes; DEL removes the pod's records) and leave nothing
//! of its node behind.
//!
//! Needs root; fails loudly (never skips) when it cannot run.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::script::{run_script, ScriptRun};
use common::{mountinfo, prereq};

/// A demo run takes a few seconds; this only guards against a hang.
const DEMO_TIMEOUT: Duration = Duration::from_secs(180);
/// After SIGTERM the demo tears its node down; give it the time to.
const CLEANUP_GRACE: Duration = Duration::from_secs(60);
/// The demo's fixed names (scripts/demo.sh): netns, cgroup, temp dirs.
const NETNS_PREFIX: &str = "meshlane-demo-";
const CGROUP_NAME: &str = "meshlane-demo";
const TMP_PREFIX: &str = "meshlane-demo.";
const WEB_PORT: u16 = 8080;

/// Runs the demo with this build's meshlane, no apt and no cargo. On a hang it gets
/// SIGTERM, which makes it clean up (its exit trap) before it exits.
fn run_demo() -> ScriptRun {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo.sh");
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .args(["--no-deps", "--no-build", "--meshlane"])
        .arg(env!("CARGO_BIN_EXE_meshlane"))
        // The Envoy the other integration tests use, found the same way.
        .env("MESHLANE_ENVOY", prereq::envoy_binary());
    run_script("scripts/demo.sh", command, DEMO_TIMEOUT, CLEANUP_GRACE)
}

/// The web pod's address from the demo's list of pod IPs ("  web     10.x.y.z   …").
fn web_ip(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("web"))
            .then(|| words.next())
            .flatten()
            .filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
            .map(str::to_string)
    })
}

/// Everything of the demo still on the machine, named.
fn demo_leftovers() -> Vec<String> {
    let mut left = Vec::new();
    let names = |dir: &str| -> Vec<String> {
        fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    for name in names("/run/netns") {
        if name.starts_with(NETNS_PREFIX) {
            left.push(format!("netns {name}"));
        }
    }
    let cgroup2 = mountinfo::cgroup2_mount().expect("checked by require_root");
    if cgroup2.join(CGROUP_NAME).exists() {
        left.push(format!("cgroup {}", cgroup2.join(CGROUP_NAME).display()));
    }
    for mount in mountinfo::mounts_under(&format!("/tmp/{TMP_PREFIX}")) {
        left.push(format!("mount {}", mount.display()));
    }
    for name in names("/tmp") {
        if name.starts_with(TMP_PREFIX) {
            left.push(format!("temp dir /tmp/{name}"));
        }
    }
    left
}

#[test]
fn the_demo_shows_capture_through_envoy_and_leaves_nothing_behind() {
    // Root, the CNI plugins, Envoy, python3, a cgroup2 mount: panics with what is
    // missing, so a machine that cannot run the demo fails this test.
    prereq::require_root();

    let run = run_demo();
    let out = &run.stdout;
    assert!(run.succeeded(), "the demo failed\n{}", run.describe());

    assert!(
        out.contains("hello from web"),
        "web's page did not arrive\n{}",
        run.describe()
    );
    let web = web_ip(out)
        .unwrap_or_else(|| panic!("no IP of the web pod in the output\n{}", run.describe()));
    let destination = format!("{web}:{WEB_PORT}");
    let access_log_line = out.lines().find(|line| line.contains(" virtualOutbound "));
    let access_log_line = access_log_line
        .unwrap_or_else(|| panic!("no Envoy access log line in the output\n{}", run.describe()));
    assert!(
        access_log_line.contains(&format!("original_dst={destination} "))
            && access_log_line.contains(&format!("upstream={destination} "))
            && access_log_line.contains("app=127.0.0.1:"),
        "the access log line does not show app -> Envoy -> {destination}: {access_log_line}\n{}",
        run.describe()
    );
    assert!(
        out.contains("OK istio-validation passed in app"),
        "Istio's start-up check did not pass\n{}",
        run.describe()
    );
    assert!(
        out.contains("OK arrived directly"),
        "legacy's request did not go straight to web\n{}",
        run.describe()
    );
    for pod in ["app", "web", "legacy"] {
        assert!(
            out.contains(&format!("CNI DEL {pod}: meshlane DEL ok, bridge DEL ok")),
            "no CNI DEL of {pod}\n{}",
            run.describe()
        );
    }
    let after_del = out
        .split_once("CNI DEL legacy")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    assert!(
        after_del.contains("no captured pods"),
        "meshlane still lists captured pods after DEL\n{}",
        run.describe()
    );

    let left = demo_leftovers();
    assert!(
        left.is_empty(),
        "the demo left these behind: {left:?}\n{}",
        run.describe()
    );
}
