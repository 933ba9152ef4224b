//! Errors of the Kubernetes API client. Each message names what an operator
//! has to fix: the kubeconfig field, the API server's URL, the RBAC rule.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("reading kubeconfig {path}: {source}")]
    KubeconfigRead {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("kubeconfig {path} is not valid YAML for a kubeconfig: {detail}")]
    KubeconfigSyntax { path: PathBuf, detail: String },

    /// A field is missing, contradicts another one, or holds a value meshlane
    /// cannot use. `field` is a path such as `users[meshlane].user.client-key-data`.
    #[error("kubeconfig {path}: {field}: {problem}")]
    KubeconfigField {
        path: PathBuf,
        field: String,
        problem: String,
    },

    /// A file the kubeconfig names (CA, client certificate or key, token file)
    /// cannot be read.
    #[error("kubeconfig {kubeconfig}: {field} names {path}, which cannot be read: {source}")]
    ReferencedFile {
        kubeconfig: PathBuf,
        field: String,
        path: PathBuf,
        source: std::io::Error,
    },

    /// Namespace and name come from CNI_ARGS; they become part of the URL path,
    /// so anything that is not a Kubernetes object name is refused.
    #[error("invalid pod reference {namespace:?}/{name:?}: {problem}")]
    InvalidPodRef {
        namespace: String,
        name: String,
        problem: &'static str,
    },

    #[error(
        "Kubernetes API server {url} unreachable after {attempts} attempt(s); last error: \
         {last_error} (check the kubeconfig's server address and that this node can reach it)"
    )]
    Unreachable {
        url: String,
        attempts: u32,
        last_error: String,
    },

    #[error(
        "TLS with the Kubernetes API server {url} failed: {detail} (check the kubeconfig's \
         certificate-authority / certificate-authority-data against the server's certificate)"
    )]
    Tls { url: String, detail: String },

    #[error("pod {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },

    #[error(
        "unauthorized: the Kubernetes API server {url} rejected meshlane's credentials \
         (check the kubeconfig's token, tokenFile or client certificate): {message}"
    )]
    Unauthorized { url: String, message: String },

    #[error(
        "forbidden: the service account needs get on pods (reading pod {namespace}/{name}): \
         {message}"
    )]
    Forbidden {
        namespace: String,
        name: String,
        message: String,
    },

    #[error(
        "forbidden: the service account needs list on pods (listing the pods of node {node}): \
         {message}"
    )]
    ForbiddenList { node: String, message: String },

    /// The node name becomes part of a field selector, so only a Kubernetes
    /// node name passes.
    #[error("invalid node name {node:?}: {problem}")]
    InvalidNodeName { node: String, problem: &'static str },

    /// A node runs a few hundred pods at most; a list that does not end is
    /// not followed forever.
    #[error("listing the pods of node {node} did not end within {pages} pages")]
    TooManyPages { node: String, pages: u32 },

    #[error("forbidden: the service account cannot {verb} {what}: {message}")]
    ForbiddenObject {
        verb: &'static str,
        what: String,
        message: String,
    },

    #[error("{what} not found")]
    ObjectNotFound { what: String },

    /// The object changed between the read and the write (its resourceVersion).
    #[error("{what} changed since it was read: {message}")]
    Conflict { what: String, message: String },

    #[error("{what}: {problem}")]
    MalformedObject { what: String, problem: String },

    /// 429 or 5xx on every attempt.
    #[error(
        "Kubernetes API server {url} answered HTTP {status} on all {attempts} attempt(s): {message}"
    )]
    ServerBusy {
        url: String,
        status: u16,
        attempts: u32,
        message: String,
    },

    /// Any other status: retrying would not change it.
    #[error("Kubernetes API server {url} answered HTTP {status}: {message}")]
    UnexpectedStatus {
        url: String,
        status: u16,
        message: String,
    },

    /// `path` is a JSON path into the Pod (`spec.containers[1].env[0].value`),
    /// or `(document)` when the answer is not JSON at all.
    #[error("malformed Pod JSON at {path}: {problem}")]
    MalformedPod { path: String, problem: String },
}
