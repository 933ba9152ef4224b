//! Istio's `traffic.sidecar.istio.io/*` annotations, with Istio's defaults and
//! meaning (docs/istio-capture.md, "Annotations"). Lists are comma separated, spaces
//! allowed; a bad value is an error naming the annotation and the value.

use std::collections::{BTreeMap, BTreeSet};

use super::cidr::Cidr;
use super::pod_capture::{CidrSelection, PortSelection, NEVER_CAPTURED_INBOUND, STATUS_PORT};

pub const INCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/includeOutboundIPRanges";
pub const EXCLUDE_OUTBOUND_IP_RANGES: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
pub const INCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeOutboundPorts";
pub const EXCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
pub const INCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeInboundPorts";
pub const EXCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
pub const EXCLUDE_INTERFACES: &str = "traffic.sidecar.istio.io/excludeInterfaces";
pub const INTERCEPTION_MODE: &str = "sidecar.istio.io/interceptionMode";
pub const SIDECAR_STATUS: &str = "sidecar.istio.io/status";
pub const SIDECAR_INJECT: &str = "sidecar.istio.io/inject";
pub const AMBIENT_REDIRECTION: &str = "ambient.istio.io/redirection";

/// Per-pod caps on the lists that become entries of node-wide maps (ml_port_rules,
/// the outbound CIDR tries, bpf/meshlane.h). Without them one pod could fill a map
/// and make every later ADD on the node fail. Sized so that [`CAPPED_PODS`] pods, every
/// one at every cap, still fit (a test in datapath::pod_record checks it against the
/// map sizes); docs/reliability.md ("Map capacity") gives the reasoning.
pub mod limits {
    /// Pods a node must hold with every list at its cap: large nodes run ~500 pods
    /// (kubelet's default maximum is 110).
    pub const CAPPED_PODS: usize = 512;
    /// Ports per port annotation. Four lists share ml_port_rules (65,536 entries),
    /// and the exclude-inbound one always holds 4 ports of Istio's own:
    /// 512 × (4 × 30 + 4) = 63,488.
    pub const PORTS_PER_ANNOTATION: usize = 30;
    /// Ranges per range annotation; each list has its own trie of 65,536 entries:
    /// 512 × 128 = 65,536.
    pub const CIDRS_PER_ANNOTATION: usize = 128;
}

/// The capture settings the annotations ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficAnnotations {
    pub include_outbound_cidrs: CidrSelection,
    pub exclude_outbound_cidrs: Vec<Cidr>,
    pub include_outbound_ports: PortSelection,
    pub exclude_outbound_ports: BTreeSet<u16>,
    pub include_inbound_ports: PortSelection,
    /// Always holds 15008, 15020, 15021 and 15090 too.
    pub exclude_inbound_ports: BTreeSet<u16>,
    pub exclude_interfaces: Vec<String>,
}

/// A value Istio would refuse, with the annotation that carried it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {annotation}={value:?}: {problem}")]
pub struct AnnotationError {
    pub annotation: &'static str,
    pub value: String,
    pub problem: String,
}

impl TrafficAnnotations {
    /// Reads every traffic annotation, applying Istio's default where one is absent.
    pub fn parse(annotations: &BTreeMap<String, String>) -> Result<Self, AnnotationError> {
        let get = |name: &'static str| annotations.get(name).map(String::as_str);
        Ok(TrafficAnnotations {
            include_outbound_cidrs: match get(INCLUDE_OUTBOUND_IP_RANGES) {
                None => CidrSelection::All,
                Some(value) => cidr_selection(INCLUDE_OUTBOUND_IP_RANGES, value)?,
            },
            exclude_outbound_cidrs: match get(EXCLUDE_OUTBOUND_IP_RANGES) {
                None => Vec::new(),
                Some(value) => cidr_list(EXCLUDE_OUTBOUND_IP_RANGES, value)?,
            },
            include_outbound_ports: match get(INCLUDE_OUTBOUND_PORTS) {
                None => PortSelection::Only(BTreeSet::new()),
                Some(value) => port_selection(INCLUDE_OUTBOUND_PORTS, value)?,
            },
            // Istio's default is its status port, and only when the annotation is
            // absent: a pod's own list replaces it.
            exclude_outbound_ports: match get(EXCLUDE_OUTBOUND_PORTS) {
                None => BTreeSet::from([STATUS_PORT]),
                Some(value) => port_set_allowing_wildcard(EXCLUDE_OUTBOUND_PORTS, value)?,
            },
            include_inbound_ports: match get(INCLUDE_INBOUND_PORTS) {
                None => PortSelection::All,
                Some(value) => port_selection(INCLUDE_INBOUND_PORTS, value)?,
            },
            exclude_inbound_ports: {
                let mut ports = match get(EXCLUDE_INBOUND_PORTS) {
                    None => BTreeSet::from([STATUS_PORT]),
                    Some(value) => port_set_allowing_wildcard(EXCLUDE_INBOUND_PORTS, value)?,
                };
                ports.extend(NEVER_CAPTURED_INBOUND);
                ports
            },
            exclude_interfaces: match get(EXCLUDE_INTERFACES) {
                None => Vec::new(),
                Some(value) => interface_list(EXCLUDE_INTERFACES, value)?,
            },
        })
    }
}

pub(super) fn bad(
    annotation: &'static str,
    value: &str,
    problem: impl Into<String>,
) -> AnnotationError {
    AnnotationError {
        annotation,
        value: value.to_owned(),
        problem: problem.into(),
    }
}

/// A proxy's UID or GID as a number; 0 would exempt every root process from
/// capture, and 4294967295 is no id (`(uid_t)-1`).
pub(super) fn proxy_id(annotation: &'static str, value: &str) -> Result<u32, AnnotationError> {
    match value.trim().parse::<u32>() {
        Ok(id) if id > 0 && id < u32::MAX => Ok(id),
        _ => Err(bad(
            annotation,
            value,
            "not an id between 1 and 4294967294 (names are not resolved)",
        )),
    }
}

/// Refuses the first of `refused` the pod carries, whatever its value: a setting
/// the datapath cannot reproduce (each with why).
pub(super) fn refuse_any(
    annotations: &BTreeMap<String, String>,
    refused: &[(&'static str, &str)],
) -> Result<(), AnnotationError> {
    for (annotation, why) in refused {
        if let Some(value) = annotations.get(*annotation) {
            return Err(bad(annotation, value, *why));
        }
    }
    Ok(())
}

/// The unit tests' annotations from pairs.
#[cfg(test)]
pub(super) fn annotation_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The unit tests' check of a refused annotation: `parse` of that one pair fails
/// naming it. Returns the message.
#[cfg(test)]
pub(super) fn assert_refused<T: std::fmt::Debug>(
    parse: impl Fn(&[(&str, &str)]) -> Result<T, AnnotationError>,
    annotation: &str,
    value: &str,
) -> String {
    let err = parse(&[(annotation, value)]).unwrap_err();
    assert_eq!(err.annotation, annotation, "{annotation}={value}");
    let text = err.to_string();
    assert!(text.contains(annotation), "{text}");
    text
}

/// The items of a comma-separated list; an empty value is an empty list.
pub(super) fn items(value: &str) -> impl Iterator<Item = &str> {
    let empty = value.trim().is_empty();
    value.split(',').map(str::trim).filter(move |_| !empty)
}

pub(super) fn port(
    annotation: &'static str,
    value: &str,
    item: &str,
) -> Result<u16, AnnotationError> {
    if item.is_empty() {
        return Err(bad(annotation, value, "empty item in the port list"));
    }
    match item.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(bad(
            annotation,
            value,
            format!("{item:?} is not a port (1-65535)"),
        )),
    }
}

pub(super) fn port_set(
    annotation: &'static str,
    value: &str,
) -> Result<BTreeSet<u16>, AnnotationError> {
    let ports = items(value)
        .map(|item| port(annotation, value, item))
        .collect::<Result<BTreeSet<u16>, _>>()?;
    within_port_cap(annotation, value, ports.len())?;
    Ok(ports)
}

/// `count` ports (distinct, or a range's) within [`limits::PORTS_PER_ANNOTATION`].
pub(super) fn within_port_cap(
    annotation: &'static str,
    value: &str,
    count: usize,
) -> Result<(), AnnotationError> {
    within_cap(
        annotation,
        value,
        count,
        limits::PORTS_PER_ANNOTATION,
        "ports",
    )
}

/// A list longer than its per-pod cap; the value is cut short in the message.
pub(super) fn within_cap(
    annotation: &'static str,
    value: &str,
    count: usize,
    cap: usize,
    what: &str,
) -> Result<(), AnnotationError> {
    if count <= cap {
        return Ok(());
    }
    const SHOWN: usize = 64;
    let shown = match value.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_owned(),
    };
    Err(bad(
        annotation,
        &shown,
        format!(
            "{count} distinct {what}, more than the limit of {cap} per pod (the node's \
             BPF maps are shared by every pod; see docs/reliability.md)"
        ),
    ))
}

/// `*` or a list.
fn port_selection(annotation: &'static str, value: &str) -> Result<PortSelection, AnnotationError> {
    if value.trim() == "*" {
        return Ok(PortSelection::All);
    }
    port_set(annotation, value).map(PortSelection::Only)
}

/// Exclusion lists: Istio accepts `*` there too, and programs no exclusion for it.
fn port_set_allowing_wildcard(
    annotation: &'static str,
    value: &str,
) -> Result<BTreeSet<u16>, AnnotationError> {
    if value.trim() == "*" {
        return Ok(BTreeSet::new());
    }
    port_set(annotation, value)
}

pub(super) fn cidr_list(
    annotation: &'static str,
    value: &str,
) -> Result<Vec<Cidr>, AnnotationError> {
    let cidrs = items(value)
        .map(|item| {
            if item.is_empty() {
                return Err(bad(annotation, value, "empty item in the range list"));
            }
            item.parse::<Cidr>()
                .map_err(|err| bad(annotation, value, err.to_string()))
        })
        .collect::<Result<Vec<Cidr>, _>>()?;
    // Duplicates (and the same prefix written twice) share one trie entry.
    let distinct = cidrs.iter().collect::<BTreeSet<_>>().len();
    within_cap(
        annotation,
        value,
        distinct,
        limits::CIDRS_PER_ANNOTATION,
        "ranges",
    )?;
    Ok(cidrs)
}

fn cidr_selection(annotation: &'static str, value: &str) -> Result<CidrSelection, AnnotationError> {
    if value.trim() == "*" {
        return Ok(CidrSelection::All);
    }
    cidr_list(annotation, value).map(CidrSelection::Only)
}

/// Linux interface names: 1-15 bytes, no `/`, `:` or whitespace, not `.`/`..`.
fn interface_list(annotation: &'static str, value: &str) -> Result<Vec<String>, AnnotationError> {
    items(value)
        .map(|item| {
            let valid = !item.is_empty()
                && item.len() < 16
                && item != "."
                && item != ".."
                && !item.contains(['/', ':'])
                && !item.chars().any(char::is_whitespace);
            if valid {
                Ok(item.to_owned())
            } else {
                Err(bad(
                    annotation,
                    value,
                    format!("{item:?} is not an interface name"),
                ))
            }
        })
        .collect()
}

/// Istio reads booleans with Go's `strconv.ParseBool`.
pub fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<TrafficAnnotations, AnnotationError> {
        TrafficAnnotations::parse(&annotation_map(pairs))
    }

    fn ports(list: &[u16]) -> BTreeSet<u16> {
        list.iter().copied().collect()
    }

    #[test]
    fn no_annotations_mean_istios_defaults() {
        let settings = parse(&[]).unwrap();
        assert_eq!(settings.include_outbound_cidrs, CidrSelection::All);
        assert!(settings.exclude_outbound_cidrs.is_empty());
        assert_eq!(
            settings.include_outbound_ports,
            PortSelection::Only(ports(&[]))
        );
        assert_eq!(settings.exclude_outbound_ports, ports(&[15020]));
        assert_eq!(settings.include_inbound_ports, PortSelection::All);
        assert_eq!(
            settings.exclude_inbound_ports,
            ports(&[15008, 15020, 15021, 15090])
        );
        assert!(settings.exclude_interfaces.is_empty());
    }

    #[test]
    fn every_annotation_is_read() {
        let settings = parse(&[
            (INCLUDE_OUTBOUND_IP_RANGES, "10.0.0.0/8, fd00::/8"),
            (
                EXCLUDE_OUTBOUND_IP_RANGES,
                "10.96.0.0/12,169.254.169.254/32",
            ),
            (INCLUDE_OUTBOUND_PORTS, "8443"),
            (EXCLUDE_OUTBOUND_PORTS, "3306, 5432"),
            (INCLUDE_INBOUND_PORTS, "8080,9090"),
            (EXCLUDE_INBOUND_PORTS, "9999"),
            (EXCLUDE_INTERFACES, "net1, eth9"),
        ])
        .unwrap();
        assert_eq!(
            settings.include_outbound_cidrs,
            CidrSelection::Only(vec![
                "10.0.0.0/8".parse().unwrap(),
                "fd00::/8".parse().unwrap()
            ])
        );
        assert_eq!(settings.exclude_outbound_cidrs.len(), 2);
        assert_eq!(
            settings.include_outbound_ports,
            PortSelection::Only(ports(&[8443]))
        );
        // A pod's own exclusion list replaces the 15020 default.
        assert_eq!(settings.exclude_outbound_ports, ports(&[3306, 5432]));
        assert_eq!(
            settings.include_inbound_ports,
            PortSelection::Only(ports(&[8080, 9090]))
        );
        assert_eq!(
            settings.exclude_inbound_ports,
            ports(&[9999, 15008, 15020, 15021, 15090])
        );
        assert_eq!(settings.exclude_interfaces, vec!["net1", "eth9"]);
    }

    #[test]
    fn wildcards_and_empty_values() {
        let settings = parse(&[
            (INCLUDE_OUTBOUND_IP_RANGES, ""),
            (INCLUDE_INBOUND_PORTS, ""),
            (INCLUDE_OUTBOUND_PORTS, "*"),
            (EXCLUDE_OUTBOUND_PORTS, ""),
        ])
        .unwrap();
        // "" captures no range and no inbound port: only the include-ports rule remains.
        assert_eq!(settings.include_outbound_cidrs, CidrSelection::Only(vec![]));
        assert_eq!(
            settings.include_inbound_ports,
            PortSelection::Only(ports(&[]))
        );
        assert_eq!(settings.include_outbound_ports, PortSelection::All);
        assert!(settings.exclude_outbound_ports.is_empty());
        let star = parse(&[(INCLUDE_OUTBOUND_IP_RANGES, " * ")]).unwrap();
        assert_eq!(star.include_outbound_cidrs, CidrSelection::All);
    }

    #[test]
    fn bad_values_name_the_annotation_and_value() {
        let cases = [
            (INCLUDE_OUTBOUND_IP_RANGES, "10.0.0.0/33"),
            (INCLUDE_OUTBOUND_IP_RANGES, "10.0.0.0/8,,"),
            (EXCLUDE_OUTBOUND_IP_RANGES, "not-a-cidr"),
            (EXCLUDE_OUTBOUND_IP_RANGES, "*"),
            (INCLUDE_OUTBOUND_PORTS, "65536"),
            (EXCLUDE_OUTBOUND_PORTS, "80,http"),
            (INCLUDE_INBOUND_PORTS, "0"),
            (EXCLUDE_INBOUND_PORTS, "-1"),
            (EXCLUDE_INTERFACES, "eth0,a/b"),
            (EXCLUDE_INTERFACES, "averyveryverylongname"),
        ];
        for (annotation, value) in cases {
            let text = assert_refused(parse, annotation, value);
            assert!(text.contains(value), "{text}");
        }
    }

    #[test]
    fn lists_longer_than_the_per_pod_caps_are_refused_naming_the_limit() {
        let ports = |n: usize| {
            (1..=n)
                .map(|port| port.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let cidrs = |n: usize| {
            (0..n)
                .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
                .collect::<Vec<_>>()
                .join(",")
        };
        let port_lists = [
            INCLUDE_OUTBOUND_PORTS,
            EXCLUDE_OUTBOUND_PORTS,
            INCLUDE_INBOUND_PORTS,
            EXCLUDE_INBOUND_PORTS,
        ];
        let cap = limits::PORTS_PER_ANNOTATION;
        for annotation in port_lists {
            assert!(parse(&[(annotation, &ports(cap))]).is_ok(), "{annotation}");
            let err = parse(&[(annotation, &ports(cap + 1))]).unwrap_err();
            assert_eq!(err.annotation, annotation);
            let text = err.to_string();
            assert!(text.contains(&format!("limit of {cap} per pod")), "{text}");
            // The whole list of 65,535 ports is not repeated in the message.
            let huge = parse(&[(annotation, &ports(65535))]).unwrap_err();
            assert!(huge.to_string().len() < 400, "{huge}");
        }
        // Duplicates are one entry each.
        let repeated = vec!["80"; 1000].join(",");
        assert!(parse(&[(EXCLUDE_OUTBOUND_PORTS, &repeated)]).is_ok());

        let cap = limits::CIDRS_PER_ANNOTATION;
        for annotation in [INCLUDE_OUTBOUND_IP_RANGES, EXCLUDE_OUTBOUND_IP_RANGES] {
            assert!(parse(&[(annotation, &cidrs(cap))]).is_ok(), "{annotation}");
            let err = parse(&[(annotation, &cidrs(cap + 1))]).unwrap_err();
            assert_eq!(err.annotation, annotation);
            assert!(err.to_string().contains(&format!("limit of {cap} per pod")));
        }
        // "*" is a flag, not a list: never over the cap.
        assert!(parse(&[(INCLUDE_OUTBOUND_PORTS, "*")]).is_ok());
    }

    #[test]
    fn go_booleans() {
        for yes in ["1", "t", "T", "true", "TRUE", "True"] {
            assert_eq!(parse_go_bool(yes), Some(true));
        }
        for no in ["0", "f", "F", "false", "FALSE", "False"] {
            assert_eq!(parse_go_bool(no), Some(false));
        }
        assert_eq!(parse_go_bool("yes"), None);
        assert_eq!(parse_go_bool(""), None);
    }
}
