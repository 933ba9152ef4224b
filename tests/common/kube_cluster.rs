//! A stand-in Kubernetes API server with a node's pods and a service account:
//! the one stand-in of the node-level tests (the agent lists its node's pods,
//! the plugin may read one). Real HTTPS underneath (`api_server.rs`).

use std::fs;
use std::path::{Path, PathBuf};
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
        let handler = {
            let (pods, token) = (pods.clone(), token.clone());
            Box::new(move |seen: &Seen| {
                answer(
                    seen,
                    &node_name,
                    &pods.lock().unwrap(),
                    &token.lock().unwrap(),
                )
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

    /// Requests for one pod (`/api/v1/namespaces/<ns>/pods/<name>`): the
    /// plugin's, when it reads a pod it cannot classify otherwise.
    pub fn pod_requests(&self) -> Vec<String> {
        self.server
            .seen()
            .into_iter()
            .map(|seen| seen.path)
            .filter(|path| path.starts_with("/api/v1/namespaces/"))
            .collect()
    }

    pub fn list_requests(&self) -> Vec<String> {
        self.server
            .seen()
            .into_iter()
            .map(|seen| seen.path)
            .filter(|path| path.starts_with("/api/v1/pods"))
            .collect()
    }
}

/// `GET /api/v1/pods?fieldSelector=spec.nodeName%3D<node>` in pages of
/// [`PAGE`], and `GET /api/v1/namespaces/<ns>/pods/<name>`.
fn answer(seen: &Seen, node_name: &str, pods: &[Value], token: &str) -> Reply {
    if seen.authorization.as_deref() != Some(&format!("Bearer {token}")) {
        return Reply::Json(401, status_json(401, "Unauthorized", "Unauthorized"));
    }
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
