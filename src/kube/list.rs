//! The pods of one node: `GET /api/v1/pods?fieldSelector=spec.nodeName=<node>`,
//! page by page. Each page is one bounded request ([`FetchPolicy`]) and the
//! number of pages is capped, so a listing always ends.

use super::access::KubeAccess;
use super::error::KubeError;
use super::fetch::{is_object_name, FetchPolicy};
use super::node_pod::{pod_list_page, NodePod};
use super::request::{get_json, Target};

/// Pods per page: a page stays a few MiB even with large pod specs.
const PAGE_SIZE: u32 = 100;
/// 100 pages of 100: far above the pods one node can run (110 by default).
const MAX_PAGES: u32 = 100;
/// 100 pods of up to a few hundred KiB each (etcd caps an object at 1.5 MiB,
/// real pods are far smaller).
const MAX_PAGE_BYTES: u64 = 64 * 1024 * 1024;

/// Every pod the API server places on `node`; each item is the pod or why it
/// could not be read.
pub fn list_node_pods(
    access: &KubeAccess,
    node: &str,
    policy: &FetchPolicy,
) -> Result<Vec<Result<NodePod, KubeError>>, KubeError> {
    validate_node_name(node)?;
    let mut pods = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let url = page_url(access.server(), node, next.as_deref());
        let value = get_json(
            access,
            &url,
            Target::NodePods { node },
            policy,
            MAX_PAGE_BYTES,
        )?;
        let page = pod_list_page(&value)?;
        pods.extend(page.pods);
        match page.next {
            Some(token) => next = Some(token),
            None => return Ok(pods),
        }
    }
    Err(KubeError::TooManyPages {
        node: node.to_owned(),
        pages: MAX_PAGES,
    })
}

fn page_url(server: &str, node: &str, continue_token: Option<&str>) -> String {
    let mut url =
        format!("{server}/api/v1/pods?fieldSelector=spec.nodeName%3D{node}&limit={PAGE_SIZE}");
    if let Some(token) = continue_token {
        url.push_str("&continue=");
        url.push_str(&percent_encode(token));
    }
    url
}

/// Node names are DNS subdomains; anything else could reshape the query.
fn validate_node_name(node: &str) -> Result<(), KubeError> {
    if is_object_name(node, 253) {
        return Ok(());
    }
    Err(KubeError::InvalidNodeName {
        node: node.to_owned(),
        problem: "not a Kubernetes node name (lowercase letters, digits, '-', '.', at most 253)",
    })
}

/// Continue tokens are opaque (base64 with `=`, `+`, `/`): everything but
/// RFC 3986's unreserved characters is escaped.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_the_continue_token() {
        assert_eq!(
            page_url("https://10.96.0.1:443", "node-1", None),
            "https://10.96.0.1:443/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1&limit=100"
        );
        assert_eq!(
            page_url("https://api", "n", Some("eyJ2Ijo+/=")),
            "https://api/api/v1/pods?fieldSelector=spec.nodeName%3Dn&limit=100\
             &continue=eyJ2Ijo%2B%2F%3D"
        );
    }

    #[test]
    fn node_names_cannot_reshape_the_query() {
        for good in ["node-1", "ip-10-0-0-1.ec2.internal", "a"] {
            assert!(validate_node_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Node", "n&limit=1", "n,spec.x=y", "a b", "-a"] {
            assert!(
                matches!(
                    validate_node_name(bad),
                    Err(KubeError::InvalidNodeName { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
