//! meshlane as users install it: `kubectl kustomize manifests/` renders the
//! objects `kubectl apply -k` would create, and the DaemonSet's pod template
//! (and the uninstall Job's) becomes the Pod kubelet would run on this node.
//! No second copy of the manifests exists in the tests: a change to them is
//! what runs here.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::super::exec::{run_ok, run_ok_with_stdin};
use super::super::prereq::venv_tool;
use super::super::timing::poll;
use super::{CriNode, RunningPod, POD_START};

const MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests");

/// YAML documents as JSON (the venv's PyYAML reads stdin).
fn yaml_documents(yaml: &str) -> Vec<Value> {
    let script = "import json, sys, yaml\n\
                  print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d is not None]))";
    let mut python = Command::new(venv_tool("python"));
    python.args(["-c", script]);
    let json = run_ok_with_stdin(python, yaml);
    serde_json::from_str(&json).unwrap()
}

/// Every object `kubectl apply -k manifests/` would send.
pub fn rendered_manifests() -> Vec<Value> {
    yaml_documents(&run_ok(
        Command::new(venv_tool("kubectl"))
            .arg("kustomize")
            .arg(MANIFESTS),
    ))
}

/// The uninstall Job for `node_name`, as the README's loop renders it.
pub fn uninstall_job(node_name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{MANIFESTS}/uninstall/job.yaml")).unwrap();
    yaml_documents(&text.replace("NODE_NAME", node_name)).remove(0)
}

/// A Pod for a workload's pod template, as its controller creates it.
pub fn pod_from_template(template: &Value, name: &str, namespace: &str, node: &str) -> Value {
    let mut metadata = template["metadata"].clone();
    metadata["name"] = json!(name);
    metadata["namespace"] = json!(namespace);
    metadata["uid"] = json!(uid());
    let mut spec = template["spec"].clone();
    spec["nodeName"] = json!(node);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
}

/// A random pod UID in Kubernetes' format.
pub fn uid() -> String {
    super::super::pod::uuid_like()
}

/// The port the agent serves /readyz on, from the DaemonSet's probe.
pub fn probe_port(pod: &Value) -> u16 {
    pod["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"]
        .as_u64()
        .expect("the agent's readiness probe has a numeric port") as u16
}

impl CriNode {
    /// Loads the manifests' ConfigMaps (kubelet reads them for `envFrom`) and
    /// returns the DaemonSet's pod for this node, with the install image
    /// `image` (default: the one the manifests name).
    pub fn daemonset_pod(&self, image: Option<&str>) -> Value {
        let objects = rendered_manifests();
        let maps: HashMap<String, Map<String, Value>> = objects
            .iter()
            .filter(|object| object["kind"] == "ConfigMap")
            .map(|object| {
                (
                    object["metadata"]["name"].as_str().unwrap().to_owned(),
                    object["data"].as_object().cloned().unwrap_or_default(),
                )
            })
            .collect();
        let _ = self.config_maps.set(maps);
        let daemonset = objects
            .iter()
            .find(|object| object["kind"] == "DaemonSet")
            .expect("the manifests have a DaemonSet");
        let namespace = daemonset["metadata"]["namespace"].as_str().unwrap();
        let suffix = &uid()[..5];
        let mut pod = pod_from_template(
            &daemonset["spec"]["template"],
            &format!("meshlane-node-{suffix}"),
            namespace,
            &self.name,
        );
        if let Some(image) = image {
            pod["spec"]["containers"][0]["image"] = json!(image);
        }
        pod
    }

    /// Runs the DaemonSet's pod and waits until its readiness probe passes.
    pub fn run_daemonset(&self) -> RunningPod {
        let pod = self.daemonset_pod(None);
        let agent = self.run_pod(&pod);
        self.wait_until_ready(&agent);
        agent
    }

    /// Polls the agent's readiness probe as kubelet does (hostNetwork: on the
    /// node's loopback).
    pub fn wait_until_ready(&self, agent: &RunningPod) {
        let port = probe_port(&agent.object);
        let ready = poll(POD_START, Duration::from_millis(200), || {
            match self.http_get(port, "/readyz") {
                Ok((200, _)) => Ok(()),
                answer => Err(answer),
            }
        });
        if let Err(answer) = ready {
            panic!(
                "the agent is not ready after {POD_START:?} ({answer:?}); its log:\n{}",
                self.container_log(agent, "install")
            );
        }
    }
}
