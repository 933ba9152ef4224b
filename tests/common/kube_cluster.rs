//! A stand-in Kubernetes API server with a node's pods, the Node itself and a
//! service account: the one stand-in of the node-level tests (the agent lists
//! its node's pods and takes its startup taint off the Node, the plugin may
//! read a pod, precheck reads a ConfigMap and /version). Real HTTPS
//! underneath (`api_server.rs`).
//!
//! PATCH of the Node behaves as the API server with meshlane's admission
//! policy (manifests/admission-policy.yaml) would: a strategic merge patch
//! whose `metadata.resourceVersion` is not the current one is refused with 409,
//! and a patch that changes anything but the removal of the startup taint is
//! refused as the policy would refuse it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::api_server::{status_json, ApiServer, Authority, Reply, Seen, ServerOptions};

/// The API server answers at most this many pods per page, whatever the
/// client's limit, so that the agent must follow `continue`.
pub const PAGE: usize = 2;

/// The cluster as the agent sees it: an API server that lists `pods` to a
/// client with the current `token`, and a service account dir with that
/// token and the cluster CA.
pub struct Cluster {
    pub server: ApiServer,
    pods: Arc<Mutex<Vec<Value>>>,
    token: Arc<Mutex<String>>,
    node: Arc<Mutex<Value>>,
    /// PATCHes still to be beaten by "another writer" (409 each).
    conflicts: Arc<AtomicU32>,
    config_maps: Arc<Mutex<BTreeMap<String, Value>>>,
    /// `token` and `ca.crt`, as kubelet projects them into a pod.
    pub account_dir: PathBuf,
}

impl Cluster {
    /// Serves `node_name`'s pods; listens in `netns` (a test node's, where the
    /// agent runs) or, without one, in the test's own.
    pub fn start(dir: &Path, node_name: &str, netns: Option<PathBuf>) -> Cluster {
        let ca = Authority::new("cluster-ca");
        let node_name = node_name.to_owned();
        let pods = Arc::new(Mutex::new(Vec::new()));
        let token = Arc::new(Mutex::new("token-1".to_owned()));
        let node = Arc::new(Mutex::new(json!({
            "kind": "Node", "apiVersion": "v1",
            "metadata": {"name": node_name, "resourceVersion": "100", "labels": {"kubernetes.io/os": "linux"}},
            "spec": {},
        })));
        let conflicts = Arc::new(AtomicU32::new(0));
        let config_maps = Arc::new(Mutex::new(BTreeMap::<String, Value>::new()));
        let handler = {
            let (pods, token) = (pods.clone(), token.clone());
            let (node, conflicts, config_maps) =
                (node.clone(), conflicts.clone(), config_maps.clone());
            Box::new(move |seen: &Seen| {
                if seen.authorization.as_deref()
                    != Some(&format!("Bearer {}", token.lock().unwrap()))
                {
                    return Reply::Json(401, status_json(401, "Unauthorized", "Unauthorized"));
                }
                if seen.path == "/version" {
                    return Reply::Json(200, json!({"gitVersion": "v1.31.0"}).to_string());
                }
                if seen.path.starts_with("/api/v1/nodes/") {
                    return answer_node(seen, &node, &conflicts);
                }
                if let Some(key) = config_map_key(&seen.path) {
                    return match config_maps.lock().unwrap().get(&key) {
                        Some(map) => Reply::Json(200, map.to_string()),
                        None => Reply::Json(404, status_json(404, "NotFound", "not found")),
                    };
                }
                answer(seen, &node_name, &pods.lock().unwrap())
            })
        };
        let options = ServerOptions {
            netns,
            ..ServerOptions::default()
        };
        let server = ApiServer::start(&ca, options, handler);
        let account_dir = dir.join("serviceaccount");
        fs::create_dir_all(&account_dir).unwrap();
        fs::write(account_dir.join("ca.crt"), ca.pem()).unwrap();
        let cluster = Cluster {
            server,
            pods,
            token,
            node,
            conflicts,
            config_maps,
            account_dir,
        };
        cluster.rotate_token("token-1");
        cluster
    }

    pub fn port(&self) -> String {
        self.server.addr.port().to_string()
    }

    /// As the kubelet renews a projected token: the new file replaces the old
    /// one at once, and the API server accepts only the new token.
    pub fn rotate_token(&self, token: &str) {
        let temp = self.account_dir.join(".token.new");
        fs::write(&temp, token).unwrap();
        fs::rename(&temp, self.account_dir.join("token")).unwrap();
        *self.token.lock().unwrap() = token.to_owned();
    }

    pub fn set_pods(&self, pods: Vec<Value>) {
        *self.pods.lock().unwrap() = pods;
    }

    /// The Node as the API server holds it now.
    pub fn node(&self) -> Value {
        self.node.lock().unwrap().clone()
    }

    /// Sets the Node's taints (as kubelet registers them at node creation).
    pub fn set_taints(&self, taints: Value) {
        let mut node = self.node.lock().unwrap();
        node["spec"]["taints"] = taints;
        bump(&mut node);
    }

    /// The next `n` PATCHes of the Node find it changed by another writer.
    pub fn conflict_next_patches(&self, n: u32) {
        self.conflicts.store(n, Ordering::SeqCst);
    }

    pub fn set_config_map(&self, namespace: &str, name: &str, data: Value) {
        let map = json!({"kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"namespace": namespace, "name": name}, "data": data});
        self.config_maps
            .lock()
            .unwrap()
            .insert(format!("{namespace}/{name}"), map);
    }

    /// The Node requests seen: (method, content type).
    pub fn node_requests(&self) -> Vec<(String, Option<String>)> {
        self.server
            .seen()
            .into_iter()
            .filter(|seen| seen.path.starts_with("/api/v1/nodes/"))
            .map(|seen| (seen.method, seen.content_type))
            .collect()
    }

    /// Requests for one pod (`/api/v1/namespaces/<ns>/pods/<name>`): the
    /// plugin's, when it reads a pod it cannot classify otherwise.
    pub fn pod_requests(&self) -> Vec<String> {
        self.requests_under("/api/v1/namespaces/")
    }

    pub fn list_requests(&self) -> Vec<String> {
        self.requests_under("/api/v1/pods")
    }

    /// The paths of the requests so far that start with `prefix`, in order.
    fn requests_under(&self, prefix: &str) -> Vec<String> {
        self.server
            .seen()
            .into_iter()
            .map(|seen| seen.path)
            .filter(|path| path.starts_with(prefix))
            .collect()
    }
}

/// The startup taint the agent removes (its default setting).
pub const STARTUP_TAINT: &str = "meshlane.io/agent-not-ready";

fn bump(node: &mut Value) {
    let version: u64 = node["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    node["metadata"]["resourceVersion"] = json!((version + 1).to_string());
}

fn config_map_key(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let (namespace, name) = rest.split_once("/configmaps/")?;
    Some(format!("{namespace}/{name}"))
}

/// GET and PATCH (strategic merge) of `/api/v1/nodes/<name>`.
fn answer_node(seen: &Seen, node: &Mutex<Value>, conflicts: &AtomicU32) -> Reply {
    let mut node = node.lock().unwrap();
    let name = node["metadata"]["name"].as_str().unwrap().to_owned();
    if seen.path != format!("/api/v1/nodes/{name}") {
        return Reply::Json(404, status_json(404, "NotFound", "nodes not found"));
    }
    match seen.method.as_str() {
        "GET" => Reply::Json(200, node.to_string()),
        "PATCH" => {
            if seen.content_type.as_deref() != Some("application/strategic-merge-patch+json") {
                return Reply::Json(415, status_json(415, "UnsupportedMediaType", "patch type"));
            }
            let Ok(patch) = serde_json::from_slice::<Value>(&seen.body) else {
                return Reply::Json(400, status_json(400, "BadRequest", "patch is not JSON"));
            };
            // Another writer got there first.
            if conflicts
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                bump(&mut node);
            }
            if let Some(version) = patch["metadata"]["resourceVersion"].as_str() {
                if version != node["metadata"]["resourceVersion"] {
                    return Reply::Json(
                        409,
                        status_json(409, "Conflict", "the object has been modified"),
                    );
                }
            }
            if let Err(why) = admitted(&patch, &node) {
                return Reply::Json(422, status_json(422, "Invalid", &why));
            }
            node["spec"]["taints"] = patch["spec"]["taints"].clone();
            bump(&mut node);
            Reply::Json(200, node.to_string())
        }
        _ => Reply::Json(405, status_json(405, "MethodNotAllowed", "method")),
    }
}

/// What manifests/admission-policy.yaml lets the agent change: only
/// `spec.taints`, and only by removing the startup taint.
fn admitted(patch: &Value, node: &Value) -> Result<(), String> {
    let object = patch.as_object().ok_or("not an object")?;
    for (key, value) in object {
        match key.as_str() {
            "metadata" => {
                let keys: Vec<&String> = value.as_object().ok_or("metadata")?.keys().collect();
                if keys.iter().any(|k| *k != "resourceVersion") {
                    return Err(format!(
                        "the agent may only change spec.taints, not metadata {keys:?}"
                    ));
                }
            }
            "spec" => {
                let keys: Vec<&String> = value.as_object().ok_or("spec")?.keys().collect();
                if keys.iter().any(|k| *k != "taints") {
                    return Err(format!(
                        "the agent may only change spec.taints, not spec {keys:?}"
                    ));
                }
            }
            other => {
                return Err(format!(
                    "the agent may only change spec.taints, not {other}"
                ))
            }
        }
    }
    let old: Vec<Value> = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let new: Vec<Value> = patch["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if new.iter().any(|taint| !old.contains(taint)) {
        return Err("the agent may not add or change taints".to_owned());
    }
    if old
        .iter()
        .any(|taint| !new.contains(taint) && taint["key"] != STARTUP_TAINT)
    {
        return Err(format!(
            "the agent may only remove the {STARTUP_TAINT} taint"
        ));
    }
    Ok(())
}

/// `GET /api/v1/pods?fieldSelector=spec.nodeName%3D<node>` in pages of
/// [`PAGE`], and `GET /api/v1/namespaces/<ns>/pods/<name>`.
fn answer(seen: &Seen, node_name: &str, pods: &[Value]) -> Reply {
    let (path, query) = seen
        .path
        .split_once('?')
        .unwrap_or((seen.path.as_str(), ""));
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
            .map(percent_decode)
    };
    if path == "/api/v1/pods" {
        if param("fieldSelector") != Some(format!("spec.nodeName={node_name}")) {
            return Reply::Json(400, status_json(400, "BadRequest", "wrong field selector"));
        }
        // The continue token is opaque to clients; this one needs escaping.
        let offset = match param("continue") {
            None => 0,
            Some(token) => match token
                .strip_prefix("offset/")
                .and_then(|t| t.strip_suffix('='))
            {
                Some(n) => n.parse().unwrap(),
                None => return Reply::Json(410, status_json(410, "Expired", "bad token")),
            },
        };
        let end = (offset + PAGE).min(pods.len());
        let next = if end < pods.len() {
            format!("offset/{end}=")
        } else {
            String::new()
        };
        let page = json!({
            "kind": "PodList", "apiVersion": "v1",
            "metadata": {"resourceVersion": "1", "continue": next},
            "items": pods[offset..end],
        });
        return Reply::Json(200, page.to_string());
    }
    let found = pods.iter().find(|pod| {
        let metadata = &pod["metadata"];
        path == format!(
            "/api/v1/namespaces/{}/pods/{}",
            metadata["namespace"].as_str().unwrap(),
            metadata["name"].as_str().unwrap()
        )
    });
    match found {
        Some(pod) => Reply::Json(200, pod.to_string()),
        None => Reply::Json(404, status_json(404, "NotFound", "not found")),
    }
}

fn percent_decode(text: &str) -> String {
    let mut out = Vec::new();
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        match (byte, tail) {
            (b'%', [high, low, after @ ..]) => {
                let hex = std::str::from_utf8(&[*high, *low]).unwrap().to_owned();
                out.push(u8::from_str_radix(&hex, 16).unwrap());
                rest = after;
            }
            _ => {
                out.push(byte);
                rest = tail;
            }
        }
    }
    String::from_utf8(out).unwrap()
}
