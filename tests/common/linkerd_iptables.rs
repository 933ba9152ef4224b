//! Linkerd's sidecar capture as iptables rules: the oracle of the Linkerd rows of
//! the parity test. What linkerd-cni programs into a pod, with the CNI chart's
//! defaults and the pod's `config.linkerd.io/*` overrides, written from
//! linkerd/linkerd2-proxy-init `cni-plugin/v1.6.8` (`cni-plugin/main.go`: which
//! annotations, replace or append), `proxy-init/v2.4.9` (`proxy-init/cmd/root.go`,
//! `pkg/iptables/iptables.go`: the chains, their order, multiport chunks) and
//! linkerd/linkerd2 `edge-26.8.3` (`charts/linkerd2-cni`: 4140/4143, 2102, 4190 and
//! 4191 ignored inbound). docs/meshes.md numbers the rules LO1–LO4, LI1–LI3.
//!
//! The chart's `disableIPv6: false` is assumed for a pod with IPv6 addresses
//! (meshlane captures both families); skipped subnets are not covered (meshlane
//! refuses them, so no parity row needs them).

use std::net::IpAddr;

use super::istio_iptables::{IstioRules, SidecarSettings};

pub const PROXY_UID: &str = "config.linkerd.io/proxy-uid";
pub const PROXY_GID: &str = "config.linkerd.io/proxy-gid";
pub const SKIP_OUTBOUND_PORTS: &str = "config.linkerd.io/skip-outbound-ports";
pub const SKIP_INBOUND_PORTS: &str = "config.linkerd.io/skip-inbound-ports";

/// linkerd2-proxy's UID; its GID when the proxy container sets none is the image's.
pub const LINKERD_PROXY_ID: u32 = 2102;

/// A Linkerd pod's settings: the proxy's identity for the stand-ins, and `extra`
/// annotations on top (the injection mark is added by the parity test).
pub fn linkerd_settings(extra: &[(&str, &str)]) -> SidecarSettings {
    SidecarSettings::new()
        .proxy(LINKERD_PROXY_ID, LINKERD_PROXY_ID)
        .annotations(extra)
}

/// proxy-init's `makeMultiportDestinations`: `a-b` becomes `a:b` and counts as two
/// of multiport's 15 ports, one command per full set.
fn multiport(list: &[String]) -> Vec<String> {
    let mut chunks: Vec<Vec<String>> = vec![Vec::new()];
    let mut count = 0;
    for item in list {
        let (destination, weight) = match item.split_once('-') {
            Some((low, high)) if low != high => (format!("{low}:{high}"), 2),
            Some((low, _)) => (low.to_string(), 1),
            None => (item.clone(), 1),
        };
        if count + weight > 15 {
            chunks.push(Vec::new());
            count = 0;
        }
        chunks.last_mut().unwrap().push(destination);
        count += weight;
    }
    chunks
        .into_iter()
        .filter(|c| !c.is_empty())
        .map(|c| c.join(","))
        .collect()
}

fn split(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The rules of a pod with these addresses (IPv6 rules when it has an IPv6 address).
pub fn generate(settings: &SidecarSettings, pod_ips: &[IpAddr]) -> IstioRules {
    let get = |key: &str| settings.annotations.get(key).map(String::as_str);
    let uid = get(PROXY_UID).unwrap_or("2102");
    let gid = get(PROXY_GID).filter(|g| *g != "-1");
    // linkerd-cni: the pod's inbound list is appended to the chart's, its
    // outbound list replaces the chart's (empty).
    let mut inbound_ignored = vec!["4191".to_string(), "4190".to_string()];
    inbound_ignored.extend(get(SKIP_INBOUND_PORTS).map(split).unwrap_or_default());
    let outbound_ignored = get(SKIP_OUTBOUND_PORTS).map(split).unwrap_or_default();
    let mut out = vec![
        "*nat".to_string(),
        "-N PROXY_INIT_REDIRECT".into(),
        "-N PROXY_INIT_OUTPUT".into(),
    ];
    // LI1-LI3.
    for ports in multiport(&inbound_ignored) {
        out.push(format!(
            "-A PROXY_INIT_REDIRECT -p tcp -m multiport --dports {ports} -j RETURN"
        ));
    }
    out.push("-A PROXY_INIT_REDIRECT -p tcp -j REDIRECT --to-ports 4143".into());
    out.push("-A PREROUTING -j PROXY_INIT_REDIRECT".into());
    // LO1-LO4.
    out.push(format!(
        "-A PROXY_INIT_OUTPUT -m owner --uid-owner {uid} -j RETURN"
    ));
    if let Some(gid) = gid {
        out.push(format!(
            "-A PROXY_INIT_OUTPUT -m owner --gid-owner {gid} -j RETURN"
        ));
    }
    out.push("-A PROXY_INIT_OUTPUT -o lo -j RETURN".into());
    for ports in multiport(&outbound_ignored) {
        out.push(format!(
            "-A PROXY_INIT_OUTPUT -p tcp -m multiport --dports {ports} -j RETURN"
        ));
    }
    out.push("-A PROXY_INIT_OUTPUT -p tcp -j REDIRECT --to-ports 4140".into());
    out.push("-A OUTPUT -j PROXY_INIT_OUTPUT".into());
    out.push("COMMIT".into());
    let rules = out.join("\n") + "\n";
    IstioRules {
        v4: rules.clone(),
        v6: pod_ips.iter().any(IpAddr::is_ipv6).then_some(rules),
    }
}
