//! A small, synchronous Kubernetes API client: GET a Pod, list a node's pods,
//! patch the node's startup taint, read a ConfigMap and the server's version.
//!
//! Most pods are classified from the annotations the runtime passes; what lives
//! only in the pod spec (a custom `runAsUser`, DNS capture in the proxy's env,
//! labels, a gateway's proxy type) is read here, with the kubeconfig the
//! installer writes. The node agent lists its node's pods to enroll the ones
//! that already run ([`list_node_pods`]). Every call is bounded
//! ([`FetchPolicy`]): a CNI ADD must not hang on an unreachable API server.
//!
//! ```no_run
//! # use std::path::Path;
//! # use meshlane::kube::{fetch_pod, FetchPolicy, KubeAccess};
//! let access = KubeAccess::from_kubeconfig(Path::new("/etc/cni/net.d/meshlane-kubeconfig"))?;
//! let pod = fetch_pod(&access, "default", "web-0", &FetchPolicy::default())?;
//! # Ok::<(), meshlane::kube::KubeError>(())
//! ```

mod access;
pub(crate) mod error;
mod fetch;
pub(crate) mod kubeconfig;
mod list;
pub mod node;
mod node_pod;
mod objects;
pub(crate) mod pod_json;
mod request;

pub use access::KubeAccess;
pub use error::KubeError;
pub use fetch::{fetch_pod, FetchPolicy};
pub use list::list_node_pods;
pub use node_pod::{node_pod_from_json, pod_list_page, NodePod, PodListPage};
pub use objects::{config_map_data, server_version};
pub use pod_json::pod_meta_from_json;
