//! The agent's node: read it, and patch its taints (the startup taint the
//! agent removes once it is ready, README "No pod before capture").
//!
//! The patch is a strategic merge patch, as `kubectl taint` sends, carrying
//! the `resourceVersion` that was read: `spec.taints` is an atomic list, so
//! the patch replaces it whole, and the API server refuses it (409) when the
//! node changed in between, instead of dropping a taint someone else added.

use serde_json::{json, Value};

use super::access::KubeAccess;
use super::error::KubeError;
use super::fetch::{is_object_name, FetchPolicy};
use super::request::{get_json, send_json, Method, Target};

/// A Node object is small; its status lists images, which can reach a few MiB.
const MAX_NODE_BYTES: u64 = 16 * 1024 * 1024;

pub const STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";

/// One node taint (`spec.taints[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: String,
}

/// What the agent needs of a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTaints {
    pub resource_version: String,
    /// The taints as the API server returned them, unchanged.
    pub taints: Vec<Value>,
}

impl NodeTaints {
    pub fn from_json(name: &str, node: &Value) -> Result<NodeTaints, KubeError> {
        let malformed = |problem: &str| KubeError::MalformedObject {
            what: format!("node {name}"),
            problem: problem.to_owned(),
        };
        let resource_version = node["metadata"]["resourceVersion"]
            .as_str()
            .ok_or_else(|| malformed("metadata.resourceVersion is missing"))?
            .to_owned();
        let taints = match &node["spec"]["taints"] {
            Value::Null => Vec::new(),
            Value::Array(items) => items.clone(),
            _ => return Err(malformed("spec.taints is not a list")),
        };
        Ok(NodeTaints {
            resource_version,
            taints,
        })
    }

    /// Whether a taint with `key` is there (any value and effect).
    pub fn has(&self, key: &str) -> bool {
        self.taints.iter().any(|t| t["key"] == key)
    }

    /// The patch that removes every taint with `key` and keeps the others as
    /// they are, valid only for the node as read.
    pub fn removal_patch(&self, key: &str) -> Value {
        let kept: Vec<&Value> = self.taints.iter().filter(|t| t["key"] != key).collect();
        json!({
            "metadata": {"resourceVersion": self.resource_version},
            "spec": {"taints": kept},
        })
    }
}

fn node_url(access: &KubeAccess, name: &str) -> Result<String, KubeError> {
    if !is_object_name(name, 253) {
        return Err(KubeError::InvalidNodeName {
            node: name.to_owned(),
            problem: "not a Kubernetes object name",
        });
    }
    Ok(format!("{}/api/v1/nodes/{name}", access.server()))
}

pub fn get_node(access: &KubeAccess, name: &str, policy: &FetchPolicy) -> Result<Value, KubeError> {
    let url = node_url(access, name)?;
    get_json(access, &url, Target::Node { name }, policy, MAX_NODE_BYTES)
}

/// Sends a strategic merge patch of the node; a 409 comes back as
/// [`KubeError::Conflict`].
pub fn patch_node(
    access: &KubeAccess,
    name: &str,
    patch: &Value,
    policy: &FetchPolicy,
) -> Result<Value, KubeError> {
    let url = node_url(access, name)?;
    let body = patch.to_string();
    let method = Method::Patch {
        content_type: STRATEGIC_MERGE_PATCH,
        body: body.as_bytes(),
    };
    send_json(
        access,
        &url,
        method,
        Target::Node { name },
        policy,
        MAX_NODE_BYTES,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removal_keeps_other_taints_and_names_the_version() {
        let node = json!({
            "metadata": {"name": "n1", "resourceVersion": "42"},
            "spec": {"taints": [
                {"key": "meshlane.io/agent-not-ready", "effect": "NoSchedule"},
                {"key": "dedicated", "value": "gpu", "effect": "NoExecute"},
                {"key": "meshlane.io/agent-not-ready", "value": "x", "effect": "NoExecute"}
            ]}
        });
        let taints = NodeTaints::from_json("n1", &node).unwrap();
        assert!(taints.has("meshlane.io/agent-not-ready"));
        assert!(!taints.has("other"));
        assert_eq!(
            taints.removal_patch("meshlane.io/agent-not-ready"),
            json!({
                "metadata": {"resourceVersion": "42"},
                "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}]}
            })
        );
    }

    #[test]
    fn a_node_without_taints_has_none() {
        let node = json!({"metadata": {"resourceVersion": "1"}, "spec": {}});
        let taints = NodeTaints::from_json("n1", &node).unwrap();
        assert!(taints.taints.is_empty());
        assert!(NodeTaints::from_json("n1", &json!({"spec": {}})).is_err());
        assert!(NodeTaints::from_json(
            "n1",
            &json!({"metadata": {"resourceVersion": "1"}, "spec": {"taints": 3}})
        )
        .is_err());
    }
}
