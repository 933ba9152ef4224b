//! Small reads `meshlane precheck` makes: the API server's version (is the
//! API reachable with these credentials?) and one ConfigMap (Cilium's).

use serde_json::{Map, Value};

use super::access::KubeAccess;
use super::error::KubeError;
use super::fetch::{is_object_name, FetchPolicy};
use super::request::{get_json, Target};

const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// `GET /version`: `gitVersion`, e.g. `v1.31.2`.
pub fn server_version(access: &KubeAccess, policy: &FetchPolicy) -> Result<String, KubeError> {
    let url = format!("{}/version", access.server());
    let value = get_json(access, &url, Target::Version, policy, MAX_BYTES)?;
    value["gitVersion"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| KubeError::MalformedObject {
            what: url,
            problem: "no gitVersion".to_owned(),
        })
}

/// A ConfigMap's `data` (`None`: it does not exist).
pub fn config_map_data(
    access: &KubeAccess,
    namespace: &str,
    name: &str,
    policy: &FetchPolicy,
) -> Result<Option<Map<String, Value>>, KubeError> {
    for (what, text) in [("namespace", namespace), ("name", name)] {
        if !is_object_name(text, 253) {
            return Err(KubeError::MalformedObject {
                what: format!("configmap {what} {text:?}"),
                problem: "not a Kubernetes object name".to_owned(),
            });
        }
    }
    let url = format!(
        "{}/api/v1/namespaces/{namespace}/configmaps/{name}",
        access.server()
    );
    match get_json(
        access,
        &url,
        Target::ConfigMap { namespace, name },
        policy,
        MAX_BYTES,
    ) {
        Ok(value) => Ok(Some(value["data"].as_object().cloned().unwrap_or_default())),
        Err(KubeError::ObjectNotFound { .. }) => Ok(None),
        Err(err) => Err(err),
    }
}
