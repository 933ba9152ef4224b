//! Istio's decision of which pods a CNI plugin captures (docs/istio-capture.md, "Which
//! pods", S1–S7), in the order Istio's own CNI plugin applies it. Facts that live only
//! in the pod spec are used when the API provided them; from annotations alone the
//! `sidecar.istio.io/status` annotation tells what the injector added.

use std::collections::BTreeMap;

use super::annotations::{
    parse_go_bool, AMBIENT_REDIRECTION, INTERCEPTION_MODE, SIDECAR_INJECT, SIDECAR_STATUS,
};
use super::pod_meta::{PodMeta, ISTIO_INIT, ISTIO_PROXY};

/// What Istio's rules say about one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IstioVerdict {
    Capture,
    Skip(String),
}

/// A pod that must be captured but cannot be: ADD fails (fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnclassifiedPod {
    #[error(
        "the runtime passed no pod annotations (it lacks the io.kubernetes.cri.pod-annotations \
         capability) and no kubeconfig is configured to read the pod: cannot tell whether \
         {0} has a sidecar"
    )]
    NoAnnotations(String),
    #[error(
        "{pod}: annotation sidecar.istio.io/interceptionMode={mode:?} is not supported \
         (meshlane captures in REDIRECT mode; use REDIRECT, or NONE for no capture)"
    )]
    InterceptionMode { pod: String, mode: String },
    #[error(
        "{0} runs in a user namespace (hostUsers: false): meshlane cannot identify its \
         proxy's UID there yet, and will not risk capturing the proxy's own traffic"
    )]
    UserNamespace(String),
    #[error("{pod}: annotation sidecar.istio.io/status is not valid JSON: {problem}")]
    BadStatus { pod: String, problem: String },
}

/// What `sidecar.istio.io/status` says the injector added.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct InjectionStatus {
    init_containers: Vec<String>,
    containers: Vec<String>,
    templates: Vec<String>,
}

/// S2–S7, for a pod inside every mesh's reach (S1 and "not a Kubernetes pod" are
/// `PodMeta::outside_every_mesh`, which `selection::select` applies first).
pub fn decide(pod: &PodMeta) -> Result<IstioVerdict, UnclassifiedPod> {
    let id = format!("{}/{}", pod.namespace, pod.name);
    let skip = |why: &str| Ok(IstioVerdict::Skip(why.to_owned()));
    let Some(annotations) = &pod.annotations else {
        return Err(UnclassifiedPod::NoAnnotations(id));
    };
    if pod.spec.is_none() && !annotations.contains_key(SIDECAR_STATUS) {
        // Without the spec, the injector's annotation is the only sign of a sidecar.
        return skip("not injected (no sidecar.istio.io/status annotation)");
    }
    let status = injection_status(annotations, &id)?;

    // iptables mode owns pods that carry istio-init.
    let has_istio_init = match &pod.spec {
        Some(spec) => spec.has_container(ISTIO_INIT),
        None => status.init_containers.iter().any(|c| c == ISTIO_INIT),
    };
    if has_istio_init {
        return skip("it has an istio-init container (iptables mode captures it)");
    }
    if let Some(proxy) = pod.spec.as_ref().and_then(|spec| spec.proxy.as_ref()) {
        if proxy
            .env
            .get("DISABLE_ENVOY")
            .and_then(|v| parse_go_bool(v))
            == Some(true)
        {
            return skip("its istio-proxy sets DISABLE_ENVOY");
        }
    }
    let has_proxy = match &pod.spec {
        Some(spec) => spec.has_container(ISTIO_PROXY),
        None => status
            .containers
            .iter()
            .chain(&status.init_containers)
            .any(|c| c == ISTIO_PROXY),
    };
    if !has_proxy {
        return skip("it has no istio-proxy container");
    }
    let proxy_type = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.proxy.as_ref())
        .and_then(|proxy| proxy.proxy_type());
    if proxy_type.is_some_and(|kind| kind != "sidecar") {
        return skip("its proxy is not a sidecar (a gateway)");
    }
    if status.templates.iter().any(|t| t == "gateway") {
        return skip("it was injected with the gateway template");
    }
    // The label is the newer API and wins over the annotation.
    let inject = pod
        .labels
        .as_ref()
        .and_then(|labels| labels.get(SIDECAR_INJECT))
        .or_else(|| annotations.get(SIDECAR_INJECT));
    if inject.and_then(|v| parse_go_bool(v)) == Some(false) {
        return skip("sidecar.istio.io/inject is false");
    }
    if !annotations.contains_key(SIDECAR_STATUS) {
        return skip("no sidecar.istio.io/status annotation (not injected)");
    }
    if annotations.get(AMBIENT_REDIRECTION).map(String::as_str) == Some("enabled") {
        return skip("it is enrolled in ambient mode");
    }
    match annotations.get(INTERCEPTION_MODE).map(String::as_str) {
        None | Some("REDIRECT") => {}
        Some("NONE") => return skip("its interception mode is NONE"),
        Some(mode) => {
            return Err(UnclassifiedPod::InterceptionMode {
                pod: id,
                mode: mode.to_owned(),
            })
        }
    }
    if pod.spec.as_ref().and_then(|spec| spec.host_users) == Some(false) {
        return Err(UnclassifiedPod::UserNamespace(id));
    }
    Ok(IstioVerdict::Capture)
}

fn injection_status(
    annotations: &BTreeMap<String, String>,
    id: &str,
) -> Result<InjectionStatus, UnclassifiedPod> {
    match annotations.get(SIDECAR_STATUS) {
        None => Ok(InjectionStatus::default()),
        Some(text) => serde_json::from_str(text).map_err(|err| UnclassifiedPod::BadStatus {
            pod: id.to_owned(),
            problem: err.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::pod_meta::{PodSpecFacts, ProxyContainer};

    const STATUS: &str = r#"{"initContainers":["istio-validation"],"containers":["istio-proxy"],"volumes":["istio-envoy"],"imagePullSecrets":null,"templates":["sidecar"],"revision":"default"}"#;

    fn pod(annotations: &[(&str, &str)]) -> PodMeta {
        PodMeta::with_annotations(annotations)
    }

    fn injected(extra: &[(&str, &str)]) -> PodMeta {
        let mut annotations = vec![(SIDECAR_STATUS, STATUS)];
        annotations.extend_from_slice(extra);
        pod(&annotations)
    }

    fn spec_with_proxy(proxy: ProxyContainer) -> PodSpecFacts {
        PodSpecFacts {
            init_containers: vec!["istio-validation".into()],
            containers: vec!["app".into(), ISTIO_PROXY.into()],
            proxy: Some(proxy),
            host_users: None,
        }
    }

    fn sidecar_proxy() -> ProxyContainer {
        ProxyContainer {
            args: vec!["proxy".into(), "sidecar".into()],
            ..Default::default()
        }
    }

    fn verdict(pod: &PodMeta) -> IstioVerdict {
        decide(pod).unwrap()
    }

    #[test]
    fn an_injected_sidecar_pod_is_captured() {
        assert_eq!(verdict(&injected(&[])), IstioVerdict::Capture);
        assert_eq!(
            verdict(&injected(&[(INTERCEPTION_MODE, "REDIRECT")])),
            IstioVerdict::Capture
        );
    }

    #[test]
    fn pods_istio_leaves_alone() {
        let with_istio_init = pod(&[(
            SIDECAR_STATUS,
            r#"{"initContainers":["istio-init"],"containers":["istio-proxy"]}"#,
        )]);
        let gateway = pod(&[(
            SIDECAR_STATUS,
            r#"{"containers":["istio-proxy"],"templates":["gateway"]}"#,
        )]);
        let no_proxy = pod(&[(SIDECAR_STATUS, r#"{"containers":["app"]}"#)]);
        let cases = [
            ("not injected", pod(&[])),
            ("istio-init", with_istio_init),
            ("gateway template", gateway),
            ("no istio-proxy", no_proxy),
            ("inject false", injected(&[(SIDECAR_INJECT, "false")])),
            ("ambient", injected(&[(AMBIENT_REDIRECTION, "enabled")])),
            (
                "interception NONE",
                injected(&[(INTERCEPTION_MODE, "NONE")]),
            ),
        ];
        for (case, pod) in cases {
            assert!(matches!(verdict(&pod), IstioVerdict::Skip(_)), "{case}");
        }
    }

    #[test]
    fn the_inject_label_wins_over_the_annotation() {
        let mut pod = injected(&[(SIDECAR_INJECT, "true")]);
        pod.labels = Some(BTreeMap::from([(
            SIDECAR_INJECT.to_string(),
            "false".to_string(),
        )]));
        assert!(matches!(verdict(&pod), IstioVerdict::Skip(_)));
        let mut pod = injected(&[(SIDECAR_INJECT, "false")]);
        pod.labels = Some(BTreeMap::from([(
            SIDECAR_INJECT.to_string(),
            "true".to_string(),
        )]));
        assert_eq!(verdict(&pod), IstioVerdict::Capture);
    }

    #[test]
    fn spec_facts_override_what_the_status_annotation_suggests() {
        let mut gateway = injected(&[]);
        gateway.spec = Some(spec_with_proxy(ProxyContainer {
            args: vec!["proxy".into(), "router".into()],
            ..Default::default()
        }));
        assert!(matches!(verdict(&gateway), IstioVerdict::Skip(_)));

        let mut disabled = injected(&[]);
        disabled.spec = Some(spec_with_proxy(ProxyContainer {
            env: BTreeMap::from([("DISABLE_ENVOY".into(), "true".into())]),
            ..sidecar_proxy()
        }));
        assert!(matches!(verdict(&disabled), IstioVerdict::Skip(_)));

        // A native sidecar: istio-proxy among the init containers.
        let mut native = injected(&[]);
        native.spec = Some(PodSpecFacts {
            init_containers: vec!["istio-validation".into(), ISTIO_PROXY.into()],
            containers: vec!["app".into()],
            proxy: Some(sidecar_proxy()),
            host_users: None,
        });
        assert_eq!(verdict(&native), IstioVerdict::Capture);
    }

    #[test]
    fn pods_that_cannot_be_captured_safely_are_errors() {
        let mut no_annotations = injected(&[]);
        no_annotations.annotations = None;
        assert!(matches!(
            decide(&no_annotations),
            Err(UnclassifiedPod::NoAnnotations(_))
        ));
        let tproxy = injected(&[(INTERCEPTION_MODE, "TPROXY")]);
        let err = decide(&tproxy).unwrap_err();
        assert!(err.to_string().contains("TPROXY"), "{err}");
        let bogus = injected(&[(INTERCEPTION_MODE, "SIDEWAYS")]);
        assert!(matches!(
            decide(&bogus),
            Err(UnclassifiedPod::InterceptionMode { .. })
        ));
        let mut userns = injected(&[]);
        userns.spec = Some(PodSpecFacts {
            host_users: Some(false),
            ..spec_with_proxy(sidecar_proxy())
        });
        assert!(matches!(
            decide(&userns),
            Err(UnclassifiedPod::UserNamespace(_))
        ));
        let broken = pod(&[(SIDECAR_STATUS, "{not json")]);
        assert!(matches!(
            decide(&broken),
            Err(UnclassifiedPod::BadStatus { .. })
        ));
    }
}
