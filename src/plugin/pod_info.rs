//! Gathers what is known of the pod: its name (CNI_ARGS), its annotations (passed
//! by the runtime in runtimeConfig when the plugin declares the
//! `io.kubernetes.cri.pod-annotations` capability), and — only when needed — its
//! labels and spec from the Kubernetes API.
//!
//! | decision                                   | source                        |
//! |--------------------------------------------|-------------------------------|
//! | injected? gateway template? istio-init?    | `sidecar.istio.io/status`     |
//! | inject annotation, interception mode, ambient, traffic settings | annotations |
//! | inject label, DISABLE_ENVOY, proxy type, runAsUser/Group, per-pod DNS capture, hostUsers | API |

use std::collections::BTreeMap;

use serde_json::Value;

use crate::cni::{AttachmentRequest, CniError, NetConf};
use crate::kube::{fetch_pod, FetchPolicy, KubeAccess};
use crate::policy::pod_meta::PodMeta;
use crate::policy::selection::{select, CaptureMode, Selection};
use crate::policy::Mesh;

use super::config::{PluginConfig, PodSpecLookup};
use super::context::pod_name;

/// The capability (and runtimeConfig key) carrying the pod's annotations.
pub const POD_ANNOTATIONS_CAPABILITY: &str = "io.kubernetes.cri.pod-annotations";

/// The decision and what it was made from.
pub struct Classified {
    pub selection: Selection,
    pub pod: PodMeta,
}

/// Classifies the pod, reading it from the API only when the decision needs it.
pub fn classify(
    config: &PluginConfig,
    request: &AttachmentRequest,
) -> Result<Classified, CniError> {
    let (namespace, name) = pod_name(request);
    let mut pod = PodMeta {
        namespace,
        name,
        annotations: runtime_annotations(&request.config)?,
        labels: None,
        spec: None,
    };
    let decide = |pod: &PodMeta| {
        select(
            config.capture,
            config.mesh,
            &request.args,
            pod,
            &config.exclude_namespaces,
        )
        .map_err(|err| match err {
            crate::policy::selection::SelectionError::BadCaptureArg(_) => {
                CniError::invalid_env("CNI_ARGS", err)
            }
            crate::policy::selection::SelectionError::Unclassified(_)
            | crate::policy::selection::SelectionError::UnclassifiedKuma(_)
            | crate::policy::selection::SelectionError::UnclassifiedLinkerd(_) => {
                CniError::pod_policy(err.to_string())
            }
        })
    };
    let is_kubernetes_pod = !pod.namespace.is_empty() && !pod.name.is_empty();
    let uses_pod_info = config.capture != CaptureMode::None;

    if pod.annotations.is_none()
        && is_kubernetes_pod
        && uses_pod_info
        && config.pod_spec_lookup != PodSpecLookup::Never
        && config.kubeconfig.is_some()
    {
        // The runtime passed nothing: the API is the only source.
        pod = read_pod(config, &pod)?;
        let selection = decide(&pod)?;
        return Ok(Classified { selection, pod });
    }
    let linkerd_needs_spec = || {
        config.mesh == Mesh::Linkerd
            && pod.spec.is_none()
            && config.pod_spec_lookup != PodSpecLookup::Never
            && config.kubeconfig.is_some()
            && is_kubernetes_pod
    };
    let selection = match decide(&pod) {
        // Linkerd's selection reads the pod's containers (as linkerd-cni does,
        // docs/meshes.md L2-L3); only the API knows them.
        Err(_) if linkerd_needs_spec() => Selection::Capture,
        other => other?,
    };
    if selection == Selection::Capture
        && is_kubernetes_pod
        && (config.pod_spec_lookup == PodSpecLookup::Always || linkerd_needs_spec())
    {
        // Per-pod proxy settings: re-decide with labels and spec (the inject
        // label or a gateway's proxy type may still say no).
        let from_api = read_pod(config, &pod)?;
        pod.labels = from_api.labels;
        pod.spec = from_api.spec;
        if pod.annotations.is_none() {
            pod.annotations = from_api.annotations;
        }
        let selection = decide(&pod)?;
        return Ok(Classified { selection, pod });
    }
    Ok(Classified { selection, pod })
}

/// The pod from the API; failing to read it fails the ADD (fail closed).
fn read_pod(config: &PluginConfig, pod: &PodMeta) -> Result<PodMeta, CniError> {
    let kubeconfig = config.kubeconfig.as_ref().ok_or_else(|| {
        CniError::config(
            "podSpecLookup",
            "\"always\" needs a kubeconfig (the kubeconfig key) to read pods from the API",
        )
    })?;
    // The error names the kubeconfig's path itself.
    let access = KubeAccess::from_kubeconfig(kubeconfig)
        .map_err(|err| CniError::config("kubeconfig", err))?;
    fetch_pod(&access, &pod.namespace, &pod.name, &FetchPolicy::default()).map_err(|err| {
        CniError::pod_policy(format!(
            "cannot read pod {}/{} from the Kubernetes API, so it cannot be classified: {err}",
            pod.namespace, pod.name
        ))
    })
}

/// The annotations the runtime passed; `None` only when the key is missing.
///
/// A runtime that has the capability always sets the key; for a pod without
/// annotations it sets it to `null` (containerd 1.6 marshals its nil map so). That
/// means "this pod has none", not "ask the API": reading it as missing failed the
/// ADD of every plain pod on a node without a kubeconfig, and cost an API call per
/// pod on one with. Only a missing key says the runtime lacks the capability.
pub fn runtime_annotations(
    netconf: &NetConf,
) -> Result<Option<BTreeMap<String, String>>, CniError> {
    let Some(value) = netconf.runtime_config.get(POD_ANNOTATIONS_CAPABILITY) else {
        return Ok(None);
    };
    let path = format!("runtimeConfig.{POD_ANNOTATIONS_CAPABILITY}");
    let object = match value {
        Value::Object(object) => object,
        Value::Null => return Ok(Some(BTreeMap::new())),
        other => {
            return Err(CniError::decode(
                &path,
                format!("{other} is not an object of annotations"),
            ))
        }
    };
    object
        .iter()
        .map(|(key, value)| match value {
            Value::String(text) => Ok((key.clone(), text.clone())),
            other => Err(CniError::decode(
                &format!("{path}.{key}"),
                format!("{other} is not a string"),
            )),
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn netconf(runtime_config: Value) -> NetConf {
        let mut doc = json!({"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "meshlane"});
        if !runtime_config.is_null() {
            doc["runtimeConfig"] = runtime_config;
        }
        NetConf::from_slice(doc.to_string().as_bytes()).expect("valid netconf")
    }

    #[test]
    fn a_missing_key_means_the_runtime_lacks_the_capability() {
        assert_eq!(runtime_annotations(&netconf(Value::Null)).unwrap(), None);
        assert_eq!(
            runtime_annotations(&netconf(json!({"portMappings": []}))).unwrap(),
            None
        );
    }

    #[test]
    fn null_means_a_pod_without_annotations() {
        // What containerd 1.6 passes for a pod without annotations.
        let conf = netconf(json!({ POD_ANNOTATIONS_CAPABILITY: null }));
        assert_eq!(runtime_annotations(&conf).unwrap(), Some(BTreeMap::new()));
        let conf = netconf(json!({ POD_ANNOTATIONS_CAPABILITY: {} }));
        assert_eq!(runtime_annotations(&conf).unwrap(), Some(BTreeMap::new()));
    }

    #[test]
    fn annotations_are_read_and_bad_values_name_their_path() {
        let conf = netconf(json!({ POD_ANNOTATIONS_CAPABILITY: {"a": "1", "b": ""} }));
        let annotations = runtime_annotations(&conf).unwrap().unwrap();
        assert_eq!(annotations["a"], "1");
        assert_eq!(annotations["b"], "");
        let conf = netconf(json!({ POD_ANNOTATIONS_CAPABILITY: {"a": 1} }));
        let err = runtime_annotations(&conf).unwrap_err();
        assert!(
            err.to_string()
                .contains("runtimeConfig.io.kubernetes.cri.pod-annotations.a"),
            "{err}"
        );
        let conf = netconf(json!({ POD_ANNOTATIONS_CAPABILITY: ["a"] }));
        assert!(runtime_annotations(&conf).is_err());
    }
}
