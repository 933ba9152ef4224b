//! One Pod, bounded: `GET /api/v1/namespaces/{ns}/pods/{name}` with a
//! per-attempt timeout and a few retries ([`FetchPolicy`]), because a CNI ADD
//! must not hang.

use std::time::Duration;

use super::access::KubeAccess;
use super::error::KubeError;
use super::pod_json::pod_meta_from_json;
use super::request::{get_json, Target};
use crate::policy::pod_meta::PodMeta;

/// A Pod is at most a few hundred KiB (etcd caps objects at 1.5 MiB); anything
/// far larger is not a Pod.
const MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;
/// The backoff stops growing after this many doublings.
const MAX_DOUBLINGS: u32 = 16;

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
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts.max(1)
    }

    /// The wait after failed attempt `n` (1-based): backoff × 2^(n-1), growing
    /// for at most [`MAX_DOUBLINGS`] steps.
    pub(crate) fn backoff_after(&self, attempt: u32) -> Duration {
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
    let target = Target::Pod { namespace, name };
    let value = get_json(access, &url, target, policy, MAX_BODY_BYTES)?;
    pod_meta_from_json(&value)
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

pub(super) fn is_object_name(text: &str, max_len: usize) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !text.is_empty()
        && text.len() <= max_len
        && text.starts_with(alnum)
        && text.ends_with(alnum)
        && text.chars().all(|c| alnum(c) || c == '-' || c == '.')
        && !text.contains("..")
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
}
