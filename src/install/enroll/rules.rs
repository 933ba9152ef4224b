//! Which running pods the agent enrolls: the plugin's own decision (the same
//! `select` ADD uses), after the rules that only matter for a pod that already
//! runs. Pure: unit tested here.

use crate::kube::NodePod;
use crate::plugin::config::PluginConfig;
use crate::policy::pod_meta::ISTIO_INIT;
use crate::policy::selection::{select, Selection};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Enroll it if meshlane has no record of it.
    Enroll,
    /// Leave it alone, for this reason.
    Skip(String),
    /// It should be captured but cannot be classified (ADD would fail it).
    Unclassified(String),
}

pub fn judge(pod: &NodePod, config: &PluginConfig) -> Verdict {
    if matches!(pod.phase.as_str(), "Succeeded" | "Failed") {
        return Verdict::Skip(format!("it has finished (phase {})", pod.phase));
    }
    if pod.host_network {
        return Verdict::Skip("it uses the node's network (hostNetwork: true)".to_owned());
    }
    // Whatever the capture mode says: istio-init has written iptables rules
    // into the pod, and capturing it again would send its traffic through both.
    let has_istio_init = pod
        .meta
        .spec
        .as_ref()
        .is_some_and(|spec| spec.init_containers.iter().any(|c| c == ISTIO_INIT));
    if has_istio_init {
        return Verdict::Skip(
            "it has an istio-init container: its own iptables rules capture it, and \
             enrolling it would capture it twice"
                .to_owned(),
        );
    }
    match select(
        config.capture,
        config.mesh,
        &[],
        &pod.meta,
        &config.exclude_namespaces,
    ) {
        Ok(Selection::Skip(reason)) => return Verdict::Skip(format!("not captured: {reason}")),
        Ok(Selection::Capture) => {}
        Err(err) => return Verdict::Unclassified(err.to_string()),
    }
    if pod.ips.is_empty() {
        return Verdict::Skip("its status lists no pod IP yet".to_owned());
    }
    Verdict::Enroll
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::pod_meta::{PodMeta, PodSpecFacts};
    use crate::policy::CaptureMode;

    const STATUS: &str = r#"{"initContainers":["istio-validation"],"containers":["istio-proxy"]}"#;

    fn pod() -> NodePod {
        NodePod {
            meta: PodMeta {
                namespace: "shop".into(),
                name: "web-0".into(),
                annotations: Some(
                    [("sidecar.istio.io/status".to_owned(), STATUS.to_owned())].into(),
                ),
                labels: Some(Default::default()),
                spec: Some(PodSpecFacts {
                    init_containers: vec!["istio-validation".into()],
                    containers: vec!["app".into(), "istio-proxy".into()],
                    ..Default::default()
                }),
            },
            uid: "u".into(),
            host_network: false,
            phase: "Running".into(),
            ips: vec!["10.1.0.5".parse().unwrap()],
            container_ids: vec![],
        }
    }

    fn skip_reason(verdict: Verdict) -> String {
        match verdict {
            Verdict::Skip(reason) => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_injected_running_pod_is_enrolled() {
        let config = PluginConfig::default();
        assert_eq!(judge(&pod(), &config), Verdict::Enroll);
        let mut pending = pod();
        pending.phase = "Pending".into();
        assert_eq!(judge(&pending, &config), Verdict::Enroll);
    }

    #[test]
    fn pods_that_must_not_be_enrolled() {
        let config = PluginConfig::default();
        let mut done = pod();
        done.phase = "Succeeded".into();
        assert!(skip_reason(judge(&done, &config)).contains("finished"));

        let mut host = pod();
        host.host_network = true;
        assert!(skip_reason(judge(&host, &config)).contains("hostNetwork"));

        let mut iptables = pod();
        iptables.meta.spec.as_mut().unwrap().init_containers = vec![ISTIO_INIT.into()];
        assert!(skip_reason(judge(&iptables, &config)).contains("istio-init"));
        // Even when the node captures every pod.
        let all = PluginConfig {
            capture: CaptureMode::All,
            ..PluginConfig::default()
        };
        assert!(skip_reason(judge(&iptables, &all)).contains("istio-init"));

        let mut plain = pod();
        plain.meta.annotations = Some(Default::default());
        plain.meta.spec.as_mut().unwrap().containers = vec!["app".into()];
        assert!(skip_reason(judge(&plain, &config)).starts_with("not captured: "));
        assert_eq!(judge(&plain, &all), Verdict::Enroll);

        let mut system = pod();
        system.meta.namespace = "kube-system".into();
        assert!(skip_reason(judge(&system, &config)).contains("excluded"));

        let mut no_ip = pod();
        no_ip.ips.clear();
        assert!(skip_reason(judge(&no_ip, &config)).contains("no pod IP"));
    }

    /// Under `mesh: "linkerd"` the API's pod list has the containers Linkerd's
    /// selection reads (docs/meshes.md, L2-L3); an Istio pod is another mesh's.
    #[test]
    fn linkerd_pods_are_enrolled_by_their_containers() {
        let config = PluginConfig {
            mesh: crate::policy::Mesh::Linkerd,
            ..PluginConfig::default()
        };
        let linkerd = |init: &[&str]| {
            let mut pod = pod();
            pod.meta = PodMeta::with_annotations(&[("linkerd.io/proxy-version", "edge-26.8.3")])
                .with_containers(init, &["app", "linkerd-proxy"]);
            pod
        };
        assert_eq!(
            judge(&linkerd(&["linkerd-network-validator"]), &config),
            Verdict::Enroll
        );
        assert!(skip_reason(judge(&linkerd(&["linkerd-init"]), &config)).contains("linkerd-init"));
        assert!(skip_reason(judge(&pod(), &config)).contains("no linkerd-proxy"));
    }

    #[test]
    fn a_pod_that_cannot_be_classified_is_reported() {
        let mut odd = pod();
        odd.meta
            .annotations
            .as_mut()
            .unwrap()
            .insert("sidecar.istio.io/interceptionMode".into(), "TPROXY".into());
        assert!(matches!(
            judge(&odd, &PluginConfig::default()),
            Verdict::Unclassified(_)
        ));
    }
}
