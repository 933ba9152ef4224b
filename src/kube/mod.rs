//! A small, synchronous Kubernetes API client for one request: GET a Pod.
//!
//! Most pods are classified from the annotations the runtime passes; what lives
//! only in the pod spec (a custom `runAsUser`, DNS capture in the proxy's env,
//! labels, a gateway's proxy type) is read here, with the kubeconfig the
//! installer writes. Every call is bounded ([`FetchPolicy`]): a CNI ADD must
//! not hang on an unreachable API server.
//!
//! ```no_run
//! # use std::path::Path;
//! # use meshlane::kube::{fetch_pod, FetchPolicy, KubeAccess};
//! let access = KubeAccess::from_kubeconfig(Path::new("/etc/cni/net.d/meshlane-kubeconfig"))?;
//! let pod = fetch_pod(&access, "default", "web-0", &FetchPolicy::default())?;
//! # Ok::<(), meshlane::kube::KubeError>(())
//! ```

mod access;
mod error;
mod fetch;
mod kubeconfig;
mod pod_json;

pub use access::KubeAccess;
pub use error::KubeError;
pub use fetch::{fetch_pod, FetchPolicy};
pub use pod_json::pod_meta_from_json;
