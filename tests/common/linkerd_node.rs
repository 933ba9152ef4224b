//! A node whose meshlane entry has `mesh: "linkerd"`, with the stand-in API server
//! that Linkerd's selection reads a pod's containers from (docs/meshes.md, L2–L3:
//! linkerd-cni reads them from the API too; the runtime passes annotations only).
//!
//! The stand-in answers any pod by its name, which the test chose: a name starting
//! with `init` has Linkerd's iptables init container, one starting with `plain`
//! has no linkerd-proxy, any other is injected in CNI mode (the validator as init
//! container, linkerd-proxy beside the app); one starting with `cp` is labelled as
//! a pod of Linkerd's control plane.

use serde_json::json;

use super::api_server::{self, status_json, ApiServer, Reply};
use super::node::{TestNode, TestNodeBuilder};

/// What Linkerd's injector writes on every pod it injected.
pub const PROXY_VERSION: &str = "linkerd.io/proxy-version";

/// The node and its API server; bind them as `let (node, _api) = ...` so that the
/// server, which listens in the node's netns, goes first.
pub fn linkerd_node(builder: TestNodeBuilder) -> (TestNode, ApiServer) {
    let node = builder
        .meshlane_config(
            |layout| json!({"mesh": "linkerd", "kubeconfig": layout.tmp.join("kubeconfig")}),
        )
        .build();
    let kubeconfig = node.layout().tmp.join("kubeconfig");
    let api = api_server::for_plugin(
        &node,
        &kubeconfig,
        Box::new(|seen| {
            let mut parts = seen
                .path
                .trim_start_matches("/api/v1/namespaces/")
                .split('/');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(namespace), Some("pods"), Some(name), None) => {
                    Reply::Json(200, pod_json(namespace, name).to_string())
                }
                _ => Reply::Json(404, status_json(404, "NotFound", "not found")),
            }
        }),
    );
    (node, api)
}

fn pod_json(namespace: &str, name: &str) -> serde_json::Value {
    let (init, containers) = if name.starts_with("init") {
        (vec!["linkerd-init"], vec!["app", "linkerd-proxy"])
    } else if name.starts_with("plain") {
        (vec![], vec!["app"])
    } else {
        (
            vec!["linkerd-network-validator"],
            vec!["app", "linkerd-proxy"],
        )
    };
    let named = |names: Vec<&str>| {
        names
            .into_iter()
            .map(|n| json!({"name": n}))
            .collect::<Vec<_>>()
    };
    let labels = match name.starts_with("cp") {
        true => json!({"linkerd.io/control-plane-component": "destination"}),
        false => json!({}),
    };
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"namespace": namespace, "name": name, "labels": labels,
                     "annotations": {PROXY_VERSION: "edge-26.8.3"}},
        "spec": {"initContainers": named(init), "containers": named(containers)},
    })
}
