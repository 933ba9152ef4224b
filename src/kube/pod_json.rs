//! The Pod JSON the API server returns, reduced to [`PodMeta`]: what Istio's
//! capture decision reads and nothing else. Pure: no I/O, unit tested here.
//!
//! Only the fields read are checked; a malformed value elsewhere (another
//! container's env, say) is none of meshlane's business and does not fail ADD.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::KubeError;
use crate::json_kind::json_kind;
use crate::policy::pod_meta::{PodMeta, PodSpecFacts, ProxyContainer, ISTIO_PROXY};

type Object = Map<String, Value>;

/// Maps a Pod object (`GET /api/v1/namespaces/{ns}/pods/{name}`) to [`PodMeta`].
///
/// Labels and annotations are `Some` even when the Pod has none: the API's
/// answer is authoritative, unlike a runtime that passed nothing.
pub fn pod_meta_from_json(value: &Value) -> Result<PodMeta, KubeError> {
    let root = as_object(value, "(document)")?;
    if let Some(kind) = present(root.get("kind")) {
        let kind = as_str(kind, "kind")?;
        if kind != "Pod" {
            return Err(malformed(
                "kind",
                format!("expected \"Pod\", found {kind:?}"),
            ));
        }
    }
    let metadata = required_object(root, "", "metadata")?;
    let namespace = required_str(metadata, "metadata", "namespace")?;
    let name = required_str(metadata, "metadata", "name")?;
    let labels = string_map(metadata.get("labels"), "metadata.labels")?;
    let annotations = string_map(metadata.get("annotations"), "metadata.annotations")?;
    let spec = required_object(root, "", "spec")?;

    Ok(PodMeta {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        annotations: Some(annotations),
        labels: Some(labels),
        spec: Some(spec_facts(spec)?),
    })
}

fn spec_facts(spec: &Object) -> Result<PodSpecFacts, KubeError> {
    let init = container_list(spec.get("initContainers"), "spec.initContainers")?;
    let regular = container_list(spec.get("containers"), "spec.containers")?;

    // Container names are unique across init and regular containers (the API
    // server validates it), so the proxy is found in at most one list. A native
    // sidecar (Kubernetes >= 1.28) is an init container with restartPolicy
    // Always; its env, args and securityContext read the same as a regular one.
    let proxy = init
        .iter()
        .chain(&regular)
        .find(|entry| entry.name == ISTIO_PROXY)
        .map(|entry| proxy_container(entry.object, &entry.path, spec))
        .transpose()?;

    let host_users = match present(spec.get("hostUsers")) {
        None => None,
        Some(Value::Bool(value)) => Some(*value),
        Some(other) => return Err(wrong_type("spec.hostUsers", "a boolean", other)),
    };

    Ok(PodSpecFacts {
        init_containers: init
            .into_iter()
            .map(|entry| entry.name.to_owned())
            .collect(),
        containers: regular
            .into_iter()
            .map(|entry| entry.name.to_owned())
            .collect(),
        proxy,
        host_users,
    })
}

struct ContainerEntry<'a> {
    name: &'a str,
    object: &'a Object,
    path: String,
}

fn container_list<'a>(
    value: Option<&'a Value>,
    path: &str,
) -> Result<Vec<ContainerEntry<'a>>, KubeError> {
    array_items(value, path)?
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let path = format!("{path}[{index}]");
            let object = as_object(item, &path)?;
            let name = required_str(object, &path, "name")?;
            Ok(ContainerEntry { name, object, path })
        })
        .collect()
}

fn proxy_container(
    container: &Object,
    path: &str,
    spec: &Object,
) -> Result<ProxyContainer, KubeError> {
    let env = literal_env(container.get("env"), &format!("{path}.env"))?;
    let args = string_list(container.get("args"), &format!("{path}.args"))?;

    // Kubernetes runs the container with the pod-level securityContext's IDs
    // unless the container sets its own; the kernel sees the effective ones,
    // and those are what the capture must exempt.
    let own = optional_object(
        container.get("securityContext"),
        &format!("{path}.securityContext"),
    )?;
    let pod = optional_object(spec.get("securityContext"), "spec.securityContext")?;
    let id = |field: &str| -> Result<Option<i64>, KubeError> {
        let from_container = match own {
            Some(own) => optional_i64(own, &format!("{path}.securityContext"), field)?,
            None => None,
        };
        match (from_container, pod) {
            (Some(value), _) => Ok(Some(value)),
            (None, Some(pod)) => optional_i64(pod, "spec.securityContext", field),
            (None, None) => Ok(None),
        }
    };

    Ok(ProxyContainer {
        env,
        args,
        run_as_user: id("runAsUser")?,
        run_as_group: id("runAsGroup")?,
    })
}

/// `env` entries with a literal `value` (an entry with neither `value` nor
/// `valueFrom` is the empty string, as Kubernetes treats it). A `valueFrom`
/// entry cannot be resolved without reading other objects; it removes any
/// earlier literal of the same name, because Kubernetes lets the last entry of
/// a name win.
fn literal_env(value: Option<&Value>, path: &str) -> Result<BTreeMap<String, String>, KubeError> {
    let mut env = BTreeMap::new();
    let Some(value) = present(value) else {
        return Ok(env);
    };
    let Value::Array(items) = value else {
        return Err(wrong_type(path, "an array", value));
    };
    for (index, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{index}]");
        let entry = as_object(item, &item_path)?;
        let name = required_str(entry, &item_path, "name")?;
        if present(entry.get("valueFrom")).is_some() {
            env.remove(name);
            continue;
        }
        let literal = match present(entry.get("value")) {
            None => "",
            Some(value) => as_str(value, &format!("{item_path}.value"))?,
        };
        env.insert(name.to_owned(), literal.to_owned());
    }
    Ok(env)
}

fn string_map(value: Option<&Value>, path: &str) -> Result<BTreeMap<String, String>, KubeError> {
    let Some(value) = present(value) else {
        return Ok(BTreeMap::new());
    };
    as_object(value, path)?
        .iter()
        .map(|(key, item)| {
            let text = as_str(item, &format!("{path}[{key:?}]"))?;
            Ok((key.clone(), text.to_owned()))
        })
        .collect()
}

fn string_list(value: Option<&Value>, path: &str) -> Result<Vec<String>, KubeError> {
    array_items(value, path)?
        .iter()
        .enumerate()
        .map(|(index, item)| Ok(as_str(item, &format!("{path}[{index}]"))?.to_owned()))
        .collect()
}

/// The items of an optional array (none when absent).
fn array_items<'a>(value: Option<&'a Value>, path: &str) -> Result<&'a [Value], KubeError> {
    match present(value) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(wrong_type(path, "an array", other)),
    }
}

/// JSON `null` is treated as absent: Kubernetes omits empty fields, but other
/// serialisers of the same object write them as null.
fn present(value: Option<&Value>) -> Option<&Value> {
    value.filter(|value| !value.is_null())
}

fn join(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_owned()
    } else {
        format!("{parent}.{field}")
    }
}

fn required_object<'a>(
    object: &'a Object,
    parent: &str,
    field: &str,
) -> Result<&'a Object, KubeError> {
    let path = join(parent, field);
    match present(object.get(field)) {
        Some(value) => as_object(value, &path),
        None => Err(malformed(&path, "missing".to_owned())),
    }
}

fn optional_object<'a>(
    value: Option<&'a Value>,
    path: &str,
) -> Result<Option<&'a Object>, KubeError> {
    present(value)
        .map(|value| as_object(value, path))
        .transpose()
}

fn required_str<'a>(object: &'a Object, parent: &str, field: &str) -> Result<&'a str, KubeError> {
    let path = join(parent, field);
    match present(object.get(field)) {
        Some(value) => {
            let text = as_str(value, &path)?;
            if text.is_empty() {
                return Err(malformed(&path, "empty".to_owned()));
            }
            Ok(text)
        }
        None => Err(malformed(&path, "missing".to_owned())),
    }
}

fn optional_i64(object: &Object, parent: &str, field: &str) -> Result<Option<i64>, KubeError> {
    match present(object.get(field)) {
        None => Ok(None),
        Some(value) => match value {
            Value::Number(number) => match number.as_i64() {
                Some(number) => Ok(Some(number)),
                None if number.is_f64() => Err(malformed(
                    &join(parent, field),
                    "expected an integer, found a fractional number".to_owned(),
                )),
                None => Err(malformed(
                    &join(parent, field),
                    "expected an integer, found a number out of range".to_owned(),
                )),
            },
            other => Err(wrong_type(&join(parent, field), "an integer", other)),
        },
    }
}

fn as_object<'a>(value: &'a Value, path: &str) -> Result<&'a Object, KubeError> {
    value
        .as_object()
        .ok_or_else(|| wrong_type(path, "an object", value))
}

fn as_str<'a>(value: &'a Value, path: &str) -> Result<&'a str, KubeError> {
    value
        .as_str()
        .ok_or_else(|| wrong_type(path, "a string", value))
}

fn wrong_type(path: &str, expected: &str, found: &Value) -> KubeError {
    malformed(
        path,
        format!("expected {expected}, found {}", json_kind(found)),
    )
}

fn malformed(path: &str, problem: String) -> KubeError {
    KubeError::MalformedPod {
        path: path.to_owned(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Value {
        let text = match name {
            "sidecar" => include_str!("../../tests/fixtures/kube/sidecar-pod.json"),
            "native" => include_str!("../../tests/fixtures/kube/native-sidecar-pod.json"),
            "gateway" => include_str!("../../tests/fixtures/kube/gateway-pod.json"),
            "custom-ids" => include_str!("../../tests/fixtures/kube/custom-ids-pod.json"),
            "userns" => include_str!("../../tests/fixtures/kube/user-namespace-pod.json"),
            "plain" => include_str!("../../tests/fixtures/kube/plain-pod.json"),
            "istio-init" => include_str!("../../tests/fixtures/kube/istio-init-pod.json"),
            other => panic!("no fixture {other}"),
        };
        serde_json::from_str(text).expect("fixture is JSON")
    }

    fn meta(name: &str) -> PodMeta {
        pod_meta_from_json(&fixture(name)).expect("fixture maps")
    }

    fn spec(meta: &PodMeta) -> &PodSpecFacts {
        meta.spec.as_ref().expect("the API always yields a spec")
    }

    fn proxy(meta: &PodMeta) -> &ProxyContainer {
        spec(meta).proxy.as_ref().expect("pod has istio-proxy")
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|item| item.to_string()).collect()
    }

    fn malformed_path(value: Value) -> (String, String) {
        match pod_meta_from_json(&value) {
            Err(KubeError::MalformedPod { path, problem }) => (path, problem),
            other => panic!("expected MalformedPod, got {other:?}"),
        }
    }

    #[test]
    fn injected_sidecar_pod() {
        let pod = meta("sidecar");
        assert_eq!(pod.namespace, "bookinfo");
        assert_eq!(pod.name, "reviews-v1-7d9c8f5b6-x2k4p");
        let labels = pod.labels.as_ref().unwrap();
        assert_eq!(labels["app"], "reviews");
        assert_eq!(labels["security.istio.io/tlsMode"], "istio");
        let annotations = pod.annotations.as_ref().unwrap();
        assert!(annotations["sidecar.istio.io/status"].contains("\"istio-validation\""));
        assert_eq!(
            annotations["traffic.sidecar.istio.io/excludeOutboundPorts"],
            "5432"
        );

        let spec = spec(&pod);
        assert_eq!(spec.init_containers, strings(&["istio-validation"]));
        assert_eq!(spec.containers, strings(&["reviews", "istio-proxy"]));
        assert_eq!(spec.host_users, None);

        let proxy = proxy(&pod);
        assert_eq!(proxy.proxy_type(), Some("sidecar"));
        assert_eq!(proxy.args.len(), 7);
        assert_eq!(proxy.args[3], "$(POD_NAMESPACE).svc.cluster.local");
        assert_eq!(proxy.env["ISTIO_META_DNS_CAPTURE"], "true");
        assert_eq!(proxy.env["ISTIO_META_INTERCEPTION_MODE"], "REDIRECT");
        assert_eq!(proxy.env["ISTIO_META_APP_CONTAINERS"], "reviews");
        assert!(
            proxy.env["PROXY_CONFIG"].ends_with('\n'),
            "values are kept verbatim"
        );
        // valueFrom entries cannot be resolved from the pod alone.
        for unresolved in ["POD_NAME", "POD_NAMESPACE", "INSTANCE_IP", "GOMEMLIMIT"] {
            assert!(!proxy.env.contains_key(unresolved), "{unresolved}");
        }
        assert_eq!(proxy.run_as_user, Some(1337));
        assert_eq!(proxy.run_as_group, Some(1337));
    }

    #[test]
    fn native_sidecar_is_an_init_container() {
        let pod = meta("native");
        let spec = spec(&pod);
        assert_eq!(
            spec.init_containers,
            strings(&["istio-validation", "istio-proxy"])
        );
        assert_eq!(spec.containers, strings(&["ratings"]));
        assert!(spec.has_container(ISTIO_PROXY));
        let proxy = proxy(&pod);
        assert_eq!(proxy.proxy_type(), Some("sidecar"));
        assert_eq!(proxy.env["ISTIO_META_ENABLE_HBONE"], "true");
        assert_eq!(
            (proxy.run_as_user, proxy.run_as_group),
            (Some(1337), Some(1337))
        );
    }

    #[test]
    fn gateway_maps_exactly() {
        let pod = meta("gateway");
        let expected_labels = [
            ("app", "istio-ingressgateway"),
            ("istio", "ingressgateway"),
            ("service.istio.io/canonical-name", "istio-ingressgateway"),
            ("service.istio.io/canonical-revision", "latest"),
            ("sidecar.istio.io/inject", "true"),
        ];
        assert_eq!(
            pod.labels,
            Some(
                expected_labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            )
        );
        assert_eq!(pod.annotations.as_ref().unwrap().len(), 6);
        let expected_env = [
            ("CA_ADDR", "istiod.istio-system.svc:15012"),
            ("ISTIO_META_CLUSTER_ID", "Kubernetes"),
            ("ISTIO_META_WORKLOAD_NAME", "istio-ingressgateway"),
            ("PILOT_CERT_PROVIDER", "istiod"),
        ];
        assert_eq!(
            pod.spec,
            Some(PodSpecFacts {
                init_containers: vec![],
                containers: strings(&["istio-proxy"]),
                proxy: Some(ProxyContainer {
                    env: expected_env
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    args: strings(&[
                        "proxy",
                        "router",
                        "--domain",
                        "$(POD_NAMESPACE).svc.cluster.local",
                        "--proxyLogLevel=warning",
                        "--proxyComponentLogLevel=misc:error",
                        "--log_output_level=default:info",
                    ]),
                    run_as_user: Some(1337),
                    run_as_group: Some(1337),
                }),
                host_users: None,
            })
        );
        assert_eq!(proxy(&pod).proxy_type(), Some("router"));
    }

    #[test]
    fn custom_ids_fall_back_to_the_pod_security_context() {
        let pod = meta("custom-ids");
        let proxy = proxy(&pod);
        // The container sets runAsUser; runAsGroup comes from the pod level.
        assert_eq!(proxy.run_as_user, Some(4242));
        assert_eq!(proxy.run_as_group, Some(3000));
        // The last of two entries with one name wins, as in Kubernetes.
        assert_eq!(proxy.env["ISTIO_META_DNS_CAPTURE"], "true");
    }

    #[test]
    fn user_namespace_pod() {
        let pod = meta("userns");
        assert_eq!(spec(&pod).host_users, Some(false));
        assert_eq!(proxy(&pod).run_as_user, Some(1337));
        assert!(proxy(&pod).env.is_empty());
    }

    #[test]
    fn pod_without_proxy() {
        let pod = meta("plain");
        assert_eq!(pod.namespace, "default");
        assert_eq!(pod.name, "web-0");
        // The API's answer is authoritative: no annotations is an empty map.
        assert_eq!(pod.annotations, Some(BTreeMap::new()));
        assert_eq!(pod.labels.as_ref().unwrap()["app"], "web");
        let spec = spec(&pod);
        assert_eq!(spec.proxy, None);
        assert!(spec.init_containers.is_empty());
        assert_eq!(spec.containers, strings(&["nginx"]));
        assert_eq!(spec.host_users, Some(true));
    }

    #[test]
    fn iptables_mode_pod_lists_istio_init() {
        let pod = meta("istio-init");
        let spec = spec(&pod);
        assert!(spec.has_container(crate::policy::pod_meta::ISTIO_INIT));
        assert_eq!(proxy(&pod).proxy_type(), Some("sidecar"));
    }

    fn minimal(spec: Value) -> Value {
        json!({"metadata": {"namespace": "ns", "name": "p"}, "spec": spec})
    }

    #[test]
    fn minimal_pod_without_kind_or_containers() {
        let pod = pod_meta_from_json(&minimal(json!({}))).unwrap();
        assert_eq!(
            pod,
            PodMeta {
                namespace: "ns".into(),
                name: "p".into(),
                annotations: Some(BTreeMap::new()),
                labels: Some(BTreeMap::new()),
                spec: Some(PodSpecFacts::default()),
            }
        );
    }

    #[test]
    fn nulls_read_as_absent() {
        let value = json!({
            "kind": null,
            "metadata": {"namespace": "ns", "name": "p", "labels": null, "annotations": null},
            "spec": {
                "initContainers": null,
                "hostUsers": null,
                "securityContext": null,
                "containers": [{
                    "name": "istio-proxy", "env": null, "args": null, "securityContext": null
                }]
            }
        });
        let pod = pod_meta_from_json(&value).unwrap();
        assert_eq!(pod.labels, Some(BTreeMap::new()));
        assert_eq!(spec(&pod).proxy, Some(ProxyContainer::default()));
    }

    #[test]
    fn env_entries_follow_kubernetes_semantics() {
        let pod = pod_meta_from_json(&minimal(json!({
            "containers": [{
                "name": "istio-proxy",
                "env": [
                    {"name": "EMPTY"},
                    {"name": "SHADOWED", "value": "literal"},
                    {"name": "SHADOWED", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
                    {"name": "RESTORED", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "RESTORED", "value": "again"}
                ],
                "envFrom": [{"configMapRef": {"name": "not-resolved"}}]
            }]
        })))
        .unwrap();
        let env = &proxy(&pod).env;
        assert_eq!(env.get("EMPTY").map(String::as_str), Some(""));
        assert_eq!(env.get("SHADOWED"), None);
        assert_eq!(env.get("RESTORED").map(String::as_str), Some("again"));
        assert_eq!(env.len(), 2);
    }

    #[test]
    fn only_the_proxy_container_is_read_in_depth() {
        // A malformed env in an application container is not meshlane's concern.
        let pod = pod_meta_from_json(&minimal(json!({
            "containers": [{"name": "app", "env": "not a list", "securityContext": 7}]
        })))
        .unwrap();
        assert_eq!(spec(&pod).containers, strings(&["app"]));
    }

    #[test]
    fn container_ids_prefer_the_container_then_the_pod() {
        let cases = [
            (json!(null), json!(null), (None, None)),
            (json!({"runAsUser": 1}), json!(null), (Some(1), None)),
            (
                json!(null),
                json!({"runAsUser": 5, "runAsGroup": 6}),
                (Some(5), Some(6)),
            ),
            (
                json!({"runAsGroup": 2}),
                json!({"runAsUser": 5, "runAsGroup": 6}),
                (Some(5), Some(2)),
            ),
            (
                json!({"runAsUser": 0, "runAsGroup": 0}),
                json!({"runAsUser": 5}),
                (Some(0), Some(0)),
            ),
        ];
        for (container, pod, expected) in cases {
            let value = minimal(json!({
                "securityContext": pod,
                "containers": [{"name": "istio-proxy", "securityContext": container}]
            }));
            let meta = pod_meta_from_json(&value).unwrap();
            let proxy = proxy(&meta);
            assert_eq!((proxy.run_as_user, proxy.run_as_group), expected, "{value}");
        }
    }

    #[test]
    fn malformed_documents_name_the_path() {
        let proxy_with = |field: &str, value: Value| {
            let mut container = json!({"name": "istio-proxy"});
            container[field] = value;
            minimal(json!({"containers": [{"name": "app"}, container]}))
        };
        let cases: Vec<(Value, &str, &str)> = vec![
            (
                json!([]),
                "(document)",
                "expected an object, found an array",
            ),
            (
                json!({"kind": "Status", "metadata": {}, "spec": {}}),
                "kind",
                "expected \"Pod\", found \"Status\"",
            ),
            (
                json!({"kind": 3}),
                "kind",
                "expected a string, found a number",
            ),
            (json!({"spec": {}}), "metadata", "missing"),
            (
                json!({"metadata": {"name": "p"}, "spec": {}}),
                "metadata.namespace",
                "missing",
            ),
            (
                json!({"metadata": {"namespace": "ns", "name": ""}, "spec": {}}),
                "metadata.name",
                "empty",
            ),
            (
                json!({"metadata": {"namespace": "ns", "name": "p"}}),
                "spec",
                "missing",
            ),
            (
                json!({"metadata": {"namespace": "ns", "name": "p", "labels": {"app": 1}}, "spec": {}}),
                "metadata.labels[\"app\"]",
                "expected a string, found a number",
            ),
            (
                json!({"metadata": {"namespace": "ns", "name": "p",
                       "annotations": {"sidecar.istio.io/status": {"x": 1}}}, "spec": {}}),
                "metadata.annotations[\"sidecar.istio.io/status\"]",
                "expected a string, found an object",
            ),
            (
                minimal(json!({"containers": {}})),
                "spec.containers",
                "expected an array, found an object",
            ),
            (
                minimal(json!({"initContainers": [{"image": "x"}]})),
                "spec.initContainers[0].name",
                "missing",
            ),
            (
                minimal(json!({"containers": ["istio-proxy"]})),
                "spec.containers[0]",
                "expected an object, found a string",
            ),
            (
                minimal(json!({"hostUsers": "false"})),
                "spec.hostUsers",
                "expected a boolean, found a string",
            ),
            (
                proxy_with("args", json!("proxy sidecar")),
                "spec.containers[1].args",
                "expected an array, found a string",
            ),
            (
                proxy_with("args", json!(["proxy", 1])),
                "spec.containers[1].args[1]",
                "expected a string, found a number",
            ),
            (
                proxy_with("env", json!([{"name": "A", "value": true}])),
                "spec.containers[1].env[0].value",
                "expected a string, found a boolean",
            ),
            (
                proxy_with("env", json!([{"value": "x"}])),
                "spec.containers[1].env[0].name",
                "missing",
            ),
            (
                proxy_with("securityContext", json!({"runAsUser": "1337"})),
                "spec.containers[1].securityContext.runAsUser",
                "expected an integer, found a string",
            ),
            (
                proxy_with("securityContext", json!({"runAsGroup": 13.5})),
                "spec.containers[1].securityContext.runAsGroup",
                "expected an integer, found a fractional number",
            ),
            (
                proxy_with("securityContext", json!({"runAsUser": u64::MAX})),
                "spec.containers[1].securityContext.runAsUser",
                "expected an integer, found a number out of range",
            ),
            (
                minimal(json!({"securityContext": {"runAsUser": []},
                               "containers": [{"name": "istio-proxy"}]})),
                "spec.securityContext.runAsUser",
                "expected an integer, found an array",
            ),
        ];
        for (value, path, problem) in cases {
            assert_eq!(
                malformed_path(value.clone()),
                (path.to_owned(), problem.to_owned()),
                "{value}"
            );
        }
    }

    #[test]
    fn error_message_reads_for_an_operator() {
        let err = pod_meta_from_json(&minimal(json!({"hostUsers": 1}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed Pod JSON at spec.hostUsers: expected a boolean, found a number"
        );
    }
}
