//! A page of `GET /api/v1/pods` reduced to what the node agent needs to enroll
//! the pods that already run on its node: the capture decision's [`PodMeta`],
//! plus the pod's UID, network mode, phase, IPs and container IDs. Pure: no
//! I/O, unit tested here.
//!
//! A malformed item fails that pod only (its error names the item), never the
//! whole list: one odd pod must not keep the others from being enrolled.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::error::KubeError;
use super::pod_json::pod_meta_from_json;
use crate::policy::pod_meta::PodMeta;

/// One pod of the node, as the API server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePod {
    pub meta: PodMeta,
    /// `metadata.uid`: the kubelet names the pod's cgroup after it.
    pub uid: String,
    /// `spec.hostNetwork`: the pod shares the node's network namespace.
    pub host_network: bool,
    /// `status.phase` (`Pending`, `Running`, `Succeeded`, `Failed`; empty when
    /// the status has none yet).
    pub phase: String,
    /// `status.podIPs` (or `status.podIP` from older API servers).
    pub ips: Vec<IpAddr>,
    /// IDs of every container the kubelet reports (`status.*ContainerStatuses[].
    /// containerID` without the `containerd://` prefix). The pod's sandbox is
    /// never among them.
    pub container_ids: Vec<String>,
}

impl NodePod {
    /// `namespace/name`, for log lines.
    pub fn id(&self) -> String {
        format!("{}/{}", self.meta.namespace, self.meta.name)
    }
}

/// One page of the list.
#[derive(Debug)]
pub struct PodListPage {
    /// Each item, or why it could not be read.
    pub pods: Vec<Result<NodePod, KubeError>>,
    /// `metadata.continue`: the token of the next page, if any.
    pub next: Option<String>,
}

/// Reads a `PodList` page.
pub fn pod_list_page(value: &Value) -> Result<PodListPage, KubeError> {
    let root = value
        .as_object()
        .ok_or_else(|| malformed("(document)", "not a JSON object"))?;
    if let Some(kind) = root.get("kind").and_then(Value::as_str) {
        if kind != "PodList" {
            return Err(malformed(
                "kind",
                format!("expected \"PodList\", found {kind:?}"),
            ));
        }
    }
    let items = match root.get("items") {
        // An empty list may come as `"items": null`.
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(items)) => items.as_slice(),
        Some(_) => return Err(malformed("items", "not an array")),
    };
    let next = root
        .get("metadata")
        .and_then(|metadata| metadata.get("continue"))
        .and_then(Value::as_str)
        .filter(|token| !token.is_empty())
        .map(str::to_owned);
    let pods = items
        .iter()
        .enumerate()
        .map(|(index, item)| node_pod_from_json(item).map_err(|err| in_item(err, index, item)))
        .collect();
    Ok(PodListPage { pods, next })
}

/// Reads one Pod object.
pub fn node_pod_from_json(value: &Value) -> Result<NodePod, KubeError> {
    let meta = pod_meta_from_json(value)?;
    let root = value
        .as_object()
        .ok_or_else(|| malformed("(document)", "not a JSON object"))?;
    let uid = root
        .get("metadata")
        .and_then(|metadata| metadata.get("uid"))
        .and_then(Value::as_str)
        .filter(|uid| !uid.is_empty())
        .ok_or_else(|| malformed("metadata.uid", "missing"))?
        .to_owned();
    let host_network = match root.get("spec").and_then(|spec| spec.get("hostNetwork")) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => return Err(malformed("spec.hostNetwork", "not a boolean")),
    };
    let empty = Map::new();
    let status = match root.get("status") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(status)) => status,
        Some(_) => return Err(malformed("status", "not an object")),
    };
    let phase = match status.get("phase") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(phase)) => phase.clone(),
        Some(_) => return Err(malformed("status.phase", "not a string")),
    };
    Ok(NodePod {
        meta,
        uid,
        host_network,
        phase,
        ips: pod_ips(status)?,
        container_ids: container_ids(status)?,
    })
}

fn pod_ips(status: &Map<String, Value>) -> Result<Vec<IpAddr>, KubeError> {
    let parse = |text: &str, path: &str| {
        text.parse::<IpAddr>()
            .map_err(|_| malformed(path, format!("{text:?} is not an IP address")))
    };
    let mut ips = Vec::new();
    match status.get("podIPs") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                let path = format!("status.podIPs[{index}].ip");
                let text = item
                    .get("ip")
                    .and_then(Value::as_str)
                    .ok_or_else(|| malformed(&path, "missing"))?;
                ips.push(parse(text, &path)?);
            }
        }
        Some(_) => return Err(malformed("status.podIPs", "not an array")),
    }
    if ips.is_empty() {
        if let Some(text) = status.get("podIP").and_then(Value::as_str) {
            if !text.is_empty() {
                ips.push(parse(text, "status.podIP")?);
            }
        }
    }
    Ok(ips)
}

fn container_ids(status: &Map<String, Value>) -> Result<Vec<String>, KubeError> {
    let mut ids = Vec::new();
    for list in [
        "initContainerStatuses",
        "containerStatuses",
        "ephemeralContainerStatuses",
    ] {
        let items = match status.get(list) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(items)) => items,
            Some(_) => return Err(malformed(&format!("status.{list}"), "not an array")),
        };
        for item in items {
            // A container that has not started yet has no ID.
            let Some(id) = item.get("containerID").and_then(Value::as_str) else {
                continue;
            };
            // `containerd://<id>`, `cri-o://<id>`, `docker://<id>`.
            let id = id.split_once("://").map_or(id, |(_, id)| id);
            if !id.is_empty() {
                ids.push(id.to_owned());
            }
        }
    }
    Ok(ids)
}

fn malformed(path: &str, problem: impl Into<String>) -> KubeError {
    KubeError::MalformedPod {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// Names the item in an error: its index, and its name when it has one.
fn in_item(err: KubeError, index: usize, item: &Value) -> KubeError {
    let name = |field: &str| {
        item.get("metadata")
            .and_then(|metadata| metadata.get(field))
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    match err {
        KubeError::MalformedPod { path, problem } => KubeError::MalformedPod {
            path: format!(
                "items[{index}] ({}/{}).{path}",
                name("namespace"),
                name("name")
            ),
            problem,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str) -> Value {
        json!({
            "metadata": {"namespace": "shop", "name": name, "uid": format!("uid-{name}"),
                         "annotations": {"sidecar.istio.io/status": "{}"}},
            "spec": {"containers": [{"name": "app"}, {"name": "istio-proxy"}]},
            "status": {
                "phase": "Running",
                "podIP": "10.1.0.7",
                "podIPs": [{"ip": "10.1.0.7"}, {"ip": "fd00::7"}],
                "initContainerStatuses": [{"name": "istio-validation",
                                           "containerID": "containerd://aaa"}],
                "containerStatuses": [
                    {"name": "app", "containerID": "containerd://bbb"},
                    {"name": "istio-proxy", "containerID": "cri-o://ccc"},
                    {"name": "waiting"}
                ]
            }
        })
    }

    #[test]
    fn reads_what_enrollment_needs() {
        let pod = node_pod_from_json(&pod("web-0")).unwrap();
        assert_eq!(pod.id(), "shop/web-0");
        assert_eq!(pod.uid, "uid-web-0");
        assert!(!pod.host_network);
        assert_eq!(pod.phase, "Running");
        assert_eq!(
            pod.ips,
            vec![
                "10.1.0.7".parse::<IpAddr>().unwrap(),
                "fd00::7".parse().unwrap()
            ]
        );
        assert_eq!(pod.container_ids, ["aaa", "bbb", "ccc"]);
        assert!(pod.meta.spec.unwrap().has_container("istio-proxy"));
    }

    #[test]
    fn older_servers_and_young_pods() {
        let mut value = pod("a");
        value["status"] = json!({"podIP": "10.1.0.8"});
        value["spec"]["hostNetwork"] = json!(true);
        let pod = node_pod_from_json(&value).unwrap();
        assert_eq!(pod.ips, vec!["10.1.0.8".parse::<IpAddr>().unwrap()]);
        assert!(pod.host_network);
        assert_eq!(pod.phase, "");
        assert!(pod.container_ids.is_empty());

        let mut value = self::pod("b");
        value.as_object_mut().unwrap().remove("status");
        let pod = node_pod_from_json(&value).unwrap();
        assert!(pod.ips.is_empty());
    }

    #[test]
    fn a_malformed_item_fails_alone_and_is_named() {
        let mut bad = pod("bad");
        bad["status"]["podIPs"] = json!([{"ip": "10.1.0.999"}]);
        let mut no_uid = pod("no-uid");
        no_uid["metadata"].as_object_mut().unwrap().remove("uid");
        let page = pod_list_page(&json!({
            "kind": "PodList",
            "metadata": {"continue": "next-token"},
            "items": [pod("good"), bad, no_uid]
        }))
        .unwrap();
        assert_eq!(page.next.as_deref(), Some("next-token"));
        assert_eq!(page.pods.len(), 3);
        assert_eq!(page.pods[0].as_ref().unwrap().meta.name, "good");
        match &page.pods[1] {
            Err(KubeError::MalformedPod { path, problem }) => {
                assert_eq!(path, "items[1] (shop/bad).status.podIPs[0].ip");
                assert!(problem.contains("10.1.0.999"), "{problem}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&page.pods[2], Err(KubeError::MalformedPod { path, .. })
                if path == "items[2] (shop/no-uid).metadata.uid"),
            "{:?}",
            page.pods[2]
        );
    }

    #[test]
    fn the_last_page_and_empty_lists() {
        for value in [
            json!({"kind": "PodList", "metadata": {"continue": ""}, "items": []}),
            json!({"kind": "PodList", "metadata": {}, "items": null}),
            json!({"items": []}),
        ] {
            let page = pod_list_page(&value).unwrap();
            assert!(page.pods.is_empty());
            assert_eq!(page.next, None);
        }
        assert!(pod_list_page(&json!({"kind": "Pod"})).is_err());
        assert!(pod_list_page(&json!({"items": {}})).is_err());
        assert!(pod_list_page(&json!([])).is_err());
    }
}
