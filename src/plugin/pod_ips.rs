//! The pod's IPs: from the primary plugin's result (ADD) or from the pod's
//! status (a pod the node agent enrolls), checked against the netns.

use std::net::IpAddr;
use std::path::Path;

use crate::cni::{CniError, PrevResult};

/// Where the pod's IPs are read from.
#[derive(Debug, Clone, Copy)]
pub enum ClaimedIps<'a> {
    /// ADD: the primary plugin's result.
    PrevResult(&'a PrevResult),
    /// A running pod: `status.podIPs` as the API server reports them.
    PodStatus(&'a [IpAddr]),
}

/// The claimed pod IPs, each of which must be configured in the netns.
pub fn checked_pod_ips(
    claimed: ClaimedIps<'_>,
    netns_addresses: &[IpAddr],
    netns: &Path,
) -> Result<Vec<IpAddr>, CniError> {
    let listed: Vec<IpAddr> = match claimed {
        ClaimedIps::PrevResult(prev) => prev.pod_ips().iter().map(|ip| ip.address).collect(),
        ClaimedIps::PodStatus(ips) => ips.to_vec(),
    };
    let mut ips: Vec<IpAddr> = Vec::new();
    for ip in listed {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    let source = match claimed {
        ClaimedIps::PrevResult(_) => "prevResult",
        ClaimedIps::PodStatus(_) => "status.podIPs",
    };
    if ips.is_empty() {
        return Err(match claimed {
            ClaimedIps::PrevResult(_) => CniError::pod_policy(
                "prevResult gives the pod no IP address: meshlane must follow a plugin that \
                 assigns the pod's IPs (the pod must be captured, so it cannot start without them)",
            ),
            ClaimedIps::PodStatus(_) => {
                CniError::pod_policy("the pod's status lists no IP address yet")
            }
        });
    }
    if let Some(missing) = ips.iter().find(|ip| !netns_addresses.contains(ip)) {
        return Err(CniError::config(
            source,
            format!(
                "{missing} is not configured in network namespace {}",
                netns.display()
            ),
        ));
    }
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn status_ips_must_be_in_the_netns() {
        let netns = Path::new("/proc/1/ns/net");
        let claimed = [ip("10.1.0.5"), ip("fd00::5"), ip("10.1.0.5")];
        let inside = [ip("127.0.0.1"), ip("10.1.0.5"), ip("fd00::5")];
        assert_eq!(
            checked_pod_ips(ClaimedIps::PodStatus(&claimed), &inside, netns).unwrap(),
            vec![ip("10.1.0.5"), ip("fd00::5")],
            "duplicates dropped, order kept"
        );
        let err =
            checked_pod_ips(ClaimedIps::PodStatus(&claimed), &inside[..2], netns).unwrap_err();
        assert!(err.msg.starts_with("status.podIPs: fd00::5 "), "{err:?}");
        assert!(checked_pod_ips(ClaimedIps::PodStatus(&[]), &inside, netns).is_err());
    }
}
