//! The Pod JSON the API server returns (`pod_meta_from_json`).

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::json;
use crate::kube::error::KubeError;
use crate::kube::pod_json::pod_meta_from_json;

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map("[a-z./-]{1,20}", json::text(), 0..5)
}

/// A Pod as the API serves it, with the parts meshlane reads.
fn pod() -> impl Strategy<Value = Value> {
    (
        "[a-z0-9-]{1,20}",
        "[a-z0-9.-]{1,30}",
        labels(),
        labels(),
        prop::collection::vec("[a-z-]{1,10}", 0..3),
        any::<bool>(),
    )
        .prop_map(|(namespace, name, labels, annotations, containers, proxy)| {
            let mut list: Vec<Value> = containers.iter().map(|c| json!({"name": c})).collect();
            if proxy {
                list.push(json!({"name": "istio-proxy", "securityContext": {"runAsUser": 1337}}));
            }
            json!({
                "kind": "Pod",
                "metadata": {"namespace": namespace, "name": name, "labels": labels, "annotations": annotations},
                "spec": {"containers": list},
            })
        })
}

/// A JSON path into the document, for a value placed there.
fn place(doc: &mut Value, path: &[&str], value: Value) {
    let mut at = doc;
    for key in &path[..path.len() - 1] {
        at = &mut at[*key];
    }
    at[path[path.len() - 1]] = value;
}

proptest! {
    #![proptest_config(super::config(2000))]

    #[test]
    fn any_document_maps_or_is_malformed_at_a_path(doc in json::value()) {
        match pod_meta_from_json(&doc) {
            Ok(_) => {}
            Err(KubeError::MalformedPod { path, problem }) => {
                prop_assert!(!path.is_empty() && !problem.is_empty());
            }
            Err(other) => prop_assert!(false, "not a MalformedPod: {other:?}"),
        }
    }

    #[test]
    fn any_value_anywhere_in_a_pod_maps_or_is_named(
        doc in pod(),
        path in prop::sample::select(vec![
            vec!["kind"],
            vec!["metadata", "namespace"],
            vec!["metadata", "name"],
            vec!["metadata", "labels"],
            vec!["metadata", "annotations"],
            vec!["spec", "containers"],
            vec!["spec", "initContainers"],
        ]),
        value in json::value(),
    ) {
        let mut doc = doc;
        place(&mut doc, &path, value);
        if let Err(err) = pod_meta_from_json(&doc) {
            let KubeError::MalformedPod { path: at, .. } = &err else {
                return Err(TestCaseError::fail(format!("not a MalformedPod: {err:?}")));
            };
            // The culprit's path, or a path inside it.
            let named = path.join(".");
            prop_assert!(at.starts_with(&named) || named.starts_with(at.as_str()), "{named} vs {err}");
        }
    }

    #[test]
    fn valid_pods_round_trip(doc in pod()) {
        let meta = pod_meta_from_json(&doc).unwrap();
        prop_assert_eq!(&meta.namespace, doc["metadata"]["namespace"].as_str().unwrap());
        prop_assert_eq!(&meta.name, doc["metadata"]["name"].as_str().unwrap());
        let annotations: BTreeMap<String, String> =
            serde_json::from_value(doc["metadata"]["annotations"].clone()).unwrap();
        prop_assert_eq!(meta.annotations, Some(annotations));
        let has_proxy = doc["spec"]["containers"].as_array().unwrap().iter().any(|c| c["name"] == "istio-proxy");
        prop_assert_eq!(meta.spec.unwrap().proxy.is_some(), has_proxy);
    }
}
