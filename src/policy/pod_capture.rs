//! How one captured pod is captured: what the datapath records for it.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::cidr::Cidr;

/// Istio's sidecar ports and identity (ISTIO-CAPTURE.md, "Constants").
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
    pub short_path: bool,
    pub proxy_uid: u32,
    pub proxy_gid: u32,
    pub outbound_port: u16,
    pub inbound_port: u16,
    pub dns_port: u16,
    /// The pod's own addresses (routed over its loopback).
    pub ips: Vec<IpAddr>,
    pub exclude_outbound_ports: BTreeSet<u16>,
    pub include_outbound_ports: BTreeSet<u16>,
    pub include_outbound_cidrs: CidrSelection,
    pub exclude_outbound_cidrs: Vec<Cidr>,
    pub include_inbound_ports: PortSelection,
    /// Excluded inbound ports, including the ones never captured.
    pub exclude_inbound_ports: BTreeSet<u16>,
}

impl PodCapture {
    /// Istio's defaults for a sidecar pod with these addresses and proxy identity.
    pub fn istio_defaults(ips: Vec<IpAddr>, proxy_uid: u32, proxy_gid: u32) -> Self {
        PodCapture {
            capture_outbound: true,
            capture_inbound: true,
            capture_dns: false,
            short_path: false,
            proxy_uid,
            proxy_gid,
            outbound_port: OUTBOUND_PORT,
            inbound_port: INBOUND_PORT,
            dns_port: DNS_PORT,
            ips,
            // Istio excludes its status port from outbound capture when the pod
            // names no exclusions.
            exclude_outbound_ports: BTreeSet::from([STATUS_PORT]),
            include_outbound_ports: BTreeSet::new(),
            include_outbound_cidrs: CidrSelection::All,
            exclude_outbound_cidrs: Vec::new(),
            include_inbound_ports: PortSelection::All,
            exclude_inbound_ports: BTreeSet::from(NEVER_CAPTURED_INBOUND),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
