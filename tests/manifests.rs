//! The Kubernetes manifests, validated offline: `kubectl kustomize manifests/`
//! renders what `kubectl apply -k` would send, and `kubernetes-validate --strict`
//! checks every object against the Kubernetes OpenAPI schemas (unknown fields
//! are errors), for the oldest and the newest Kubernetes we document. Then the
//! rules of issue 6 that a schema cannot express are checked on the objects.
//!
//! The tools come from `scripts/deps.sh` (a venv under target/tools); without
//! them this test fails, loudly — a skipped validation looks like a pass.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

mod common;

use common::exec::run_ok;
use common::prereq::venv_tool;

/// Oldest and newest Kubernetes the support matrix lists.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.28.0", "1.37.0"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file of its own for each use (the tests run in parallel), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, contents: &str) -> Scratch {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "meshlane-manifests-{}-{n}-{name}",
            std::process::id()
        ));
        std::fs::write(&path, contents).unwrap();
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn validate(file: &Path) {
    for version in KUBERNETES_VERSIONS {
        run_ok(
            Command::new(venv_tool("kubernetes-validate"))
                .args(["--strict", "--quiet", "-k", version])
                .arg(file),
        );
    }
}

/// YAML documents as JSON values (through the venv's PyYAML).
fn load_yaml(file: &Path) -> Vec<Value> {
    let script = "import json, sys, yaml\n\
                  docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
                  print(json.dumps(docs))";
    let json = run_ok(
        Command::new(venv_tool("python"))
            .args(["-c", script])
            .arg(file),
    );
    serde_json::from_str::<Vec<Value>>(&json).unwrap()
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in the rendered manifests"))
}

fn rendered() -> (Scratch, Vec<Value>) {
    let yaml = run_ok(
        Command::new(venv_tool("kubectl"))
            .arg("kustomize")
            .arg(repo().join("manifests")),
    );
    let file = Scratch::new("rendered.yaml", &yaml);
    let objects = load_yaml(&file.0);
    (file, objects)
}

#[test]
fn the_kustomization_renders_and_validates() {
    let (file, objects) = rendered();
    validate(&file.0);
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "DaemonSet",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
}

#[test]
fn the_uninstall_job_validates() {
    let job = std::fs::read_to_string(repo().join("manifests/uninstall/job.yaml")).unwrap();
    assert!(job.contains("NODE_NAME"), "the Job is a per-node template");
    let file = Scratch::new("uninstall-job.yaml", &job.replace("NODE_NAME", "node-1"));
    validate(&file.0);
    let objects = load_yaml(&file.0);
    let spec = &find(&objects, "Job")["spec"]["template"]["spec"];
    assert_eq!(spec["nodeName"], "node-1");
    assert_eq!(spec["containers"][0]["args"][0], "uninstall");
}

#[test]
fn the_daemonset_follows_the_node_agent_rules() {
    let (_, objects) = rendered();
    let daemonset = find(&objects, "DaemonSet");
    let spec = &daemonset["spec"]["template"]["spec"];
    assert_eq!(daemonset["spec"]["updateStrategy"]["type"], "RollingUpdate");
    assert_eq!(
        daemonset["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
        1
    );
    assert_eq!(spec["priorityClassName"], "system-node-critical");
    assert_eq!(spec["hostNetwork"], true);
    // Enrolling running pods reads the host's /proc (docs/enroll.md).
    assert_eq!(spec["hostPID"], true);
    assert!(
        spec["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["operator"] == "Exists"
                && t.get("key").is_none()
                && t.get("effect").is_none()),
        "must tolerate every taint"
    );
    assert_eq!(spec["serviceAccountName"], "meshlane");

    let container = &spec["containers"][0];
    assert_eq!(
        container["image"], "ghcr.io/meshlane/meshlane:0.1.0",
        "kustomize images applied"
    );
    assert_eq!(container["args"][0], "install");
    let mounts = container["volumeMounts"].as_array().unwrap();
    let mount = |path: &str| {
        mounts
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("no mount at {path}"))
    };
    assert_eq!(mount("/sys/fs/bpf")["mountPropagation"], "Bidirectional");
    mount("/host/opt/cni/bin");
    mount("/host/etc/cni/net.d");
    mount("/host/sys/fs/cgroup");
    mount("/var/log/meshlane");
    let volume_path = |name: &str| {
        spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))["hostPath"]["path"]
            .clone()
    };
    assert_eq!(volume_path("cni-bin-dir"), "/opt/cni/bin");
    assert_eq!(volume_path("cni-net-dir"), "/etc/cni/net.d");
    assert_eq!(volume_path("bpffs"), "/sys/fs/bpf");
    assert_eq!(volume_path("cgroup"), "/sys/fs/cgroup");

    // The probes hit the agent's listen port.
    let config = find(&objects, "ConfigMap");
    let listen = config["data"]["MESHLANE_LISTEN"].as_str().unwrap();
    let port: u64 = listen.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], port);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], port);

    // The plugin's kubeconfig: a host path in the chain entry, written by the
    // agent through its mount of the same directory.
    let data = &find(&objects, "ConfigMap")["data"];
    let host = data["MESHLANE_KUBECONFIG"].as_str().unwrap();
    let written = data["MESHLANE_WRITE_KUBECONFIG"].as_str().unwrap();
    assert_eq!(written, format!("/host{host}"));
    assert!(host.starts_with("/etc/cni/net.d/"), "{host}");

    // The ConfigMap's settings are ones the agent knows.
    let known: Vec<&str> = meshlane::install::settings::INSTALL_SETTINGS
        .iter()
        .map(|s| s.env)
        .collect();
    for key in config["data"].as_object().unwrap().keys() {
        assert!(
            known.contains(&key.as_str()),
            "the agent does not read {key}"
        );
    }
}

#[test]
fn rbac_is_read_only_on_pods() {
    let (_, objects) = rendered();
    let role = find(&objects, "ClusterRole");
    let rules = role["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0]["apiGroups"], serde_json::json!([""]));
    assert_eq!(rules[0]["resources"], serde_json::json!(["pods"]));
    assert_eq!(
        rules[0]["verbs"],
        serde_json::json!(["get", "list", "watch"])
    );
    let binding = find(&objects, "ClusterRoleBinding");
    assert_eq!(binding["subjects"][0]["name"], "meshlane");
    assert_eq!(binding["subjects"][0]["namespace"], "meshlane-system");
}
