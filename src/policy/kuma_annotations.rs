//! The annotations kuma-cni reads to program a pod's rules, with kuma-cni's defaults
//! and validation (docs/meshes.md, "Every annotation kuma-cni reads"). Each one is
//! honoured or refused: a setting the datapath cannot reproduce is an error naming
//! the annotation, never silently dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::annotations::{bad, cidr_list, port_set, proxy_id, refuse_any, AnnotationError};
use super::cidr::Cidr;
use super::pod_capture::{CidrSelection, PodCapture, PortSelection};
use super::short_path::ShortPath;

pub const SIDECAR_UID: &str = "kuma.io/sidecar-uid";
pub const OUTBOUND_PORT: &str = "kuma.io/transparent-proxying-outbound-port";
pub const INBOUND_PORT: &str = "kuma.io/transparent-proxying-inbound-port";
pub const IP_FAMILY_MODE: &str = "kuma.io/transparent-proxying-ip-family-mode";
pub const EXCLUDE_OUTBOUND_PORTS: &str = "traffic.kuma.io/exclude-outbound-ports";
pub const EXCLUDE_INBOUND_PORTS: &str = "traffic.kuma.io/exclude-inbound-ports";
pub const PROBE_PROXY_PORT: &str = "kuma.io/application-probe-proxy-port";
pub const GATEWAY: &str = "kuma.io/gateway";
pub const BUILTIN_DNS: &str = "kuma.io/builtin-dns";
pub const BUILTIN_DNS_PORT: &str = "kuma.io/builtin-dns-port";
pub const EXCLUDE_OUTBOUND_IPS: &str = "traffic.kuma.io/exclude-outbound-ips";
pub const EXCLUDE_INBOUND_IPS: &str = "traffic.kuma.io/exclude-inbound-ips";
pub const EXCLUDE_OUTBOUND_PORTS_FOR_UIDS: &str = "traffic.kuma.io/exclude-outbound-ports-for-uids";
pub const DROP_INVALID_PACKETS: &str = "traffic.kuma.io/drop-invalid-packets";
pub const IPTABLES_LOGS: &str = "traffic.kuma.io/iptables-logs";
pub const TRANSPARENT_PROXYING: &str = "kuma.io/transparent-proxying";
pub const TRANSPARENT_PROXYING_EBPF: &str = "kuma.io/transparent-proxying-ebpf";
pub const TRANSPARENT_PROXY_CONFIG: &str = "traffic.kuma.io/transparent-proxy-config";

/// kuma-dp's UID (Kuma's `OwnerDefaultUID`).
pub const KUMA_DP_UID: u32 = 5678;
/// Envoy's admin port, kuma-cni's default exclusion both ways.
pub const ADMIN_PORT: u16 = 9901;
pub const DEFAULT_PROBE_PROXY_PORT: u16 = 9001;
pub const DEFAULT_OUTBOUND_PORT: u16 = 15001;
/// Both IP families: Kuma has one inbound port.
pub const DEFAULT_INBOUND_PORT: u16 = 15006;
pub const DEFAULT_DNS_PORT: u16 = 15053;
/// Kuma's rules match the owner UID only. No process can have GID 4294967295
/// (`(gid_t)-1` means "unchanged" to setgid), so the datapath's GID test never
/// matches and a process whose GID only is kuma-dp's is an application, as for Kuma.
pub const NO_PROXY_GID: u32 = u32::MAX;

/// A Kuma pod's capture settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KumaSettings {
    pub proxy_uid: u32,
    pub outbound_port: u16,
    pub inbound_port: u16,
    pub dns_port: u16,
    pub gateway: bool,
    pub builtin_dns: bool,
    pub exclude_outbound_ports: BTreeSet<u16>,
    /// Includes the application probe proxy port.
    pub exclude_inbound_ports: BTreeSet<u16>,
    pub exclude_outbound_cidrs: Vec<Cidr>,
}

impl KumaSettings {
    pub fn parse(annotations: &BTreeMap<String, String>) -> Result<Self, AnnotationError> {
        let get = |name: &'static str| annotations.get(name).map(String::as_str);
        refuse_unsupported(annotations)?;
        let mut exclude_inbound_ports = match get(EXCLUDE_INBOUND_PORTS) {
            None => BTreeSet::from([ADMIN_PORT]),
            Some(value) => port_set(EXCLUDE_INBOUND_PORTS, value)?,
        };
        let probe_port = match get(PROBE_PROXY_PORT) {
            None => DEFAULT_PROBE_PROXY_PORT,
            Some(value) if value.trim() == "0" => 0,
            Some(value) => one_port(PROBE_PROXY_PORT, value)?,
        };
        if probe_port != 0 {
            exclude_inbound_ports.insert(probe_port);
        }
        Ok(KumaSettings {
            proxy_uid: match get(SIDECAR_UID) {
                None => KUMA_DP_UID,
                Some(value) => proxy_id(SIDECAR_UID, value)?,
            },
            outbound_port: port_or(OUTBOUND_PORT, get(OUTBOUND_PORT), DEFAULT_OUTBOUND_PORT)?,
            inbound_port: port_or(INBOUND_PORT, get(INBOUND_PORT), DEFAULT_INBOUND_PORT)?,
            dns_port: port_or(BUILTIN_DNS_PORT, get(BUILTIN_DNS_PORT), DEFAULT_DNS_PORT)?,
            gateway: enabled(GATEWAY, get(GATEWAY))?,
            builtin_dns: enabled(BUILTIN_DNS, get(BUILTIN_DNS))?,
            exclude_outbound_ports: match get(EXCLUDE_OUTBOUND_PORTS) {
                None => BTreeSet::from([ADMIN_PORT]),
                Some(value) => port_set(EXCLUDE_OUTBOUND_PORTS, value)?,
            },
            exclude_inbound_ports,
            exclude_outbound_cidrs: match get(EXCLUDE_OUTBOUND_IPS) {
                None => Vec::new(),
                Some(value) => cidr_list(EXCLUDE_OUTBOUND_IPS, value)?,
            },
        })
    }

    /// The capture of this pod with these addresses.
    pub fn capture(&self, ips: &[IpAddr], short_path: ShortPath) -> PodCapture {
        PodCapture {
            capture_outbound: true,
            capture_inbound: !self.gateway,
            capture_dns: self.builtin_dns,
            short_path,
            proxy_uid: self.proxy_uid,
            proxy_gid: NO_PROXY_GID,
            outbound_port: self.outbound_port,
            inbound_port: self.inbound_port,
            dns_port: self.dns_port,
            ips: ips.to_vec(),
            unsteered_ips: Vec::new(),
            exclude_outbound_ports: self.exclude_outbound_ports.clone(),
            include_outbound_ports: PortSelection::Only(BTreeSet::new()),
            include_outbound_cidrs: CidrSelection::All,
            exclude_outbound_cidrs: self.exclude_outbound_cidrs.clone(),
            include_inbound_ports: PortSelection::All,
            exclude_inbound_ports: self.exclude_inbound_ports.clone(),
            interface_routes: Vec::new(),
            kuma_rules: true,
            linkerd_rules: false,
        }
    }
}

/// Settings kuma-cni would program that the datapath cannot reproduce.
fn refuse_unsupported(annotations: &BTreeMap<String, String>) -> Result<(), AnnotationError> {
    let get = |name: &'static str| annotations.get(name).map(String::as_str);
    refuse_any(
        annotations,
        &[
            (
                TRANSPARENT_PROXY_CONFIG,
                "a full transparent-proxy configuration is not read yet (leave the control \
                 plane's transparentProxyConfigMap empty)",
            ),
            (
                EXCLUDE_INBOUND_IPS,
                "excluding inbound connections by source address is not supported",
            ),
            (
                EXCLUDE_OUTBOUND_PORTS_FOR_UIDS,
                "per-UID outbound port exclusions are not supported",
            ),
        ],
    )?;
    for (annotation, why) in [
        (
            DROP_INVALID_PACKETS,
            "there is no mangle-table rule to drop invalid packets",
        ),
        (IPTABLES_LOGS, "there are no iptables rules to log"),
        (
            TRANSPARENT_PROXYING_EBPF,
            "Kuma's own eBPF capture would capture the pod a second time",
        ),
    ] {
        if enabled(annotation, get(annotation))? {
            return Err(bad(annotation, get(annotation).unwrap_or(""), why));
        }
    }
    if let Some(value) = get(TRANSPARENT_PROXYING) {
        if value != "enabled" {
            return Err(bad(
                TRANSPARENT_PROXYING,
                value,
                "Kuma on Kubernetes always captures; only \"enabled\" is meaningful",
            ));
        }
    }
    match get(IP_FAMILY_MODE) {
        None | Some("dualstack") => Ok(()),
        Some(value @ "ipv4") => Err(bad(
            IP_FAMILY_MODE,
            value,
            "leaving IPv6 uncaptured is not supported (use dualstack)",
        )),
        Some(value) => Err(bad(
            IP_FAMILY_MODE,
            value,
            "Kuma accepts only \"dualstack\" or \"ipv4\"",
        )),
    }
}

/// kuma-cni's booleans (`GetEnabled`): enabled/disabled/true/false, any case.
fn enabled(annotation: &'static str, value: Option<&str>) -> Result<bool, AnnotationError> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("disabled") | Some("false") => Ok(false),
        Some("enabled") | Some("true") => Ok(true),
        Some(_) => Err(bad(
            annotation,
            value.unwrap_or(""),
            "not one of \"enabled\", \"disabled\", \"true\", \"false\"",
        )),
    }
}

fn one_port(annotation: &'static str, value: &str) -> Result<u16, AnnotationError> {
    let ports = port_set(annotation, value)?;
    match ports.iter().next() {
        Some(port) if ports.len() == 1 => Ok(*port),
        _ => Err(bad(annotation, value, "not exactly one port")),
    }
}

fn port_or(
    annotation: &'static str,
    value: Option<&str>,
    default: u16,
) -> Result<u16, AnnotationError> {
    value.map_or(Ok(default), |value| one_port(annotation, value))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<KumaSettings, AnnotationError> {
        KumaSettings::parse(&crate::policy::annotations::annotation_map(pairs))
    }

    #[test]
    fn kuma_cni_defaults() {
        let settings = parse(&[]).unwrap();
        assert_eq!(settings.proxy_uid, 5678);
        assert_eq!(
            (
                settings.outbound_port,
                settings.inbound_port,
                settings.dns_port
            ),
            (15001, 15006, 15053)
        );
        assert!(!settings.gateway && !settings.builtin_dns);
        assert_eq!(settings.exclude_outbound_ports, BTreeSet::from([9901]));
        assert_eq!(settings.exclude_inbound_ports, BTreeSet::from([9001, 9901]));
        let capture = settings.capture(&["10.0.0.5".parse().unwrap()], ShortPath::Proxy);
        assert_default_capture(&capture, 5678);
        assert!(capture.kuma_rules);
    }

    /// A default Kuma or Linkerd pod: both ways (no DNS) on every range and
    /// inbound port, by the proxy's UID alone.
    pub(in crate::policy) fn assert_default_capture(capture: &PodCapture, proxy_uid: u32) {
        assert!(capture.capture_outbound && capture.capture_inbound && !capture.capture_dns);
        assert_eq!(
            (capture.proxy_uid, capture.proxy_gid),
            (proxy_uid, NO_PROXY_GID)
        );
        assert_eq!(capture.include_outbound_cidrs, CidrSelection::All);
        assert_eq!(capture.include_inbound_ports, PortSelection::All);
    }

    #[test]
    fn what_the_injector_writes_is_honoured() {
        let settings = parse(&[
            (SIDECAR_UID, "5700"),
            (OUTBOUND_PORT, "15101"),
            (INBOUND_PORT, "15106"),
            (BUILTIN_DNS, "enabled"),
            (BUILTIN_DNS_PORT, "15153"),
            (TRANSPARENT_PROXYING, "enabled"),
            (IP_FAMILY_MODE, "dualstack"),
            (EXCLUDE_OUTBOUND_PORTS, "5432, 6379"),
            (EXCLUDE_INBOUND_PORTS, "8081"),
            (PROBE_PROXY_PORT, "9002"),
            (EXCLUDE_OUTBOUND_IPS, "10.96.0.0/12,192.0.2.7"),
            (DROP_INVALID_PACKETS, "false"),
            (IPTABLES_LOGS, "disabled"),
        ])
        .unwrap();
        assert_eq!(settings.proxy_uid, 5700);
        assert_eq!(
            (
                settings.outbound_port,
                settings.inbound_port,
                settings.dns_port
            ),
            (15101, 15106, 15153)
        );
        assert!(settings.builtin_dns);
        // The pod's list replaces the admin-port default; the probe port is added.
        assert_eq!(
            settings.exclude_outbound_ports,
            BTreeSet::from([5432, 6379])
        );
        assert_eq!(settings.exclude_inbound_ports, BTreeSet::from([8081, 9002]));
        assert_eq!(settings.exclude_outbound_cidrs.len(), 2);
        assert!(parse(&[(PROBE_PROXY_PORT, "0")])
            .unwrap()
            .exclude_inbound_ports
            .eq(&BTreeSet::from([9901])));
    }

    #[test]
    fn a_gateway_has_no_inbound_capture() {
        for value in ["enabled", "true", "TRUE"] {
            let settings = parse(&[(GATEWAY, value)]).unwrap();
            assert!(
                !settings.capture(&[], ShortPath::Off).capture_inbound,
                "{value}"
            );
        }
        assert!(!parse(&[(GATEWAY, "disabled")]).unwrap().gateway);
    }

    #[test]
    fn settings_that_cannot_be_honoured_name_their_annotation() {
        let cases = [
            (TRANSPARENT_PROXY_CONFIG, "redirect: {}"),
            (EXCLUDE_INBOUND_IPS, "10.0.0.1"),
            (EXCLUDE_OUTBOUND_PORTS_FOR_UIDS, "tcp:22:0"),
            (DROP_INVALID_PACKETS, "true"),
            (IPTABLES_LOGS, "enabled"),
            (TRANSPARENT_PROXYING_EBPF, "enabled"),
            (TRANSPARENT_PROXYING, "disabled"),
            (IP_FAMILY_MODE, "ipv4"),
            (IP_FAMILY_MODE, "ipv6"),
            // Bad values, as kuma-cni refuses them.
            (GATEWAY, "yes"),
            (BUILTIN_DNS, "on"),
            (INBOUND_PORT, "15006,15007"),
            (OUTBOUND_PORT, "port"),
            (BUILTIN_DNS_PORT, "70000"),
            (EXCLUDE_OUTBOUND_PORTS, "80,x"),
            (EXCLUDE_INBOUND_PORTS, "-1"),
            (PROBE_PROXY_PORT, "9001,9002"),
            (EXCLUDE_OUTBOUND_IPS, "10.0.0.0/33"),
            (SIDECAR_UID, "kuma-dp"),
            (SIDECAR_UID, "0"),
        ];
        for (annotation, value) in cases {
            crate::policy::annotations::assert_refused(parse, annotation, value);
        }
    }
}
