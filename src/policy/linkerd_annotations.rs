//! The `config.linkerd.io/*` pod annotations that change a Linkerd pod's rules,
//! with linkerd-cni's defaults and validation (docs/meshes.md, "Annotations").
//! Each one is honoured or refused: a setting the datapath cannot reproduce is an
//! error naming the annotation, never silently dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::annotations::{
    bad, items, port, proxy_id, refuse_any, within_port_cap, AnnotationError,
};
use super::kuma_annotations::NO_PROXY_GID;
use super::pod_capture::{CidrSelection, PodCapture, PortSelection};
use super::short_path::ShortPath;

pub const SKIP_OUTBOUND_PORTS: &str = "config.linkerd.io/skip-outbound-ports";
pub const SKIP_INBOUND_PORTS: &str = "config.linkerd.io/skip-inbound-ports";
pub const SKIP_SUBNETS: &str = "config.linkerd.io/skip-subnets";
pub const PROXY_UID: &str = "config.linkerd.io/proxy-uid";
pub const PROXY_GID: &str = "config.linkerd.io/proxy-gid";
pub const INBOUND_PORT: &str = "config.linkerd.io/inbound-port";
pub const OUTBOUND_PORT: &str = "config.linkerd.io/outbound-port";
pub const ADMIN_PORT: &str = "config.linkerd.io/admin-port";
pub const CONTROL_PORT: &str = "config.linkerd.io/control-port";
pub const CLOSE_WAIT_TIMEOUT: &str = "config.linkerd.io/close-wait-timeout";
/// The label of Linkerd's own control-plane pods.
pub const CONTROL_PLANE_COMPONENT: &str = "linkerd.io/control-plane-component";
/// The API server's ports a control-plane pod reaches around its proxy: what
/// linkerd-cni skips when it cannot read the `kubernetes` Service's ports.
pub const API_SERVER_PORTS: [u16; 2] = [443, 6443];

/// linkerd2-proxy's UID (the CNI chart's `proxyUID`).
pub const LINKERD_PROXY_UID: u32 = 2102;
pub const DEFAULT_OUTBOUND_PORT: u16 = 4140;
/// Both IP families: Linkerd has one inbound port.
pub const DEFAULT_INBOUND_PORT: u16 = 4143;
pub const DEFAULT_ADMIN_PORT: u16 = 4191;
pub const DEFAULT_CONTROL_PORT: u16 = 4190;

/// A Linkerd pod's capture settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkerdSettings {
    pub proxy_uid: u32,
    /// `None`: Linkerd's default `proxyGID: -1`, no GID rule.
    pub proxy_gid: Option<u32>,
    pub outbound_port: u16,
    pub inbound_port: u16,
    pub skip_outbound_ports: BTreeSet<u16>,
    /// Includes the proxy's admin and control ports.
    pub skip_inbound_ports: BTreeSet<u16>,
}

impl LinkerdSettings {
    /// `labels`: the pod's, when the API gave them (a control-plane pod's label
    /// adds the API server's ports to the outbound skips, as linkerd-cni does).
    pub fn parse(
        annotations: &BTreeMap<String, String>,
        labels: Option<&BTreeMap<String, String>>,
    ) -> Result<Self, AnnotationError> {
        let get = |name: &'static str| annotations.get(name).map(String::as_str);
        refuse_any(
            annotations,
            &[
                (
                    SKIP_SUBNETS,
                    "excluding inbound connections by source address is not supported",
                ),
                (
                    CLOSE_WAIT_TIMEOUT,
                    "meshlane does not set conntrack timeouts (linkerd-init's sysctl)",
                ),
            ],
        )?;
        let one = |annotation, default| match get(annotation) {
            None => Ok(default),
            Some(value) => port(annotation, value, value.trim()),
        };
        // The proxy's own ports are never redirected inbound; the pod's list adds to them.
        let mut skip_inbound_ports = BTreeSet::from([
            one(ADMIN_PORT, DEFAULT_ADMIN_PORT)?,
            one(CONTROL_PORT, DEFAULT_CONTROL_PORT)?,
        ]);
        if let Some(value) = get(SKIP_INBOUND_PORTS) {
            skip_inbound_ports.extend(ports_and_ranges(SKIP_INBOUND_PORTS, value)?);
        }
        let mut skip_outbound_ports = match get(SKIP_OUTBOUND_PORTS) {
            None => BTreeSet::new(),
            Some(value) => ports_and_ranges(SKIP_OUTBOUND_PORTS, value)?,
        };
        let control_plane = labels
            .and_then(|labels| labels.get(CONTROL_PLANE_COMPONENT))
            .is_some_and(|value| !value.is_empty());
        if control_plane {
            skip_outbound_ports.extend(API_SERVER_PORTS);
        }
        Ok(LinkerdSettings {
            proxy_uid: match get(PROXY_UID) {
                None => LINKERD_PROXY_UID,
                Some(value) => proxy_id(PROXY_UID, value)?,
            },
            // -1 is Linkerd's own "no GID rule" (the chart's default `proxyGID`).
            proxy_gid: match get(PROXY_GID).map(str::trim) {
                None | Some("-1") => None,
                Some(value) => Some(proxy_id(PROXY_GID, value)?),
            },
            outbound_port: one(OUTBOUND_PORT, DEFAULT_OUTBOUND_PORT)?,
            inbound_port: one(INBOUND_PORT, DEFAULT_INBOUND_PORT)?,
            skip_outbound_ports,
            skip_inbound_ports,
        })
    }

    /// The capture of this pod with these addresses.
    pub fn capture(&self, ips: &[IpAddr], short_path: ShortPath) -> PodCapture {
        PodCapture {
            capture_outbound: true,
            capture_inbound: true,
            capture_dns: false,
            short_path,
            proxy_uid: self.proxy_uid,
            proxy_gid: self.proxy_gid.unwrap_or(NO_PROXY_GID),
            outbound_port: self.outbound_port,
            inbound_port: self.inbound_port,
            // Unused: Linkerd redirects no DNS.
            dns_port: self.outbound_port,
            ips: ips.to_vec(),
            unsteered_ips: Vec::new(),
            exclude_outbound_ports: self.skip_outbound_ports.clone(),
            include_outbound_ports: PortSelection::Only(BTreeSet::new()),
            include_outbound_cidrs: CidrSelection::All,
            exclude_outbound_cidrs: Vec::new(),
            include_inbound_ports: PortSelection::All,
            exclude_inbound_ports: self.skip_inbound_ports.clone(),
            interface_routes: Vec::new(),
            kuma_rules: false,
            linkerd_rules: true,
        }
    }
}

/// proxy-init's port list: ports and inclusive ranges `low-high`. proxy-init logs
/// and drops an item it cannot parse; meshlane refuses it.
fn ports_and_ranges(
    annotation: &'static str,
    value: &str,
) -> Result<BTreeSet<u16>, AnnotationError> {
    let mut ports = BTreeSet::new();
    for item in items(value) {
        match item.split_once('-') {
            None => {
                ports.insert(port(annotation, value, item)?);
            }
            Some((low, high)) => {
                let (low, high) = (
                    port(annotation, value, low.trim())?,
                    port(annotation, value, high.trim())?,
                );
                if low > high {
                    return Err(bad(
                        annotation,
                        value,
                        format!("{item:?} is an empty range"),
                    ));
                }
                // Each port is its own map entry: a range counts as its ports.
                within_port_cap(annotation, value, usize::from(high - low) + 1)?;
                ports.extend(low..=high);
            }
        }
    }
    within_port_cap(annotation, value, ports.len())?;
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<LinkerdSettings, AnnotationError> {
        LinkerdSettings::parse(&crate::policy::annotations::annotation_map(pairs), None)
    }

    #[test]
    fn a_control_plane_pod_skips_the_api_servers_ports() {
        let annotations =
            crate::policy::annotations::annotation_map(&[(SKIP_OUTBOUND_PORTS, "25")]);
        let labels =
            crate::policy::annotations::annotation_map(&[(CONTROL_PLANE_COMPONENT, "destination")]);
        let settings = LinkerdSettings::parse(&annotations, Some(&labels)).unwrap();
        assert_eq!(
            settings.skip_outbound_ports,
            BTreeSet::from([25, 443, 6443])
        );
        let other = crate::policy::annotations::annotation_map(&[("app", "web")]);
        let settings = LinkerdSettings::parse(&annotations, Some(&other)).unwrap();
        assert_eq!(settings.skip_outbound_ports, BTreeSet::from([25]));
    }

    #[test]
    fn linkerd_cni_defaults() {
        let settings = parse(&[]).unwrap();
        assert_eq!((settings.proxy_uid, settings.proxy_gid), (2102, None));
        assert_eq!(
            (settings.outbound_port, settings.inbound_port),
            (4140, 4143)
        );
        assert!(settings.skip_outbound_ports.is_empty());
        assert_eq!(settings.skip_inbound_ports, BTreeSet::from([4190, 4191]));
        let capture = settings.capture(&["10.0.0.5".parse().unwrap()], ShortPath::Proxy);
        crate::policy::kuma_annotations::tests::assert_default_capture(&capture, 2102);
        assert!(capture.linkerd_rules && !capture.kuma_rules);
    }

    #[test]
    fn what_the_pod_says_is_honoured() {
        let settings = parse(&[
            (PROXY_UID, "2200"),
            (PROXY_GID, "2201"),
            (SKIP_OUTBOUND_PORTS, "5432, 6379,8000-8002"),
            (SKIP_INBOUND_PORTS, "9000"),
            (INBOUND_PORT, "5143"),
            (OUTBOUND_PORT, "5140"),
            (ADMIN_PORT, "5191"),
            (CONTROL_PORT, "5190"),
            // Annotations that do not change the rules are not read.
            ("config.linkerd.io/opaque-ports", "3306"),
        ])
        .unwrap();
        assert_eq!((settings.proxy_uid, settings.proxy_gid), (2200, Some(2201)));
        assert_eq!(
            (settings.outbound_port, settings.inbound_port),
            (5140, 5143)
        );
        assert_eq!(
            settings.skip_outbound_ports,
            BTreeSet::from([5432, 6379, 8000, 8001, 8002])
        );
        // The pod's list adds to the proxy's own ports.
        assert_eq!(
            settings.skip_inbound_ports,
            BTreeSet::from([5190, 5191, 9000])
        );
        let capture = settings.capture(&[], ShortPath::Off);
        assert_eq!((capture.proxy_uid, capture.proxy_gid), (2200, 2201));
        assert_eq!(parse(&[(PROXY_GID, "-1")]).unwrap().proxy_gid, None);
    }

    #[test]
    fn settings_that_cannot_be_honoured_name_their_annotation() {
        let cases = [
            (SKIP_SUBNETS, "10.0.0.0/8"),
            (CLOSE_WAIT_TIMEOUT, "1m"),
            (PROXY_UID, "linkerd"),
            (PROXY_UID, "0"),
            (PROXY_GID, "-2"),
            (SKIP_OUTBOUND_PORTS, "80,x"),
            (SKIP_OUTBOUND_PORTS, "8000-7000"),
            (SKIP_OUTBOUND_PORTS, "1-65535"),
            (SKIP_INBOUND_PORTS, "0"),
            (INBOUND_PORT, "4143,4144"),
            (OUTBOUND_PORT, "70000"),
            (ADMIN_PORT, "admin"),
            (CONTROL_PORT, ""),
        ];
        for (annotation, value) in cases {
            crate::policy::annotations::assert_refused(parse, annotation, value);
        }
    }
}
