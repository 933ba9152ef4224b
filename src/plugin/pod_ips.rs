//! The pod's IPs: from the primary plugin's result, checked against the netns.

use std::net::IpAddr;
use std::path::Path;

use crate::cni::{CniError, PrevResult};

/// The pod IPs of `prev`, each of which must be configured in the netns.
pub fn checked_pod_ips(
    prev: &PrevResult,
    netns_addresses: &[IpAddr],
    netns: &Path,
) -> Result<Vec<IpAddr>, CniError> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for ip in prev.pod_ips().iter().map(|ip| ip.address) {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    if ips.is_empty() {
        return Err(CniError::pod_policy(
            "prevResult gives the pod no IP address: meshlane must follow a plugin that \
             assigns the pod's IPs (the pod must be captured, so it cannot start without them)",
        ));
    }
    if let Some(missing) = ips.iter().find(|ip| !netns_addresses.contains(ip)) {
        return Err(CniError::config(
            "prevResult",
            format!(
                "{missing} is not configured in network namespace {}",
                netns.display()
            ),
        ));
    }
    Ok(ips)
}
