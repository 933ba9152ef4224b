//! One request, bounded: `GET /api/v1/namespaces/{ns}/pods/{name}` with a
//! per-attempt timeout and a few retries, because a CNI ADD must not hang.
//!
//! Retried: connection failures, timeouts, 429 and 5xx (an API server
//! restarting or shedding load). Not retried: 401, 403, 404, other statuses and
//! TLS verification failures, which no retry would change.

use std::thread;
use std::time::{Duration, Instant};

use super::access::KubeAccess;
use super::error::KubeError;
use super::pod_json::pod_meta_from_json;
use crate::policy::pod_meta::PodMeta;

/// A Pod is at most a few hundred KiB (etcd caps objects at 1.5 MiB); anything
/// far larger is not a Pod.
const MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;
/// The backoff stops growing after this many doublings.
const MAX_DOUBLINGS: u32 = 16;
/// How much of an error body goes into a message.
const MAX_MESSAGE_CHARS: usize = 300;

/// How long and how often to try. The worst case is every attempt timing out:
/// `attempts × timeout` plus the backoffs in between ([`Self::worst_case`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPolicy {
    /// Bounds one attempt as a whole: resolve, connect, TLS, response.
    pub timeout: Duration,
    /// Attempts in all (0 counts as 1).
    pub attempts: u32,
    /// Wait before the second attempt; doubled before each further one.
    pub backoff: Duration,
}

impl Default for FetchPolicy {
    /// 2 s per attempt, 3 attempts, 200 ms then 400 ms between them: at most
    /// 6.6 s, well inside a runtime's CNI timeout.
    fn default() -> Self {
        FetchPolicy {
            timeout: Duration::from_secs(2),
            attempts: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

impl FetchPolicy {
    fn attempts(&self) -> u32 {
        self.attempts.max(1)
    }

    /// The wait after failed attempt `n` (1-based): backoff × 2^(n-1), growing
    /// for at most [`MAX_DOUBLINGS`] steps.
    fn backoff_after(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(MAX_DOUBLINGS);
        self.backoff.saturating_mul(1 << doublings)
    }

    /// The longest [`fetch_pod`] can take (plus scheduling slack).
    pub fn worst_case(&self) -> Duration {
        let attempts = self.attempts();
        let waits = attempts - 1;
        // Sum the growing waits, then the constant ones, without a loop over
        // an arbitrary attempt count.
        let growing = waits.min(MAX_DOUBLINGS + 1);
        let grown = (1..=growing)
            .map(|attempt| self.backoff_after(attempt))
            .fold(Duration::ZERO, Duration::saturating_add);
        let constant = self
            .backoff_after(MAX_DOUBLINGS + 1)
            .saturating_mul(waits - growing);
        self.timeout
            .saturating_mul(attempts)
            .saturating_add(grown)
            .saturating_add(constant)
    }
}

/// Reads one Pod from the API server and maps it to [`PodMeta`].
pub fn fetch_pod(
    access: &KubeAccess,
    namespace: &str,
    name: &str,
    policy: &FetchPolicy,
) -> Result<PodMeta, KubeError> {
    validate_pod_ref(namespace, name)?;
    let url = format!(
        "{}/api/v1/namespaces/{namespace}/pods/{name}",
        access.server()
    );
    let token = access.bearer_token()?;
    let agent = access.agent(policy.timeout);
    let request = Request {
        agent: &agent,
        url: &url,
        token: token.as_deref(),
        timeout: policy.timeout,
        namespace,
        name,
    };

    let attempts = policy.attempts();
    let started = Instant::now();
    let mut last = Transient::Transport(String::new());
    for attempt in 1..=attempts {
        match request.send() {
            Attempt::Body(body) => {
                let value: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|err| KubeError::MalformedPod {
                        path: "(document)".to_owned(),
                        problem: format!("the answer from {url} is not JSON: {err}"),
                    })?;
                return pod_meta_from_json(&value);
            }
            Attempt::Failed(err) => return Err(err),
            Attempt::Retry(reason) => {
                last = reason;
                if attempt < attempts {
                    let wait = policy.backoff_after(attempt);
                    crate::log_info!(
                        "GET {url}: attempt {attempt}/{attempts} failed ({}); retrying in {wait:?}",
                        last.describe()
                    );
                    thread::sleep(wait);
                }
            }
        }
    }
    // The caller reports the error; this line adds how long the attempts took.
    crate::log_info!(
        "GET {url}: {attempts} attempt(s) failed in {:?}",
        started.elapsed()
    );
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

/// Namespaces and names become URL path segments; only what Kubernetes
/// accepts as an object name (RFC 1123: lowercase alphanumerics, `-`, `.`)
/// passes, so nothing from CNI_ARGS can reshape the request.
fn validate_pod_ref(namespace: &str, name: &str) -> Result<(), KubeError> {
    let problem = if !is_object_name(namespace, 63) {
        Some("the namespace is not a Kubernetes name (lowercase letters, digits, '-', at most 63)")
    } else if namespace.contains('.') {
        Some("the namespace is not a Kubernetes name (no '.' in namespaces)")
    } else if !is_object_name(name, 253) {
        Some("the pod name is not a Kubernetes name (lowercase letters, digits, '-', '.', at most 253)")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(KubeError::InvalidPodRef {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            problem,
        }),
    }
}

fn is_object_name(text: &str, max_len: usize) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !text.is_empty()
        && text.len() <= max_len
        && text.starts_with(alnum)
        && text.ends_with(alnum)
        && text.chars().all(|c| alnum(c) || c == '-' || c == '.')
        && !text.contains("..")
}

struct Request<'a> {
    agent: &'a ureq::Agent,
    url: &'a str,
    token: Option<&'a str>,
    timeout: Duration,
    namespace: &'a str,
    name: &'a str,
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
        let mut request = self
            .agent
            .get(self.url)
            .header("Accept", "application/json");
        if let Some(token) = self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut response = match request.call() {
            Ok(response) => response,
            Err(err) => return self.transport_failure(err),
        };
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_vec();
        let body = match body {
            Ok(body) => body,
            Err(ureq::Error::BodyExceedsLimit(limit)) => {
                return Attempt::Failed(KubeError::MalformedPod {
                    path: "(document)".to_owned(),
                    problem: format!(
                        "the answer from {} is larger than {limit} bytes, which no Pod is",
                        self.url
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
            403 => Attempt::Failed(KubeError::Forbidden {
                namespace: self.namespace.to_owned(),
                name: self.name.to_owned(),
                message,
            }),
            404 => Attempt::Failed(KubeError::NotFound {
                namespace: self.namespace.to_owned(),
                name: self.name.to_owned(),
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
    fn default_policy_is_bounded() {
        let policy = FetchPolicy::default();
        assert_eq!(policy.timeout, Duration::from_secs(2));
        assert_eq!(policy.attempts, 3);
        assert_eq!(policy.backoff, Duration::from_millis(200));
        assert_eq!(policy.backoff_after(1), Duration::from_millis(200));
        assert_eq!(policy.backoff_after(2), Duration::from_millis(400));
        assert_eq!(policy.worst_case(), Duration::from_millis(6_600));
    }

    #[test]
    fn worst_case_sums_every_wait() {
        let policy = FetchPolicy {
            timeout: Duration::from_secs(1),
            attempts: 20,
            backoff: Duration::from_millis(1),
        };
        let waits: Duration = (1..20).map(|attempt| policy.backoff_after(attempt)).sum();
        assert_eq!(policy.worst_case(), Duration::from_secs(20) + waits);
        assert_eq!(
            policy.backoff_after(19),
            Duration::from_millis(1 << MAX_DOUBLINGS)
        );
    }

    #[test]
    fn zero_attempts_means_one() {
        let policy = FetchPolicy {
            timeout: Duration::from_millis(500),
            attempts: 0,
            backoff: Duration::from_secs(1),
        };
        assert_eq!(policy.attempts(), 1);
        assert_eq!(policy.worst_case(), Duration::from_millis(500));
    }

    #[test]
    fn huge_settings_saturate_instead_of_overflowing() {
        let policy = FetchPolicy {
            timeout: Duration::MAX,
            attempts: u32::MAX,
            backoff: Duration::MAX,
        };
        assert_eq!(policy.worst_case(), Duration::MAX);
        assert_eq!(policy.backoff_after(u32::MAX), Duration::MAX);
    }

    #[test]
    fn pod_references_must_be_kubernetes_names() {
        let long_label = "a".repeat(64);
        let long_name = "a".repeat(254);
        let max_name = "a".repeat(253);
        let good = [
            ("default", "web-0"),
            ("kube-system", "coredns-5d78c9869d-6xq7k"),
            ("a", "b"),
            ("ns-1", "pod.with.dots"),
            ("ns", max_name.as_str()),
        ];
        for (namespace, name) in good {
            assert!(
                validate_pod_ref(namespace, name).is_ok(),
                "{namespace}/{name}"
            );
        }
        let bad = [
            ("", "web-0"),
            ("default", ""),
            ("Default", "web-0"),
            ("default", "Web-0"),
            ("default", "../../secrets/x"),
            ("default", "web-0?watch=1"),
            ("default", "web 0"),
            ("default", "web%2F0"),
            ("default", "-web"),
            ("default", "web-"),
            ("default", "a..b"),
            ("my.ns", "web-0"),
            (long_label.as_str(), "web-0"),
            ("default", long_name.as_str()),
        ];
        for (namespace, name) in bad {
            assert!(
                matches!(
                    validate_pod_ref(namespace, name),
                    Err(KubeError::InvalidPodRef { .. })
                ),
                "{namespace:?}/{name:?}"
            );
        }
    }

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
