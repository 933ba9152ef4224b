//! Linkerd's decision of which pods a CNI plugin captures, in the order its own
//! linkerd-cni applies it (docs/meshes.md, "Which pods", L1–L3).

use super::pod_meta::PodMeta;
use super::selection::Selection;

/// Linkerd's proxy container (a regular or a native-sidecar container).
pub const LINKERD_PROXY: &str = "linkerd-proxy";
/// The init container of Linkerd's iptables mode: a pod that has it programs its
/// own rules.
pub const LINKERD_INIT: &str = "linkerd-init";
/// The injector's mark on every pod it injected.
pub const PROXY_VERSION: &str = "linkerd.io/proxy-version";

/// A Linkerd pod that must be classified from its containers, which only the API
/// knows: ADD fails (fail closed) rather than guess whether it has linkerd-init.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0} carries {PROXY_VERSION} (injected by Linkerd) but its spec is unknown (no kubeconfig \
     configured to read the pod): cannot tell whether it has a linkerd-init container"
)]
pub struct NoSpec(pub String);

/// L2–L3, for a pod inside every mesh's reach (L1 and the excluded namespaces
/// are `PodMeta::outside_every_mesh`, which `selection::select` applies first).
pub fn decide(pod: &PodMeta) -> Result<Selection, NoSpec> {
    let skip = |why: &str| Ok(Selection::Skip(why.to_owned()));
    let Some(spec) = &pod.spec else {
        // Without the spec, only a pod the injector did not mark is known to be
        // none of Linkerd's.
        return match &pod.annotations {
            Some(annotations) if !annotations.contains_key(PROXY_VERSION) => {
                skip("not injected by Linkerd (no linkerd.io/proxy-version annotation)")
            }
            _ => Err(NoSpec(format!("{}/{}", pod.namespace, pod.name))),
        };
    };
    match spec.outside_cni_mode("Linkerd", LINKERD_INIT, LINKERD_PROXY) {
        Some(why) => skip(&why),
        None => Ok(Selection::Capture),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_spec(init: &[&str], containers: &[&str]) -> PodMeta {
        PodMeta::with_annotations(&[(PROXY_VERSION, "edge-26.8.3")])
            .with_containers(init, containers)
    }

    fn captured(pod: &PodMeta) -> bool {
        decide(pod).unwrap() == Selection::Capture
    }

    #[test]
    fn a_pod_injected_in_cni_mode_is_captured() {
        assert!(captured(&with_spec(
            &["linkerd-network-validator"],
            &["app", LINKERD_PROXY]
        )));
        // A native sidecar: linkerd-proxy among the init containers.
        assert!(captured(&with_spec(&[LINKERD_PROXY], &["app"])));
    }

    #[test]
    fn pods_linkerd_leaves_alone() {
        let cases = [
            (
                "linkerd-init",
                with_spec(&[LINKERD_INIT], &["app", LINKERD_PROXY]),
            ),
            ("no linkerd-proxy", with_spec(&[], &["app"])),
            ("an Istio pod", with_spec(&[], &["app", "istio-proxy"])),
            (
                "a Kuma pod without its spec",
                PodMeta::with_annotations(&[("kuma.io/sidecar-injected", "true")]),
            ),
            ("nothing", PodMeta::with_annotations(&[])),
        ];
        for (case, pod) in cases {
            assert!(!captured(&pod), "{case}");
        }
    }

    #[test]
    fn an_injected_pod_without_its_spec_cannot_be_classified() {
        let mut unknown = with_spec(&[], &[]);
        unknown.spec = None;
        let err = decide(&unknown).unwrap_err();
        assert!(err.to_string().contains("shop/web-0"), "{err}");
        unknown.annotations = None;
        assert!(decide(&unknown).is_err());
    }
}
