//! The benchmark's harness (`scripts/bench.sh --smoke`, issue 5) run for real with
//! the binary of this test build: one short repetition of every figure for all five
//! cases. Checks that the harness works and produced a complete, well-formed result
//! for every case (case 5, the Envoy floor of issue 16, included), that the cases
//! with sidecars really went through both, that every figure is reported against
//! case 2 and case 5, and that nothing of its node is left behind. A correctness check of the harness: no
//! timing is ever asserted.
//!
//! Needs root; fails loudly (never skips) when it cannot run.

mod common;

use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use common::script::{run_script, ScriptRun};
use common::{mountinfo, prereq};

/// A smoke run takes under a minute here; this only guards against a hang.
const RUN_TIMEOUT: Duration = Duration::from_secs(420);
/// After SIGTERM the harness tears its node down; give it the time to.
const CLEANUP_GRACE: Duration = Duration::from_secs(60);
/// The harness's fixed names (bench/harness/node.py).
const NETNS_PREFIX: &str = "meshlane-bench-";
const CGROUP_NAME: &str = "meshlane-bench";
const TMP_PREFIX: &str = "meshlane-bench.";
/// One benchmark at a time on the machine, whichever checkout it runs from
/// (bench/harness/session.py's LOCK_PATH).
const LOCK_PATH: &str = "/run/lock/meshlane-bench.lock";
const CASES: [&str; 5] = ["1", "2", "3", "4", "5"];

fn run_bench(out: &Path) -> ScriptRun {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench.sh");
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .args(["--smoke", "--no-deps", "--no-build", "--meshlane"])
        .arg(env!("CARGO_BIN_EXE_meshlane"))
        .arg("--out")
        .arg(out)
        .arg("--tools-dir")
        .arg(out.join("tools"))
        .env("MESHLANE_ENVOY", prereq::envoy_binary());
    run_script(
        "scripts/bench.sh --smoke",
        command,
        RUN_TIMEOUT,
        CLEANUP_GRACE,
    )
}

/// Whatever of the harness's node is still on the machine.
fn leftovers() -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(entries) = fs::read_dir("/run/netns") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(NETNS_PREFIX) {
                found.push(format!("netns {name}"));
            }
        }
    }
    if let Some(root) = mountinfo::cgroup2_mount() {
        if root.join(CGROUP_NAME).exists() {
            found.push(format!("cgroup {}", root.join(CGROUP_NAME).display()));
        }
    }
    if let Ok(entries) = fs::read_dir("/tmp") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(TMP_PREFIX) {
                found.push(format!("dir /tmp/{name}"));
            }
        }
    }
    found
}

/// A positive, finite number at `key` of `obj`.
fn positive(obj: &Value, key: &str, what: &str) -> f64 {
    let v = obj[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: {key} is not a number: {obj}"));
    assert!(v.is_finite() && v > 0.0, "{what}: {key} = {v}: {obj}");
    v
}

fn check_samples(data: &Value) {
    let samples = data["samples"].as_array().expect("samples");
    let sizes: Vec<u64> = data["config"]["sizes"]
        .as_array()
        .expect("config.sizes")
        .iter()
        .map(|s| s.as_u64().expect("a size"))
        .collect();
    assert!(!sizes.is_empty(), "no message sizes in config");
    let reps = data["config"]["reps"].as_u64().expect("config.reps");
    let mut figures: Vec<(String, Value)> = Vec::new();
    for test in ["tcp_lat", "tcp_bw"] {
        for size in &sizes {
            figures.push((test.to_string(), Value::from(*size)));
        }
    }
    for size in data["config"]["sockperf_sizes"]
        .as_array()
        .expect("config.sockperf_sizes")
    {
        figures.push(("lat_p50".to_string(), size.clone()));
    }
    figures.push(("conn_rate".to_string(), Value::Null));
    for case in CASES {
        for (figure, size) in &figures {
            let what = format!("case {case}, {figure} {size}");
            let matching: Vec<&Value> = samples
                .iter()
                .filter(|s| {
                    s["case"].as_u64() == case.parse().ok()
                        && s["figure"] == figure.as_str()
                        && s["size"] == *size
                })
                .collect();
            assert_eq!(
                matching.len() as u64,
                reps,
                "{what}: expected {reps} sample(s)"
            );
            for s in matching {
                positive(s, "value", &what);
                positive(s, "ops", &what);
                assert!(s["unit"].is_string(), "{what}: no unit: {s}");
                let cpu = &s["cpu"];
                assert!(
                    cpu["cgroup_cpu_usec"].as_u64().is_some(),
                    "{what}: no cgroup CPU usage: {s}"
                );
                positive(cpu, "wall_s", &what);
            }
            let entry = &data["summary"][figure.as_str()][match size {
                Value::Null => "-".to_string(),
                other => other.to_string(),
            }][case];
            positive(entry, "median", &format!("summary of {what}"));
            positive(entry, "ratio_vs_2", &format!("summary of {what}"));
            positive(entry, "ratio_vs_5", &format!("summary of {what}"));
        }
    }
    for hooks in ["host-on", "host-off"] {
        let n = samples
            .iter()
            .filter(|s| s["case"] == hooks && s["figure"] == "host_conn_rate")
            .inspect(|s| {
                positive(s, "value", hooks);
            })
            .count();
        assert!(n > 0, "no host connection-rate samples for {hooks}");
    }
    positive(&data["summary"], "host_hooks_ratio", "summary");
}

fn check_path_checks(data: &Value) {
    for case in CASES {
        let check = &data["path_checks"][case];
        assert_eq!(check["ok"], true, "case {case} path check: {check}");
        let probes = positive(
            check,
            "probe_connections",
            &format!("case {case} path check"),
        );
        if case != "1" {
            // Every probe connection was counted by both sidecars: the capture
            // listeners in cases 2-4, the per-destination listeners in case 5.
            for key in ["client_outbound_cx", "server_inbound_cx"] {
                assert!(
                    check[key].as_f64().unwrap_or(0.0) >= probes,
                    "case {case}: {key} below the probe's connections: {check}"
                );
            }
        }
    }
    for (case, inst) in [("3", "off"), ("4", "on")] {
        let pods = data["meshlane_pods"][inst].as_str().unwrap_or("");
        for role in ["client", "server"] {
            assert!(
                pods.contains(&format!("bench/c{case}-{role}")),
                "meshlane instance {inst} does not list c{case}-{role}: {pods}"
            );
        }
    }
}

fn check_bpf_stats(data: &Value) {
    for (label, inst) in [
        ("case 3", "off"),
        ("case 4", "on"),
        ("host process (hooks on)", "on"),
    ] {
        let progs = data["bpf_stats"][label][inst]
            .as_object()
            .unwrap_or_else(|| panic!("no BPF statistics for {label}, instance {inst}"));
        let connect = progs
            .iter()
            .find(|(name, _)| name.contains("connect4"))
            .unwrap_or_else(|| panic!("{label}: no connect4 program among {progs:?}"))
            .1;
        positive(connect, "run_cnt", &format!("{label} connect4"));
        positive(connect, "ns_per_call", &format!("{label} connect4"));
    }
}

fn check_pod_setup(data: &Value) {
    let setup = &data["pod_setup"];
    let pods = setup["pods"].as_u64().expect("pod_setup.pods");
    assert!(pods > 0, "no pods in the pod setup figure");
    for key in ["meshlane_add_ms", "meshlane_del_ms", "iptables_restore_ms"] {
        let values = setup[key]
            .as_array()
            .unwrap_or_else(|| panic!("pod_setup.{key} missing"));
        assert_eq!(values.len() as u64, pods, "pod_setup.{key}: {values:?}");
        assert!(
            values.iter().all(|v| v.as_f64().is_some_and(|v| v > 0.0)),
            "pod_setup.{key}: {values:?}"
        );
    }
    for key in [
        "meshlane_add_ms",
        "meshlane_add_full_node_ms",
        "iptables_restore_ms",
    ] {
        positive(&data["summary"]["pod_setup"][key], "p50", key);
        positive(&data["summary"]["pod_setup"][key], "p99", key);
    }
}

fn check_targets(data: &Value) {
    let targets = data["targets"].as_array().expect("targets");
    let names: Vec<&str> = targets
        .iter()
        .map(|t| t["target"].as_str().expect("target name"))
        .collect();
    for wanted in [
        "latency 1 KiB, ",
        "latency 1 KiB p50",
        "mesh overhead",
        "throughput",
        "connection setup rate",
        "connection setup rate, defaults (case 3)",
        "meshlane ADD p50",
        "connect4 hook",
        "host process connection rate",
        "floor: tcp_lat",
        "floor: lat_p50",
        "floor: tcp_bw",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(wanted)),
            "no target {wanted:?} in {names:?}"
        );
    }
    for t in targets {
        // A verdict (or null when a figure cannot be judged), whatever it is: this
        // test never judges performance.
        assert!(
            t["met"].is_boolean() || t["met"].is_null(),
            "target without a verdict: {t}"
        );
        assert!(t["wanted"].is_string(), "target without a goal: {t}");
    }
}

/// While another benchmark holds the machine-wide lock, a run must fail at once and
/// leave the other's node alone: its start-up sweep would otherwise remove it. The
/// lock is taken here as bench/run.py takes it; only this test's own run is seen.
fn refused_while_locked(out: &Path) {
    let lock = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(LOCK_PATH)
        .unwrap_or_else(|err| panic!("open {LOCK_PATH}: {err}"));
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(
        rc,
        0,
        "flock {LOCK_PATH}: {}",
        std::io::Error::last_os_error()
    );
    let before = leftovers();
    let run = run_bench(out);
    assert!(
        !run.succeeded() && run.stderr.contains("another benchmark"),
        "a run while {LOCK_PATH} is held must be refused\n{}",
        run.describe()
    );
    assert_eq!(
        leftovers(),
        before,
        "the refused run touched the node's names"
    );
    drop(lock);
}

/// bench/across_runs.py over the smoke result given twice: with one repetition a
/// run, every run's ratio is case N's rate over case 2's in that repetition, so the
/// median it prints must be exactly that quotient.
fn check_across_runs(json: &Path, data: &Value) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/across_runs.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([json, json])
        .output()
        .expect("run bench/across_runs.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench/across_runs.py failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rate = |case: u64| {
        data["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .find(|s| s["figure"] == "conn_rate" && s["case"] == case)
            .and_then(|s| s["value"].as_f64())
            .unwrap_or_else(|| panic!("no conn_rate sample for case {case}"))
    };
    for case in [3, 4, 5] {
        let row = format!("| {case} | {:.3} |", rate(case) / rate(2));
        assert!(text.contains(&row), "no {row:?} in\n{text}");
    }
}

#[test]
fn smoke_run_measures_every_case_and_cleans_up() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "tests/bench_smoke.rs needs root (network namespaces, cgroups, bpffs): run sudo scripts/test.sh"
    );
    let out =
        std::env::temp_dir().join(format!("meshlane-bench-smoke-test.{}", std::process::id()));
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).expect("create the output dir");

    refused_while_locked(&out);
    let run = run_bench(&out);
    assert!(run.succeeded(), "{}", run.describe());
    assert!(
        run.stdout
            .contains("removed the netns, the cgroups, the bpffs and the temp dir"),
        "the harness did not report a clean teardown\n{}",
        run.describe()
    );
    let left = leftovers();
    assert!(left.is_empty(), "left behind: {left:?}\n{}", run.describe());

    let json = fs::read_to_string(out.join("smoke.json"))
        .unwrap_or_else(|err| panic!("no smoke.json: {err}\n{}", run.describe()));
    let data: Value = serde_json::from_str(&json).expect("smoke.json is JSON");
    assert_eq!(data["schema"], "meshlane-bench/1");
    assert_eq!(data["mode"], "smoke");
    assert!(data["machine"]["kernel"].is_string() && data["machine"]["cpus"].is_u64());
    for case in CASES {
        assert!(
            data["cases"][case]["name"].is_string(),
            "case {case} not described"
        );
    }
    check_path_checks(&data);
    check_samples(&data);
    check_bpf_stats(&data);
    check_pod_setup(&data);
    check_targets(&data);

    let csv = fs::read_to_string(out.join("smoke.csv")).expect("smoke.csv");
    let rows = csv.lines().count() - 1;
    assert_eq!(
        rows,
        data["samples"].as_array().expect("samples").len(),
        "smoke.csv rows"
    );
    let md = fs::read_to_string(out.join("smoke.md")).expect("smoke.md");
    for section in [
        "## Latency",
        "## Throughput",
        "## Pod setup cost",
        "## Targets",
    ] {
        assert!(md.contains(section), "smoke.md has no {section:?}");
    }
    // Every figure's table has case 5's column and the ratios against it.
    for column in ["| 5 Envoy floor |", "| 4 / 5 |"] {
        assert!(
            md.matches(column).count() >= 4,
            "smoke.md's figure tables lack {column:?}"
        );
    }
    check_across_runs(&out.join("smoke.json"), &data);
    let png = fs::read(out.join("smoke.png")).expect("smoke.png");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "smoke.png is not a PNG"
    );

    let _ = fs::remove_dir_all(&out);
}
