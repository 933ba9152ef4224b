//! What meshlane knows about a pod when it decides: always its name and, from the
//! runtime (`io.kubernetes.cri.pod-annotations` in runtimeConfig) or the API, its
//! annotations; from the Kubernetes API only, its labels and the parts of its spec
//! that Istio's decision reads.

use std::collections::BTreeMap;

/// The Istio proxy container's name, whether a regular or a native-sidecar (init)
/// container.
pub const ISTIO_PROXY: &str = "istio-proxy";
/// The init container of iptables mode: a pod that has it is captured by it.
pub const ISTIO_INIT: &str = "istio-init";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodMeta {
    pub namespace: String,
    pub name: String,
    /// `None` when neither the runtime nor the API provided them.
    pub annotations: Option<BTreeMap<String, String>>,
    /// Only the API knows labels (runtimes pass annotations only).
    pub labels: Option<BTreeMap<String, String>>,
    /// Only the API knows the spec.
    pub spec: Option<PodSpecFacts>,
}

/// The parts of a pod's spec that Istio's capture decision reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSpecFacts {
    /// Names of the init containers (Istio's native sidecar is one of them).
    pub init_containers: Vec<String>,
    /// Names of the regular containers.
    pub containers: Vec<String>,
    /// The istio-proxy container, if the pod has one.
    pub proxy: Option<ProxyContainer>,
    /// `spec.hostUsers` (false: the pod runs in a user namespace).
    pub host_users: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyContainer {
    /// Literal `env` values (`valueFrom` entries are not resolvable here).
    pub env: BTreeMap<String, String>,
    pub args: Vec<String>,
    /// `securityContext.runAsUser` / `runAsGroup` of the container, else of the pod
    /// (the identity the kernel then sees).
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
}

impl PodMeta {
    /// Why no mesh's rules apply to this pod, if so: every mesh's CNI plugin first
    /// leaves alone what is not a Kubernetes pod and the excluded namespaces.
    pub fn outside_every_mesh(&self, excluded_namespaces: &[String]) -> Option<&'static str> {
        if self.namespace.is_empty() || self.name.is_empty() {
            return Some("not a Kubernetes pod (no K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS)");
        }
        if excluded_namespaces.contains(&self.namespace) {
            return Some("its namespace is excluded");
        }
        None
    }
}

#[cfg(test)]
impl PodMeta {
    /// The unit tests' pod: shop/web-0 with these annotations, nothing else known.
    pub fn with_annotations(annotations: &[(&str, &str)]) -> Self {
        PodMeta {
            namespace: "shop".into(),
            name: "web-0".into(),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            labels: None,
            spec: None,
        }
    }

    /// This pod with a spec of these init and regular containers.
    pub fn with_containers(mut self, init: &[&str], containers: &[&str]) -> Self {
        let names = |list: &[&str]| list.iter().map(|c| c.to_string()).collect();
        self.spec = Some(PodSpecFacts {
            init_containers: names(init),
            containers: names(containers),
            ..Default::default()
        });
        self
    }
}

impl PodSpecFacts {
    pub fn has_container(&self, name: &str) -> bool {
        self.init_containers
            .iter()
            .chain(&self.containers)
            .any(|c| c == name)
    }

    /// Why a pod is not one of a mesh's CNI mode (Kuma's and Linkerd's): it has
    /// the mesh's `init` container, whose iptables rules capture it, or lacks the
    /// mesh's `proxy` container.
    pub fn outside_cni_mode(&self, mesh: &str, init: &str, proxy: &str) -> Option<String> {
        if self.init_containers.iter().any(|c| c == init) {
            return Some(format!(
                "it has a {init} container ({mesh}'s iptables mode captures it)"
            ));
        }
        (!self.has_container(proxy)).then(|| format!("it has no {proxy} container"))
    }
}

impl ProxyContainer {
    /// `router` for gateways, `sidecar` for sidecars: `proxy <type> ...` in args.
    pub fn proxy_type(&self) -> Option<&str> {
        match self.args.as_slice() {
            [first, kind, ..] if first == "proxy" => Some(kind),
            _ => None,
        }
    }
}
