//! How one captured pod is captured: what the datapath records for it.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::annotations::{parse_go_bool, TrafficAnnotations};
use super::cidr::Cidr;
use super::pod_meta::PodSpecFacts;
pub use super::short_path::ShortPath;

/// Istio's sidecar ports and identity (docs/istio-capture.md, "Ports and identities").
pub const ISTIO_PROXY_UID: u32 = 1337;
pub const ISTIO_PROXY_GID: u32 = 1337;
pub const OUTBOUND_PORT: u16 = 15001;
pub const INBOUND_PORT: u16 = 15006;
pub const TUNNEL_PORT: u16 = 15008;
pub const STATUS_PORT: u16 = 15020;
pub const HEALTH_PORT: u16 = 15021;
pub const DNS_PORT: u16 = 15053;
pub const PROMETHEUS_PORT: u16 = 15090;

/// Ports that are never captured inbound, whatever the pod says.
pub const NEVER_CAPTURED_INBOUND: [u16; 4] =
    [TUNNEL_PORT, STATUS_PORT, HEALTH_PORT, PROMETHEUS_PORT];

/// Either every port / range, or the listed ones only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSelection {
    All,
    Only(BTreeSet<u16>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrSelection {
    All,
    Only(Vec<Cidr>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCapture {
    pub capture_outbound: bool,
    pub capture_inbound: bool,
    pub capture_dns: bool,
    pub short_path: ShortPath,
    pub proxy_uid: u32,
    pub proxy_gid: u32,
    pub outbound_port: u16,
    pub inbound_port: u16,
    pub dns_port: u16,
    /// The pod's own addresses (routed over its loopback).
    pub ips: Vec<IpAddr>,
    /// Addresses of excluded interfaces: connections to them are not steered.
    pub unsteered_ips: Vec<IpAddr>,
    pub exclude_outbound_ports: BTreeSet<u16>,
    pub include_outbound_ports: PortSelection,
    pub include_outbound_cidrs: CidrSelection,
    pub exclude_outbound_cidrs: Vec<Cidr>,
    pub include_inbound_ports: PortSelection,
    /// Excluded inbound ports, including the ones never captured.
    pub exclude_inbound_ports: BTreeSet<u16>,
    /// The pod's routes, each marked true when it goes through an excluded
    /// interface (empty when no interface is excluded).
    pub interface_routes: Vec<(Cidr, bool)>,
    /// Kuma's rules where they differ from Istio's: no tunnel port, UDP-only DNS
    /// capture (docs/meshes.md, KO4 and KO7).
    pub kuma_rules: bool,
    /// Linkerd's rules where they differ from Istio's: the proxy's connections
    /// over loopback are never sent to the inbound listener (docs/meshes.md, LO2).
    pub linkerd_rules: bool,
}

impl PodCapture {
    /// Istio's defaults for a sidecar pod with these addresses and proxy identity.
    pub fn istio_defaults(ips: Vec<IpAddr>, proxy_uid: u32, proxy_gid: u32) -> Self {
        PodCapture {
            capture_outbound: true,
            capture_inbound: true,
            capture_dns: false,
            // meshlane's default (`shortPath`), not Istio's: Istio has no short path.
            short_path: ShortPath::Proxy,
            proxy_uid,
            proxy_gid,
            outbound_port: OUTBOUND_PORT,
            inbound_port: INBOUND_PORT,
            dns_port: DNS_PORT,
            ips,
            unsteered_ips: Vec::new(),
            // Istio excludes its status port from outbound capture when the pod
            // names no exclusions.
            exclude_outbound_ports: BTreeSet::from([STATUS_PORT]),
            include_outbound_ports: PortSelection::Only(BTreeSet::new()),
            include_outbound_cidrs: CidrSelection::All,
            exclude_outbound_cidrs: Vec::new(),
            include_inbound_ports: PortSelection::All,
            exclude_inbound_ports: BTreeSet::from(NEVER_CAPTURED_INBOUND),
            interface_routes: Vec::new(),
            kuma_rules: false,
            linkerd_rules: false,
        }
    }

    /// The capture of an Istio sidecar pod: its traffic annotations, its proxy's
    /// identity and DNS setting (from the spec when known, else the mesh-wide
    /// settings), and its addresses.
    pub fn for_istio_pod(inputs: &CaptureInputs<'_>) -> Self {
        let traffic = inputs.traffic;
        let proxy = inputs.spec.and_then(|spec| spec.proxy.as_ref());
        // A non-zero runAsUser/runAsGroup of istio-proxy is the proxy's identity.
        let proxy_id = |id: Option<i64>, mesh_wide: u32| {
            id.filter(|id| *id > 0)
                .and_then(|id| u32::try_from(id).ok())
                .unwrap_or(mesh_wide)
        };
        let capture_dns = proxy
            .and_then(|proxy| proxy.env.get(DNS_CAPTURE_ENV))
            .and_then(|value| parse_go_bool(value))
            .unwrap_or(inputs.mesh.dns_capture);
        PodCapture {
            capture_outbound: true,
            capture_inbound: traffic.include_inbound_ports != PortSelection::Only(BTreeSet::new()),
            capture_dns,
            short_path: inputs.short_path,
            proxy_uid: proxy_id(proxy.and_then(|p| p.run_as_user), inputs.mesh.proxy_uid),
            proxy_gid: proxy_id(proxy.and_then(|p| p.run_as_group), inputs.mesh.proxy_gid),
            outbound_port: OUTBOUND_PORT,
            inbound_port: INBOUND_PORT,
            dns_port: DNS_PORT,
            ips: inputs.ips.to_vec(),
            unsteered_ips: inputs.interfaces.unsteered_ips.clone(),
            exclude_outbound_ports: traffic.exclude_outbound_ports.clone(),
            include_outbound_ports: traffic.include_outbound_ports.clone(),
            include_outbound_cidrs: traffic.include_outbound_cidrs.clone(),
            exclude_outbound_cidrs: traffic.exclude_outbound_cidrs.clone(),
            include_inbound_ports: traffic.include_inbound_ports.clone(),
            exclude_inbound_ports: traffic.exclude_inbound_ports.clone(),
            interface_routes: inputs.interfaces.routes.clone(),
            kuma_rules: false,
            linkerd_rules: false,
        }
    }
}

/// The proxy environment variable that turns DNS capture on (Istio's name).
pub const DNS_CAPTURE_ENV: &str = "ISTIO_META_DNS_CAPTURE";

/// Mesh-wide settings from the plugin configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeshSettings {
    pub proxy_uid: u32,
    pub proxy_gid: u32,
    pub dns_capture: bool,
}

/// What excluded interfaces mean for one pod, read from its netns at ADD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExcludedInterfaces {
    /// Every route of the pod, true when through an excluded interface.
    pub routes: Vec<(Cidr, bool)>,
    /// Addresses configured on excluded interfaces.
    pub unsteered_ips: Vec<IpAddr>,
}

pub struct CaptureInputs<'a> {
    pub traffic: &'a TrafficAnnotations,
    pub spec: Option<&'a PodSpecFacts>,
    pub mesh: MeshSettings,
    pub ips: &'a [IpAddr],
    pub interfaces: &'a ExcludedInterfaces,
    /// The pod's short path setting: the node-wide `shortPath` and its
    /// `meshlane.io/short-path` annotation (`short_path::pod_short_path`).
    pub short_path: ShortPath,
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::policy::pod_meta::ProxyContainer;
    use std::collections::BTreeMap;

    fn inputs<'a>(
        traffic: &'a TrafficAnnotations,
        spec: Option<&'a PodSpecFacts>,
        ips: &'a [IpAddr],
        interfaces: &'a ExcludedInterfaces,
    ) -> CaptureInputs<'a> {
        CaptureInputs {
            traffic,
            spec,
            mesh: MeshSettings {
                proxy_uid: 1337,
                proxy_gid: 1337,
                dns_capture: false,
            },
            ips,
            interfaces,
            short_path: ShortPath::Proxy,
        }
    }

    fn spec(proxy: ProxyContainer) -> PodSpecFacts {
        PodSpecFacts {
            containers: vec!["istio-proxy".into()],
            proxy: Some(proxy),
            ..Default::default()
        }
    }

    #[test]
    fn an_unannotated_istio_pod_gets_istios_defaults() {
        let traffic = TrafficAnnotations::parse(&BTreeMap::new()).unwrap();
        let ips = ["10.0.0.5".parse().unwrap()];
        let none = ExcludedInterfaces::default();
        let pod = PodCapture::for_istio_pod(&inputs(&traffic, None, &ips, &none));
        assert_eq!(pod, PodCapture::istio_defaults(ips.to_vec(), 1337, 1337));
    }

    #[test]
    fn the_proxy_container_sets_identity_and_dns() {
        let traffic = TrafficAnnotations::parse(&BTreeMap::new()).unwrap();
        let none = ExcludedInterfaces::default();
        let custom = spec(ProxyContainer {
            run_as_user: Some(1500),
            run_as_group: Some(1600),
            env: BTreeMap::from([(DNS_CAPTURE_ENV.into(), "true".into())]),
            ..Default::default()
        });
        let pod = PodCapture::for_istio_pod(&inputs(&traffic, Some(&custom), &[], &none));
        assert_eq!((pod.proxy_uid, pod.proxy_gid), (1500, 1600));
        assert!(pod.capture_dns);
        // runAsUser 0 (or unset) leaves the mesh-wide identity; DNS "false" wins
        // over a mesh-wide true.
        let root = spec(ProxyContainer {
            run_as_user: Some(0),
            env: BTreeMap::from([(DNS_CAPTURE_ENV.into(), "false".into())]),
            ..Default::default()
        });
        let mut mesh_dns = inputs(&traffic, Some(&root), &[], &none);
        mesh_dns.mesh.dns_capture = true;
        let pod = PodCapture::for_istio_pod(&mesh_dns);
        assert_eq!((pod.proxy_uid, pod.proxy_gid), (1337, 1337));
        assert!(!pod.capture_dns);
    }

    #[test]
    fn an_empty_inbound_port_list_turns_inbound_capture_off() {
        let traffic = TrafficAnnotations::parse(&BTreeMap::from([(
            crate::policy::annotations::INCLUDE_INBOUND_PORTS.to_string(),
            String::new(),
        )]))
        .unwrap();
        let none = ExcludedInterfaces::default();
        let pod = PodCapture::for_istio_pod(&inputs(&traffic, None, &[], &none));
        assert!(!pod.capture_inbound);
        assert!(pod.capture_outbound);
    }

    #[test]
    fn the_short_path_setting_is_passed_on() {
        let traffic = TrafficAnnotations::parse(&BTreeMap::new()).unwrap();
        let none = ExcludedInterfaces::default();
        for setting in [ShortPath::Off, ShortPath::Proxy, ShortPath::ProxyAndApp] {
            let mut pod = inputs(&traffic, None, &[], &none);
            pod.short_path = setting;
            assert_eq!(PodCapture::for_istio_pod(&pod).short_path, setting);
        }
    }

    #[test]
    fn defaults_follow_istio() {
        let pod = PodCapture::istio_defaults(vec!["10.0.0.5".parse().unwrap()], 1337, 1337);
        assert!(pod.capture_outbound && pod.capture_inbound);
        assert!(!pod.capture_dns);
        assert_eq!(pod.outbound_port, 15001);
        assert_eq!(pod.inbound_port, 15006);
        assert_eq!(pod.exclude_outbound_ports, BTreeSet::from([15020]));
        assert_eq!(pod.include_outbound_cidrs, CidrSelection::All);
        assert_eq!(pod.include_inbound_ports, PortSelection::All);
        assert_eq!(
            pod.exclude_inbound_ports,
            BTreeSet::from([15008, 15020, 15021, 15090])
        );
    }
}
