//! The workloads of the node's tests, as Pod objects: a meshed pod as Istio's
//! injector leaves it when a CNI plugin does the capture (the
//! `istio-validation` init container, an Envoy sidecar as 1337, the app as
//! 1000, the `sidecar.istio.io/status` annotation), and a plain pod. The same
//! objects are what the API stand-in lists, with their status filled in.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::super::envoy_config::{self, AccessLogEntry, EnvoyOptions};
use super::super::pod::INJECTED_STATUS;
use super::super::timing::poll;
use super::daemonset::uid;
use super::images::{APP_IMAGE, ENVOY_IMAGE};
use super::{CriNode, RunningPod};

pub const APP_UID: i64 = 1000;
pub const PROXY_UID: i64 = 1337;
/// Where the sidecar's bootstrap, logs and access log are, in the container.
const PROXY_DIR: &str = "/etc/istio/proxy";

/// A pod with the app only: `node-app serve` on `port`, answering `name`.
pub fn plain(node: &CriNode, name: &str, port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "shop", "uid": uid(),
            "labels": {"app": name}, "annotations": {}
        },
        "spec": {
            "nodeName": node.name,
            "containers": [app_container(name, port)]
        }
    })
}

/// An injected pod (sidecar template, CNI mode): `istio-validation` first, then
/// Envoy with Istio's capture listeners and the app.
pub fn meshed(node: &CriNode, name: &str, port: u16) -> Value {
    let dir = proxy_dir(node, name);
    fs::create_dir_all(&dir).unwrap();
    let options = EnvoyOptions::new().with_inbound().ipv4_only();
    let node_id = format!("sidecar~0.0.0.0~{name}.shop~shop.svc.cluster.local");
    let bootstrap = envoy_config::bootstrap(
        &options,
        &node_id,
        &PathBuf::from(PROXY_DIR).join("access.log"),
    );
    fs::write(
        dir.join("bootstrap.json"),
        serde_json::to_string_pretty(&bootstrap).unwrap(),
    )
    .unwrap();
    let proxy = nix::unistd::Uid::from_raw(PROXY_UID as u32);
    let proxy_group = nix::unistd::Gid::from_raw(PROXY_UID as u32);
    nix::unistd::chown(&dir, Some(proxy), Some(proxy_group)).unwrap();
    let as_proxy = json!({"runAsUser": PROXY_UID, "runAsGroup": PROXY_UID});
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "shop", "uid": uid(),
            "labels": {"app": name, "security.istio.io/tlsMode": "istio"},
            "annotations": {"sidecar.istio.io/status": INJECTED_STATUS}
        },
        "spec": {
            "nodeName": node.name,
            "initContainers": [{
                "name": "istio-validation",
                "image": APP_IMAGE,
                "args": ["istio-validation"],
                "securityContext": as_proxy
            }],
            "containers": [
                {
                    "name": "istio-proxy",
                    "image": ENVOY_IMAGE,
                    "args": [
                        "-c", format!("{PROXY_DIR}/bootstrap.json"),
                        "--disable-hot-restart", "--concurrency", "1",
                        "--log-path", format!("{PROXY_DIR}/envoy.log"),
                        "--file-flush-interval-msec", "100"
                    ],
                    "securityContext": as_proxy,
                    "volumeMounts": [{"name": "istio-proxy", "mountPath": PROXY_DIR}]
                },
                app_container(name, port)
            ],
            "volumes": [{"name": "istio-proxy", "hostPath": {"path": dir, "type": "Directory"}}]
        }
    })
}

fn app_container(name: &str, port: u16) -> Value {
    json!({
        "name": "app",
        "image": APP_IMAGE,
        "args": ["serve", "--port", port.to_string(), "--name", name],
        "securityContext": {"runAsUser": APP_UID, "runAsGroup": APP_UID}
    })
}

/// The sidecar's directory on the host (bootstrap, logs).
fn proxy_dir(node: &CriNode, pod: &str) -> PathBuf {
    node.fence.dir.join("proxies").join(pod)
}

impl CriNode {
    /// The Pod as the API server reports it once running: the object it was
    /// started from plus the status kubelet writes (IP, container IDs).
    pub fn api_object(&self, pod: &RunningPod) -> Value {
        let mut object = pod.object.clone();
        let statuses = |key: &str| -> Vec<Value> {
            object["spec"][key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|container| {
                    let name = container["name"].as_str().unwrap();
                    json!({
                        "name": name,
                        "ready": key == "containers",
                        "containerID": format!("containerd://{}", pod.container(name)),
                    })
                })
                .collect()
        };
        let init = statuses("initContainers");
        let containers = statuses("containers");
        object["status"] = json!({
            "phase": "Running",
            "podIP": pod.ip,
            "podIPs": [{"ip": pod.ip}],
            "initContainerStatuses": init,
            "containerStatuses": containers,
        });
        object
    }

    /// The pod's network namespace, through its sandbox's pause process.
    pub fn pod_netns(&self, pod: &RunningPod) -> PathBuf {
        let status = self
            .cri
            .pod_sandbox_status(&pod.sandbox_id)
            .unwrap_or_else(|err| panic!("{}: {err}", pod.name));
        let info: Value = serde_json::from_str(status.info.get("info").expect("verbose info"))
            .expect("sandbox info is JSON");
        let pid = info["pid"].as_u64().expect("the sandbox's pid");
        PathBuf::from(format!("/proc/{pid}/ns/net"))
    }

    /// Waits until the pod's Envoy answers `/ready` on its admin port.
    pub fn wait_for_envoy(&self, pod: &RunningPod) {
        let netns = self.pod_netns(pod);
        let ready = poll(
            Duration::from_secs(60),
            Duration::from_millis(100),
            || match self.http_get_in(&netns, envoy_config::ADMIN_PORT, "/ready") {
                Ok((200, _)) => Ok(()),
                answer => Err(answer),
            },
        );
        if let Err(answer) = ready {
            panic!(
                "Envoy in {} is not ready ({answer:?}):\n{}",
                pod.name,
                fs::read_to_string(proxy_dir(self, &pod.name).join("envoy.log"))
                    .unwrap_or_default()
            );
        }
    }

    /// The sidecar's access log entries.
    pub fn access_log(&self, pod: &RunningPod) -> Vec<AccessLogEntry> {
        fs::read_to_string(proxy_dir(self, &pod.name).join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(AccessLogEntry::parse)
            .collect()
    }

    /// Waits for an access log entry `matches` accepts.
    pub fn wait_for_access(
        &self,
        pod: &RunningPod,
        matches: impl Fn(&AccessLogEntry) -> bool,
    ) -> AccessLogEntry {
        let found = poll(Duration::from_secs(15), Duration::from_millis(100), || {
            let log = self.access_log(pod);
            log.iter().find(|entry| matches(entry)).cloned().ok_or(log)
        });
        found.unwrap_or_else(|log| panic!("no matching access log entry in {}: {log:?}", pod.name))
    }
}
