//! One bounded request for JSON to the API server — a GET, or the PATCH of a
//! Node's taints — shared by every call of the client: a per-attempt timeout
//! and a few retries.
//!
//! Retried: connection failures, timeouts, 429 and 5xx (an API server
//! restarting or shedding load). Not retried: 401, 403, 404, other statuses and
//! TLS verification failures, which no retry would change.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::access::KubeAccess;
use super::error::KubeError;
use super::fetch::FetchPolicy;

/// How much of an error body goes into a message.
const MAX_MESSAGE_CHARS: usize = 300;

/// What a request reads or writes; the errors of a 403 or 404 name it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    Pod {
        namespace: &'a str,
        name: &'a str,
    },
    NodePods {
        node: &'a str,
    },
    /// Read, or patched (the agent's startup taint).
    Node {
        name: &'a str,
    },
    ConfigMap {
        namespace: &'a str,
        name: &'a str,
    },
    Version,
}

impl Target<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Target::Pod { .. } => "Pod",
            Target::NodePods { .. } => "page of a pod list",
            Target::Node { .. } => "Node",
            Target::ConfigMap { .. } => "ConfigMap",
            Target::Version => "version",
        }
    }

    /// `node node-1`, `configmap kube-system/cilium-config`.
    fn describe(&self) -> String {
        match self {
            Target::Pod { namespace, name } => format!("pod {namespace}/{name}"),
            Target::NodePods { node } => format!("the pods of node {node}"),
            Target::Node { name } => format!("node {name}"),
            Target::ConfigMap { namespace, name } => format!("configmap {namespace}/{name}"),
            Target::Version => "/version".to_owned(),
        }
    }
}

/// How a request is made: a GET, or a PATCH with its content type and body.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Method<'a> {
    Get,
    Patch {
        content_type: &'static str,
        body: &'a [u8],
    },
}

impl Method<'_> {
    fn verb(&self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Patch { .. } => "patch",
        }
    }
}

/// GETs `url` and parses the answer as JSON, retrying what may pass; a body
/// larger than `max_body` bytes is refused.
pub(crate) fn get_json(
    access: &KubeAccess,
    url: &str,
    target: Target<'_>,
    policy: &FetchPolicy,
    max_body: u64,
) -> Result<Value, KubeError> {
    send_json(access, url, Method::Get, target, policy, max_body)
}

/// Sends one request (`method`) and parses the answer as JSON, retrying what
/// may pass. A 409 (the object changed since it was read) is not retried here:
/// the caller reads the object again and decides anew.
pub(crate) fn send_json(
    access: &KubeAccess,
    url: &str,
    method: Method<'_>,
    target: Target<'_>,
    policy: &FetchPolicy,
    max_body: u64,
) -> Result<Value, KubeError> {
    let token = access.bearer_token()?;
    let agent = access.agent(policy.timeout);
    let request = Request {
        agent: &agent,
        url,
        method,
        token: token.as_deref(),
        timeout: policy.timeout,
        target,
        max_body,
    };

    let attempts = policy.attempts();
    let started = Instant::now();
    let mut last = Transient::Transport(String::new());
    for attempt in 1..=attempts {
        match request.send() {
            Attempt::Body(body) => {
                return serde_json::from_slice(&body).map_err(|err| KubeError::MalformedPod {
                    path: "(document)".to_owned(),
                    problem: format!("the answer from {url} is not JSON: {err}"),
                });
            }
            Attempt::Failed(err) => return Err(err),
            Attempt::Retry(reason) => {
                last = reason;
                if attempt < attempts {
                    let wait = policy.backoff_after(attempt);
                    crate::log::info(
                        "API request failed; retrying",
                        &[
                            ("method", &method.verb()),
                            ("url", &url),
                            ("attempt", &format!("{attempt}/{attempts}")),
                            ("error", &last.describe()),
                            ("retry_in", &format!("{wait:?}")),
                        ],
                    );
                    thread::sleep(wait);
                }
            }
        }
    }
    // The caller reports the error; this line adds how long the attempts took.
    crate::log::info(
        "API request failed on every attempt",
        &[
            ("method", &method.verb()),
            ("url", &url),
            ("attempts", &attempts),
            ("took", &format!("{:?}", started.elapsed())),
        ],
    );
    let url = url.to_owned();
    Err(match last {
        Transient::Transport(last_error) => KubeError::Unreachable {
            url,
            attempts,
            last_error,
        },
        Transient::Status { status, message } => KubeError::ServerBusy {
            url,
            status,
            attempts,
            message,
        },
    })
}

struct Request<'a> {
    agent: &'a ureq::Agent,
    url: &'a str,
    method: Method<'a>,
    token: Option<&'a str>,
    timeout: Duration,
    target: Target<'a>,
    max_body: u64,
}

enum Attempt {
    Body(Vec<u8>),
    Retry(Transient),
    Failed(KubeError),
}

enum Transient {
    Transport(String),
    Status { status: u16, message: String },
}

impl Transient {
    fn describe(&self) -> String {
        match self {
            Transient::Transport(error) => error.clone(),
            Transient::Status { status, message } => format!("HTTP {status}: {message}"),
        }
    }
}

impl Request<'_> {
    fn send(&self) -> Attempt {
        let sent = match self.method {
            Method::Get => {
                let mut request = self
                    .agent
                    .get(self.url)
                    .header("Accept", "application/json");
                if let Some(token) = self.token {
                    request = request.header("Authorization", format!("Bearer {token}"));
                }
                request.call()
            }
            Method::Patch { content_type, body } => {
                let mut request = self
                    .agent
                    .patch(self.url)
                    .header("Accept", "application/json")
                    .header("Content-Type", content_type);
                if let Some(token) = self.token {
                    request = request.header("Authorization", format!("Bearer {token}"));
                }
                request.send(body)
            }
        };
        let mut response = match sent {
            Ok(response) => response,
            Err(err) => return self.transport_failure(err),
        };
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(self.max_body)
            .read_to_vec();
        let body = match body {
            Ok(body) => body,
            Err(ureq::Error::BodyExceedsLimit(limit)) => {
                return Attempt::Failed(KubeError::MalformedPod {
                    path: "(document)".to_owned(),
                    problem: format!(
                        "the answer from {} is larger than {limit} bytes, which no {} is",
                        self.url,
                        self.target.kind()
                    ),
                })
            }
            // A body cut short is as transient as a refused connection.
            Err(err) => return self.transport_failure(err),
        };
        if status == 200 {
            return Attempt::Body(body);
        }
        let message = status_message(&body);
        match status {
            401 => Attempt::Failed(KubeError::Unauthorized {
                url: self.url.to_owned(),
                message,
            }),
            403 => Attempt::Failed(match self.target {
                Target::Pod { namespace, name } => KubeError::Forbidden {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    message,
                },
                Target::NodePods { node } => KubeError::ForbiddenList {
                    node: node.to_owned(),
                    message,
                },
                other => KubeError::ForbiddenObject {
                    verb: self.method.verb(),
                    what: other.describe(),
                    message,
                },
            }),
            404 => Attempt::Failed(match self.target {
                Target::Pod { namespace, name } => KubeError::NotFound {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                },
                // The list path always exists: a 404 is a wrong server or prefix.
                Target::NodePods { .. } | Target::Version => KubeError::UnexpectedStatus {
                    url: self.url.to_owned(),
                    status,
                    message,
                },
                other => KubeError::ObjectNotFound {
                    what: other.describe(),
                },
            }),
            409 => Attempt::Failed(KubeError::Conflict {
                what: self.target.describe(),
                message,
            }),
            429 | 500..=599 => Attempt::Retry(Transient::Status { status, message }),
            _ => Attempt::Failed(KubeError::UnexpectedStatus {
                url: self.url.to_owned(),
                status,
                message,
            }),
        }
    }

    fn transport_failure(&self, err: ureq::Error) -> Attempt {
        let no_answer = || {
            Attempt::Retry(Transient::Transport(format!(
                "no answer within {:?}",
                self.timeout
            )))
        };
        let tls = |detail: String| {
            Attempt::Failed(KubeError::Tls {
                url: self.url.to_owned(),
                detail,
            })
        };
        match err {
            ureq::Error::Timeout(_) => no_answer(),
            ureq::Error::Io(io) => {
                // rustls reports handshake failures as InvalidData I/O errors
                // wrapping its own error.
                if let Some(rustls) = io
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                {
                    return tls(describe_tls(rustls));
                }
                match io.kind() {
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => no_answer(),
                    _ => Attempt::Retry(Transient::Transport(io.to_string())),
                }
            }
            ureq::Error::Rustls(rustls) => tls(describe_tls(&rustls)),
            ureq::Error::Tls(detail) => tls(detail.to_owned()),
            ureq::Error::Pem(pem) => tls(format!("PEM: {pem}")),
            ureq::Error::HostNotFound => Attempt::Retry(Transient::Transport(
                "the server's host name does not resolve".to_owned(),
            )),
            other => Attempt::Retry(Transient::Transport(other.to_string())),
        }
    }
}

/// rustls's wording plus what it usually means for a kubeconfig.
fn describe_tls(err: &rustls::Error) -> String {
    use rustls::CertificateError as Cert;
    let hint = match err {
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer | Cert::BadSignature) => {
            "the server's certificate is not signed by the configured certificate authority"
        }
        rustls::Error::InvalidCertificate(
            Cert::NotValidForName | Cert::NotValidForNameContext { .. },
        ) => "the server's certificate does not name the host in the kubeconfig's server",
        rustls::Error::InvalidCertificate(
            Cert::Expired
            | Cert::ExpiredContext { .. }
            | Cert::NotValidYet
            | Cert::NotValidYetContext { .. },
        ) => "the server's certificate is outside its validity period (check the node's clock)",
        rustls::Error::AlertReceived(_) => {
            "the server refused the handshake (a client certificate it does not accept?)"
        }
        _ => "",
    };
    if hint.is_empty() {
        err.to_string()
    } else {
        format!("{hint}: {err}")
    }
}

/// The `message` of a Kubernetes `Status` body, or the start of the body.
fn status_message(body: &[u8]) -> String {
    let from_status = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value.get("message")?.as_str().map(str::to_owned));
    let text = from_status.unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    let mut chars = text.chars();
    let short: String = chars.by_ref().take(MAX_MESSAGE_CHARS).collect();
    if chars.next().is_some() {
        format!("{short}…")
    } else {
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages_prefer_the_kubernetes_status() {
        let status = br#"{"kind":"Status","apiVersion":"v1","status":"Failure",
            "message":"pods \"web-0\" is forbidden: User \"system:serviceaccount:kube-system:meshlane\" cannot get resource \"pods\"",
            "reason":"Forbidden","code":403}"#;
        assert!(status_message(status).starts_with("pods \"web-0\" is forbidden: User"));
        assert_eq!(
            status_message(b"  upstream connect error\n"),
            "upstream connect error"
        );
        assert_eq!(status_message(b""), "(empty body)");
        let long = "x".repeat(1000);
        let short = status_message(long.as_bytes());
        assert_eq!(short.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(short.ends_with('…'));
    }

    #[test]
    fn tls_failures_carry_a_hint() {
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert_eq!(
            describe_tls(&unknown),
            "the server's certificate is not signed by the configured certificate authority: \
             invalid peer certificate: UnknownIssuer"
        );
        let name = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
        assert!(describe_tls(&name).starts_with("the server's certificate does not name the host"));
        let other = rustls::Error::DecryptError;
        assert_eq!(describe_tls(&other), other.to_string());
    }
}
