//! Kuma's decision of which pods a CNI plugin captures, in the order its own
//! kuma-cni applies it (docs/meshes.md, "Which pods", K1–K5).

use super::pod_meta::PodMeta;
use super::selection::Selection;

/// Kuma's data plane proxy container (a regular or a native-sidecar container).
pub const KUMA_SIDECAR: &str = "kuma-sidecar";
/// The init container of Kuma's iptables mode: a pod that has it programs its own rules.
pub const KUMA_INIT: &str = "kuma-init";
/// The injector's mark on every pod it injected.
pub const SIDECAR_INJECTED: &str = "kuma.io/sidecar-injected";
/// Written by the injector only in CNI mode, i.e. when it adds no kuma-init.
pub const CNI_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
pub const KUMA_CNI: &str = "kuma-cni";

/// A Kuma pod that must be captured but cannot be classified: ADD fails (fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the runtime passed no pod annotations and no kubeconfig is configured to read the \
     pod: cannot tell whether {0} has a Kuma sidecar"
)]
pub struct NoAnnotations(pub String);

/// K3–K5, for a pod inside every mesh's reach (K1 and K2 are
/// `PodMeta::outside_every_mesh`, which `selection::select` applies first).
pub fn decide(pod: &PodMeta) -> Result<Selection, NoAnnotations> {
    let skip = |why: &str| Ok(Selection::Skip(why.to_owned()));
    let Some(annotations) = &pod.annotations else {
        return Err(NoAnnotations(format!("{}/{}", pod.namespace, pod.name)));
    };
    match &pod.spec {
        Some(spec) => {
            if let Some(why) = spec.outside_cni_mode("Kuma", KUMA_INIT, KUMA_SIDECAR) {
                return skip(&why);
            }
        }
        // Without the spec, the injector's CNI-mode annotation stands for "a
        // kuma-sidecar and no kuma-init".
        None => {
            if annotations.get(CNI_NETWORKS).map(String::as_str) != Some(KUMA_CNI) {
                return skip(
                    "not injected for Kuma's CNI mode (no k8s.v1.cni.cncf.io/networks: kuma-cni)",
                );
            }
        }
    }
    if annotations.get(SIDECAR_INJECTED).map(String::as_str) != Some("true") {
        return skip("kuma.io/sidecar-injected is not \"true\"");
    }
    Ok(Selection::Capture)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(annotations: &[(&str, &str)]) -> PodMeta {
        PodMeta::with_annotations(annotations)
    }

    fn injected() -> PodMeta {
        pod(&[(SIDECAR_INJECTED, "true"), (CNI_NETWORKS, KUMA_CNI)])
    }

    fn with_spec(init: &[&str], containers: &[&str]) -> PodMeta {
        pod(&[(SIDECAR_INJECTED, "true")]).with_containers(init, containers)
    }

    fn captured(pod: &PodMeta) -> bool {
        decide(pod).unwrap() == Selection::Capture
    }

    #[test]
    fn a_pod_injected_in_cni_mode_is_captured() {
        assert!(captured(&injected()));
        assert!(captured(&with_spec(
            &["kuma-validation"],
            &["app", KUMA_SIDECAR]
        )));
        // A native sidecar: kuma-sidecar among the init containers.
        assert!(captured(&with_spec(&[KUMA_SIDECAR], &["app"])));
    }

    #[test]
    fn pods_kuma_leaves_alone() {
        let cases = [
            ("kuma-init", with_spec(&[KUMA_INIT], &["app", KUMA_SIDECAR])),
            ("no kuma-sidecar", with_spec(&[], &["app"])),
            (
                "injected without CNI mode",
                pod(&[(SIDECAR_INJECTED, "true")]),
            ),
            (
                "injected false",
                pod(&[(SIDECAR_INJECTED, "false"), (CNI_NETWORKS, KUMA_CNI)]),
            ),
            (
                "another CNI network",
                pod(&[(SIDECAR_INJECTED, "true"), (CNI_NETWORKS, "macvlan")]),
            ),
            (
                "an Istio pod",
                pod(&[(
                    "sidecar.istio.io/status",
                    r#"{"containers":["istio-proxy"]}"#,
                )]),
            ),
            ("nothing", pod(&[])),
        ];
        for (case, pod) in cases {
            assert!(!captured(&pod), "{case}");
        }
    }

    #[test]
    fn a_pod_without_annotations_cannot_be_classified() {
        let mut unknown = injected();
        unknown.annotations = None;
        let err = decide(&unknown).unwrap_err();
        assert!(err.to_string().contains("shop/web-0"), "{err}");
    }
}
