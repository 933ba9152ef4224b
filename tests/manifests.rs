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

use serde_json::{json, Value};

mod common;

use common::exec::{run_ok, run_ok_with_stdin};
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
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
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
    // Explicit timeouts, not the 1 s default, and longer than the agent's
    // deadline for a request to arrive (src/install/http.rs, 2 s).
    for probe in ["readinessProbe", "livenessProbe"] {
        let timeout = container[probe]["timeoutSeconds"].as_u64();
        assert!(timeout.is_some_and(|t| t > 2), "{probe}: {timeout:?}");
    }

    // The plugin's kubeconfig: a host path in the chain entry, written by the
    // agent through its mount of the same directory.
    let data = &find(&objects, "ConfigMap")["data"];
    let host = data["MESHLANE_KUBECONFIG"].as_str().unwrap();
    let written = data["MESHLANE_WRITE_KUBECONFIG"].as_str().unwrap();
    assert_eq!(written, format!("/host{host}"));
    assert!(host.starts_with("/etc/cni/net.d/"), "{host}");

    // The ConfigMap's settings are ones the agent knows.
    let known = meshlane::install::flags::install_env_vars();
    for key in config["data"].as_object().unwrap().keys() {
        assert!(known.contains(key), "the agent does not read {key}");
    }
}

/// Pods are only read; nodes are read and patched (the startup taint); one
/// ConfigMap, Cilium's, is read. Nothing else.
#[test]
fn rbac_reads_pods_and_patches_only_nodes() {
    let (_, objects) = rendered();
    let role = find(&objects, "ClusterRole");
    let rules = role["rules"].as_array().unwrap();
    assert_eq!(
        rules,
        &[
            json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}),
            json!({"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}),
            json!({"apiGroups": [""], "resources": ["configmaps"],
                   "resourceNames": ["cilium-config"], "verbs": ["get"]}),
        ]
    );
    let binding = find(&objects, "ClusterRoleBinding");
    assert_eq!(binding["subjects"][0]["name"], "meshlane");
    assert_eq!(binding["subjects"][0]["namespace"], "meshlane-system");
}

/// The admission policy that narrows `patch nodes` names what the rest of the
/// manifests use: the agent's service account as rendered (namespace and
/// name), the taint the ConfigMap tells the agent to remove, the node name the
/// token carries; and it is bound, denying.
#[test]
fn the_admission_policy_matches_the_agent() {
    let (_, objects) = rendered();
    let policy = find(&objects, "ValidatingAdmissionPolicy");
    let binding = find(&objects, "ValidatingAdmissionPolicyBinding");
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
    let spec = &policy["spec"];
    assert_eq!(spec["failurePolicy"], "Fail");
    assert_eq!(
        spec["matchConstraints"]["resourceRules"],
        json!([{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["nodes"]}]),
        "a PATCH reaches admission as an UPDATE"
    );

    let account = &find(&objects, "ClusterRoleBinding")["subjects"][0];
    let username = format!(
        "system:serviceaccount:{}:{}",
        account["namespace"].as_str().unwrap(),
        account["name"].as_str().unwrap()
    );
    let condition = spec["matchConditions"][0]["expression"].as_str().unwrap();
    assert!(condition.contains(&format!("'{username}'")), "{condition}");

    let taint = find(&objects, "ConfigMap")["data"]["MESHLANE_STARTUP_TAINT"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(taint, meshlane::install::flags::DEFAULT_STARTUP_TAINT);
    let variable = spec["variables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "startupTaint")
        .expect("a startupTaint variable");
    assert_eq!(variable["expression"], format!("'{taint}'"));

    let validations: Vec<&str> = spec["validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["expression"].as_str().unwrap())
        .collect();
    assert!(
        validations.iter().any(|e| e
            .contains("request.userInfo.extra['authentication.kubernetes.io/node-name']")
            && e.contains("object.metadata.name")),
        "own node only: {validations:#?}"
    );
    assert!(
        validations
            .iter()
            .any(|e| e.contains("variables.newTaints") && e.contains("variables.startupTaint")),
        "only the startup taint's removal: {validations:#?}"
    );
}

/// The PodMonitor component selects the agent's pods and scrapes the named
/// port the probes and the prometheus.io annotations use.
#[test]
fn the_podmonitor_component_scrapes_the_agent() {
    let dir = repo().join("manifests/components/podmonitor");
    let component = load_yaml(&dir.join("kustomization.yaml"));
    assert_eq!(component[0]["kind"], "Component");
    let monitor = load_yaml(&dir.join("podmonitor.yaml"));
    let monitor = find(&monitor, "PodMonitor");
    let (_, objects) = rendered();
    let daemonset = find(&objects, "DaemonSet");
    let template = &daemonset["spec"]["template"];
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&template["metadata"]["labels"][key], value, "label {key}");
    }
    assert_eq!(
        monitor["metadata"]["namespace"],
        daemonset["metadata"]["namespace"]
    );
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    let container = &template["spec"]["containers"][0];
    let port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == endpoint["port"])
        .unwrap_or_else(|| panic!("no container port named {}", endpoint["port"]));
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        annotations["prometheus.io/port"],
        port["containerPort"].to_string()
    );
    assert_eq!(endpoint["path"], annotations["prometheus.io/path"]);
}

/// The admission policy's CEL, evaluated as the API server would (Google's CEL
/// runtime, tests/tools/admission_policy.py) on the updates the agent and
/// others make to a Node. The agent's own update is the one it sends: its
/// strategic merge patch (`spec.taints` replaced, a list without merge key)
/// applied to the Node it read.
#[test]
fn the_admission_policy_admits_only_the_agent_removing_its_taint_from_its_node() {
    use meshlane::kube::node::NodeTaints;

    let (_, objects) = rendered();
    let policy = find(&objects, "ValidatingAdmissionPolicy").clone();
    let taint = meshlane::install::flags::DEFAULT_STARTUP_TAINT;
    let startup = json!({"key": taint, "effect": "NoSchedule"});
    let dedicated = json!({"key": "dedicated", "value": "mesh", "effect": "NoSchedule"});
    let node = json!({
        "kind": "Node", "apiVersion": "v1",
        "metadata": {"name": "node-a", "resourceVersion": "100", "labels": {"kubernetes.io/os": "linux"}},
        "spec": {"podCIDR": "10.1.0.0/24", "taints": [startup, dedicated]},
    });
    let agent = |node_name: Option<&str>| {
        let mut extra = json!({});
        if let Some(name) = node_name {
            extra["authentication.kubernetes.io/node-name"] = json!([name]);
        }
        json!({"userInfo": {
            "username": "system:serviceaccount:meshlane-system:meshlane",
            "extra": extra,
        }})
    };
    let kubelet = json!({"userInfo": {"username": "system:node:node-a", "extra": {}}});
    let with = |change: &dyn Fn(&mut Value)| {
        let mut object = node.clone();
        change(&mut object);
        object
    };
    // What the agent sends, applied.
    let patch = NodeTaints::from_json("node-a", &node)
        .unwrap()
        .removal_patch(taint);
    let removed = with(&|n| n["spec"]["taints"] = patch["spec"]["taints"].clone());
    assert_eq!(removed["spec"]["taints"], json!([dedicated]));

    let cases: Vec<(&str, Value, Value, bool)> = vec![
        (
            "the agent removes its taint",
            agent(Some("node-a")),
            removed.clone(),
            true,
        ),
        (
            "from another node",
            agent(Some("node-b")),
            removed.clone(),
            false,
        ),
        (
            "with a token without node name",
            agent(None),
            removed.clone(),
            false,
        ),
        (
            "removes another taint",
            agent(Some("node-a")),
            with(&|n| n["spec"]["taints"] = json!([startup])),
            false,
        ),
        (
            "adds a taint",
            agent(Some("node-a")),
            with(&|n| {
                n["spec"]["taints"] = json!([dedicated, {"key": "x", "effect": "NoExecute"}])
            }),
            false,
        ),
        (
            "changes a taint's value",
            agent(Some("node-a")),
            with(&|n| {
                n["spec"]["taints"] =
                    json!([{"key": "dedicated", "value": "other", "effect": "NoSchedule"}])
            }),
            false,
        ),
        (
            "changes a label",
            agent(Some("node-a")),
            with(&|n| {
                n["spec"]["taints"] = json!([dedicated]);
                n["metadata"]["labels"]["x"] = json!("y");
            }),
            false,
        ),
        (
            "cordons the node",
            agent(Some("node-a")),
            with(&|n| n["spec"]["unschedulable"] = json!(true)),
            false,
        ),
        (
            "kubelet changes taints (not the agent: the policy does not apply)",
            kubelet,
            with(&|n| n["spec"]["taints"] = json!([])),
            true,
        ),
    ];
    let requests: Vec<Value> = cases
        .iter()
        .map(|(_, request, object, _)| {
            json!({"request": request, "object": object, "oldObject": node})
        })
        .collect();
    let input = json!({"policy": policy, "requests": requests}).to_string();
    let script = repo().join("tests/tools/admission_policy.py");
    let mut python = Command::new(venv_tool("python"));
    python.arg(&script);
    let output = run_ok_with_stdin(python, &input);
    let answers: Vec<Value> = serde_json::from_str(&output).unwrap();
    assert_eq!(answers.len(), cases.len());
    for ((what, _, _, admitted), answer) in cases.iter().zip(&answers) {
        assert_eq!(answer["admitted"], *admitted, "{what}: {answer}");
        if !admitted {
            let message = answer["message"].as_str().unwrap_or_default();
            assert!(
                message.starts_with("the meshlane agent may only"),
                "{what}: {answer}"
            );
        }
    }
}
