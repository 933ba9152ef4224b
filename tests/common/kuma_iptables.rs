//! Kuma's sidecar capture as iptables rules: the oracle of the Kuma rows of the
//! parity test. What kuma-cni programs into a pod from the annotations its injector
//! wrote (kuma-cni's annotation path, with kuma-cni's defaults), written from
//! kumahq/kuma v2.14.3: `app/cni/pkg/cni/annotations_linux.go` (annotations and
//! defaults), `app/cni/pkg/cni/injector_linux.go` (`mapToConfig`: DNS captures all
//! port-53 UDP) and `pkg/transparentproxy/iptables/builder/builder_table_nat.go`
//! (the chains and their order). docs/meshes.md numbers the rules KO1–KO10, KI1–KI4.
//!
//! Not covered (meshlane refuses them, so no parity row needs them): per-UID port
//! exclusions, inbound source exclusions, invalid-packet drops, logging, and the
//! raw-table conntrack zones of DNS (they keep reply tuples apart; where a
//! connection lands does not depend on them).

use std::net::IpAddr;

use super::istio_iptables::{IstioRules, RuleError, SidecarSettings};

pub const SIDECAR_INJECTED: &str = "kuma.io/sidecar-injected";
pub const CNI_NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
pub const SIDECAR_UID: &str = "kuma.io/sidecar-uid";
pub const BUILTIN_DNS: &str = "kuma.io/builtin-dns";
pub const GATEWAY: &str = "kuma.io/gateway";
pub const EXCLUDE_OUTBOUND_PORTS: &str = "traffic.kuma.io/exclude-outbound-ports";
pub const EXCLUDE_INBOUND_PORTS: &str = "traffic.kuma.io/exclude-inbound-ports";
pub const EXCLUDE_OUTBOUND_IPS: &str = "traffic.kuma.io/exclude-outbound-ips";
pub const PROBE_PROXY_PORT: &str = "kuma.io/application-probe-proxy-port";
pub const OUTBOUND_PORT_ANNOTATION: &str = "kuma.io/transparent-proxying-outbound-port";
pub const INBOUND_PORT_ANNOTATION: &str = "kuma.io/transparent-proxying-inbound-port";
pub const DNS_PORT_ANNOTATION: &str = "kuma.io/builtin-dns-port";

/// kuma-dp's UID and GID (Kuma's runtime defaults).
pub const KUMA_DP_ID: u32 = 5678;

/// The settings of a Kuma pod as its injector annotates it in CNI mode: kuma-dp's
/// identity for the proxy stand-ins, and `extra` annotations on top.
pub fn kuma_settings(extra: &[(&str, &str)]) -> SidecarSettings {
    SidecarSettings::new()
        .proxy(KUMA_DP_ID, KUMA_DP_ID)
        .annotation(SIDECAR_INJECTED, "true")
        .annotation(CNI_NETWORKS, "kuma-cni")
        .annotation(SIDECAR_UID, &KUMA_DP_ID.to_string())
        .annotations(extra)
}

/// The annotation's value, or kuma-cni's default (`annotationRegistry`).
fn get<'s>(settings: &'s SidecarSettings, key: &str, default: &'s str) -> &'s str {
    settings
        .annotations
        .get(key)
        .map_or(default, String::as_str)
}

fn refuse(annotation: &str, value: &str, problem: &str) -> RuleError {
    RuleError {
        annotation: annotation.to_string(),
        value: value.to_string(),
        problem: problem.to_string(),
    }
}

/// kuma-cni's port lists: comma separated, each a 16-bit number.
fn ports(annotation: &str, value: &str) -> Result<Vec<String>, RuleError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u16>()
                .map(|port| port.to_string())
                .map_err(|_| refuse(annotation, value, "not a port"))
        })
        .collect()
}

/// kuma-cni's `GetEnabled`.
fn enabled(annotation: &str, value: &str) -> Result<bool, RuleError> {
    match value.to_ascii_lowercase().as_str() {
        "enabled" | "true" => Ok(true),
        "disabled" | "false" => Ok(false),
        _ => Err(refuse(annotation, value, "not enabled/disabled/true/false")),
    }
}

/// The rules of a pod with these addresses: IPv6 rules when it has an IPv6
/// address (dual-stack mode, Kuma's default), and then `::6` on `lo` as well.
/// Kuma also counts a link-local address (docs/meshes.md, "IP families"), which
/// `pod_ips` may not list: the parity test uses this for dual-stack pods only.
pub fn generate(settings: &SidecarSettings, pod_ips: &[IpAddr]) -> Result<IstioRules, RuleError> {
    let uid = get(settings, SIDECAR_UID, "5678");
    let outbound = get(settings, OUTBOUND_PORT_ANNOTATION, "15001");
    let inbound = get(settings, INBOUND_PORT_ANNOTATION, "15006");
    let dns_port = get(settings, DNS_PORT_ANNOTATION, "15053");
    let dns = enabled(BUILTIN_DNS, get(settings, BUILTIN_DNS, "false"))?;
    let gateway = enabled(GATEWAY, get(settings, GATEWAY, "false"))?;
    let exclude_out = ports(
        EXCLUDE_OUTBOUND_PORTS,
        get(settings, EXCLUDE_OUTBOUND_PORTS, "9901"),
    )?;
    // The application probe proxy port is appended to the inbound exclusions.
    let mut exclude_in = ports(
        EXCLUDE_INBOUND_PORTS,
        get(settings, EXCLUDE_INBOUND_PORTS, "9901"),
    )?;
    let probe = get(settings, PROBE_PROXY_PORT, "9001");
    if probe != "0" {
        exclude_in.extend(ports(PROBE_PROXY_PORT, probe)?);
    }
    let excluded_ips: Vec<&str> = get(settings, EXCLUDE_OUTBOUND_IPS, "")
        .split(',')
        .map(str::trim)
        .filter(|ip| !ip.is_empty())
        .collect();
    let family = |v6: bool| {
        let (localhost, passthrough) = if v6 {
            ("::1/128", "::6/128")
        } else {
            ("127.0.0.1/32", "127.0.0.6/32")
        };
        let mut out = vec![
            "*nat".to_string(),
            "-N KUMA_MESH_INBOUND".into(),
            "-N KUMA_MESH_OUTBOUND".into(),
            "-N KUMA_MESH_INBOUND_REDIRECT".into(),
            "-N KUMA_MESH_OUTBOUND_REDIRECT".into(),
            "-A PREROUTING -p tcp -j KUMA_MESH_INBOUND".into(),
        ];
        // KO1: excluded addresses, of this family, inserted first.
        for ip in &excluded_ips {
            if ip.contains(':') == v6 {
                out.push(format!("-A OUTPUT -d {ip} -j RETURN"));
            }
        }
        if dns {
            // KO2-KO4: inserted, inserted, then appended before the TCP jump.
            out.push(format!(
                "-A OUTPUT -p udp --dport 53 -m owner --uid-owner {uid} -j RETURN"
            ));
            out.push(format!(
                "-A OUTPUT -p udp --dport 53 -j REDIRECT --to-ports {dns_port}"
            ));
            out.push(format!(
                "-A OUTPUT -p tcp --dport 53 -m owner ! --uid-owner {uid} -j RETURN"
            ));
        }
        out.push("-A OUTPUT -p tcp -j KUMA_MESH_OUTBOUND".into());
        // KI1-KI4.
        if gateway {
            out.push("-A KUMA_MESH_INBOUND -p tcp -j RETURN".into());
        } else {
            for port in &exclude_in {
                out.push(format!(
                    "-A KUMA_MESH_INBOUND -p tcp --dport {port} -j RETURN"
                ));
            }
            out.push("-A KUMA_MESH_INBOUND -p tcp -j KUMA_MESH_INBOUND_REDIRECT".into());
        }
        // KO5-KO10.
        for port in &exclude_out {
            out.push(format!(
                "-A KUMA_MESH_OUTBOUND -p tcp --dport {port} -j RETURN"
            ));
        }
        out.extend([
            format!("-A KUMA_MESH_OUTBOUND -s {passthrough} -o lo -j RETURN"),
            format!(
                "-A KUMA_MESH_OUTBOUND -p tcp -o lo ! -d {localhost} -m owner --uid-owner {uid} \
                 -j KUMA_MESH_INBOUND_REDIRECT"
            ),
            format!("-A KUMA_MESH_OUTBOUND -p tcp -o lo -m owner ! --uid-owner {uid} -j RETURN"),
            format!("-A KUMA_MESH_OUTBOUND -m owner --uid-owner {uid} -j RETURN"),
            format!("-A KUMA_MESH_OUTBOUND -d {localhost} -j RETURN"),
            "-A KUMA_MESH_OUTBOUND -j KUMA_MESH_OUTBOUND_REDIRECT".into(),
            format!("-A KUMA_MESH_INBOUND_REDIRECT -p tcp -j REDIRECT --to-ports {inbound}"),
            format!("-A KUMA_MESH_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports {outbound}"),
            "COMMIT".into(),
        ]);
        out.join("\n") + "\n"
    };
    Ok(IstioRules {
        v4: family(false),
        v6: pod_ips.iter().any(IpAddr::is_ipv6).then(|| family(true)),
    })
}
