//! Which pods are captured: the one place that decides. By default the configured
//! mesh's own rules (`istio_selection`, `kuma_selection`, `linkerd_selection`); the `capture` setting can
//! instead capture every pod, pods whose CNI_ARGS ask for it, or none.

use super::istio_selection::{self, IstioVerdict, UnclassifiedPod};
use super::kuma_selection;
use super::linkerd_selection;
use super::mesh::Mesh;
use super::pod_meta::PodMeta;

/// The `capture` key of the plugin configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CaptureMode {
    /// The configured mesh's selection: the pods its injector gave a sidecar
    /// (`istio_selection`, `kuma_selection`). Written `"mesh"`, or `"istio"` as
    /// before meshes other than Istio existed.
    #[default]
    Mesh,
    /// Every pod, except one whose CNI_ARGS carry `MESHLANE_CAPTURE=false`.
    All,
    /// Pods whose CNI_ARGS carry `MESHLANE_CAPTURE=true`.
    CniArgs,
    /// None (the plugin only passes results through).
    None,
}

impl CaptureMode {
    pub const KEY_VALUES: [(&'static str, CaptureMode); 5] = [
        ("mesh", CaptureMode::Mesh),
        ("istio", CaptureMode::Mesh),
        ("all", CaptureMode::All),
        ("cni-args", CaptureMode::CniArgs),
        ("none", CaptureMode::None),
    ];

    pub fn parse(text: &str) -> Option<Self> {
        super::by_keyword(&Self::KEY_VALUES, text)
    }
}

/// The CNI_ARGS key that asks for (or refuses) capture of one pod.
pub const CAPTURE_ARG: &str = "MESHLANE_CAPTURE";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Capture,
    Skip(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("CNI_ARGS {CAPTURE_ARG}={0:?} is not \"true\" or \"false\"")]
    BadCaptureArg(String),
    #[error(transparent)]
    Unclassified(#[from] UnclassifiedPod),
    #[error(transparent)]
    UnclassifiedKuma(#[from] kuma_selection::NoAnnotations),
    #[error(transparent)]
    UnclassifiedLinkerd(#[from] linkerd_selection::NoSpec),
}

/// What the CNI_ARGS switch says, if present.
pub fn capture_arg(cni_args: &[(String, String)]) -> Result<Option<bool>, SelectionError> {
    cni_args
        .iter()
        .rev()
        .find(|(key, _)| key == CAPTURE_ARG)
        .map(|(_, value)| match value.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(SelectionError::BadCaptureArg(other.to_owned())),
        })
        .transpose()
}

/// Decides whether the pod is captured.
pub fn select(
    mode: CaptureMode,
    mesh: Mesh,
    cni_args: &[(String, String)],
    pod: &PodMeta,
    excluded_namespaces: &[String],
) -> Result<Selection, SelectionError> {
    let asked = capture_arg(cni_args)?;
    let skip = |why: &str| Ok(Selection::Skip(why.to_owned()));
    match (mode, asked) {
        (CaptureMode::None, _) => skip("capture is \"none\" in the plugin configuration"),
        (CaptureMode::Mesh, _) => {
            if let Some(why) = pod.outside_every_mesh(excluded_namespaces) {
                return skip(why);
            }
            match mesh {
                Mesh::Istio => Ok(match istio_selection::decide(pod)? {
                    IstioVerdict::Capture => Selection::Capture,
                    IstioVerdict::Skip(why) => Selection::Skip(why),
                }),
                Mesh::Kuma => Ok(kuma_selection::decide(pod)?),
                Mesh::Linkerd => Ok(linkerd_selection::decide(pod)?),
            }
        }
        (_, Some(false)) => skip("CNI_ARGS has MESHLANE_CAPTURE=false"),
        (_, Some(true)) | (CaptureMode::All, None) => Ok(Selection::Capture),
        (CaptureMode::CniArgs, None) => skip("CNI_ARGS does not ask for capture"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::annotations::SIDECAR_STATUS;

    fn args(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod(injected: bool) -> PodMeta {
        let mut annotations = std::collections::BTreeMap::new();
        if injected {
            annotations.insert(
                SIDECAR_STATUS.to_string(),
                r#"{"containers":["istio-proxy"]}"#.to_string(),
            );
        }
        PodMeta {
            namespace: "default".into(),
            name: "web".into(),
            annotations: Some(annotations),
            ..Default::default()
        }
    }

    type Case = (
        CaptureMode,
        &'static [(&'static str, &'static str)],
        bool,
        bool,
    );

    #[test]
    fn the_decision_table() {
        use CaptureMode::*;
        // (mode, CNI_ARGS, pod injected, captured)
        let cases: [Case; 12] = [
            (Mesh, &[], true, true),
            (Mesh, &[], false, false),
            // The CNI_ARGS switch does not override Istio's decision.
            (Mesh, &[("MESHLANE_CAPTURE", "true")], false, false),
            (Mesh, &[("MESHLANE_CAPTURE", "false")], true, true),
            (CniArgs, &[], true, false),
            (CniArgs, &[("MESHLANE_CAPTURE", "true")], false, true),
            (CniArgs, &[("MESHLANE_CAPTURE", "false")], true, false),
            (All, &[], false, true),
            (All, &[("MESHLANE_CAPTURE", "false")], true, false),
            (All, &[("MESHLANE_CAPTURE", "true")], false, true),
            (None, &[("MESHLANE_CAPTURE", "true")], true, false),
            (
                CniArgs,
                &[("K8S_POD_NAME", "x"), ("MESHLANE_CAPTURE", "true")],
                false,
                true,
            ),
        ];
        for (mode, pairs, injected, captured) in cases {
            let selection = select(
                mode,
                crate::policy::Mesh::Istio,
                &args(pairs),
                &pod(injected),
                &[],
            )
            .unwrap();
            assert_eq!(
                selection == Selection::Capture,
                captured,
                "{mode:?} {pairs:?} injected={injected}"
            );
        }
    }

    #[test]
    fn no_mesh_captures_an_excluded_namespace_or_what_is_not_a_pod() {
        let kuma = PodMeta::with_annotations(&[
            (kuma_selection::SIDECAR_INJECTED, "true"),
            (kuma_selection::CNI_NETWORKS, kuma_selection::KUMA_CNI),
        ]);
        let linkerd = PodMeta::with_annotations(&[(linkerd_selection::PROXY_VERSION, "edge")])
            .with_containers(&[], &["app", linkerd_selection::LINKERD_PROXY]);
        let excluded = ["kube-system".to_string()];
        for (mesh, captured) in [
            (Mesh::Istio, pod(true)),
            (Mesh::Kuma, kuma),
            (Mesh::Linkerd, linkerd),
        ] {
            let select =
                |pod: &PodMeta| select(CaptureMode::Mesh, mesh, &[], pod, &excluded).unwrap();
            assert_eq!(select(&captured), Selection::Capture, "{mesh:?}");
            let mut in_kube_system = captured.clone();
            in_kube_system.namespace = "kube-system".into();
            let mut not_k8s = captured.clone();
            not_k8s.name.clear();
            assert_eq!(
                select(&in_kube_system),
                Selection::Skip("its namespace is excluded".into()),
                "{mesh:?}"
            );
            assert_eq!(
                select(&not_k8s),
                Selection::Skip(
                    "not a Kubernetes pod (no K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS)".into()
                ),
                "{mesh:?}"
            );
        }
    }

    #[test]
    fn a_bad_switch_is_an_error_naming_it() {
        let err = select(
            CaptureMode::All,
            Mesh::Istio,
            &args(&[("MESHLANE_CAPTURE", "yes")]),
            &pod(false),
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("MESHLANE_CAPTURE=\"yes\""));
    }

    #[test]
    fn modes_parse_by_name() {
        assert_eq!(CaptureMode::parse("istio"), Some(CaptureMode::Mesh));
        assert_eq!(CaptureMode::parse("mesh"), Some(CaptureMode::Mesh));
        assert_eq!(CaptureMode::parse("all"), Some(CaptureMode::All));
        assert_eq!(CaptureMode::parse("cni-args"), Some(CaptureMode::CniArgs));
        assert_eq!(CaptureMode::parse("none"), Some(CaptureMode::None));
        assert_eq!(CaptureMode::parse("ALL"), None);
    }
}
