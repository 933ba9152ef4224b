//! Turns a policy decision (`PodCapture`) into the BPF records of one pod.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::abi::{ml_addr, ml_cidr_key, ml_limits, ml_pod, ml_pod_flag, ml_port_key, ml_port_list};
use super::error::DatapathError;
use crate::policy::annotations::limits;
use crate::policy::short_path::ShortPath;
use crate::policy::{Cidr, CidrSelection, PodCapture, PortSelection};

/// Which LPM trie a CIDR entry goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CidrTrie {
    ExcludeOutbound,
    IncludeOutbound,
    /// The pod's routes; value 1 through an excluded interface, 0 otherwise.
    InterfaceRoutes,
}

pub const CIDR_TRIES: [CidrTrie; 3] = [
    CidrTrie::ExcludeOutbound,
    CidrTrie::IncludeOutbound,
    CidrTrie::InterfaceRoutes,
];

/// Everything the datapath stores for one pod.
#[derive(Debug, Clone)]
pub struct PodEntries {
    pub pod: ml_pod,
    pub ports: BTreeSet<PortEntry>,
    /// Trie, prefix and the byte stored for it.
    pub cidrs: BTreeSet<(CidrTrie, CidrEntry, u8)>,
    /// The pod addresses inbound steering answers for (not those of excluded
    /// interfaces).
    pub steered_ips: Vec<IpAddr>,
}

/// A port-list membership, comparable so that stale entries can be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortEntry {
    pub list: u32,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CidrEntry(pub Cidr);

impl PodEntries {
    pub fn from_capture(capture: &PodCapture) -> Result<Self, DatapathError> {
        let max_ips = ml_limits::ML_MAX_POD_IPS.0 as usize;
        if capture.ips.len() > max_ips {
            return Err(DatapathError::DoesNotFit {
                what: "pod IPs",
                detail: format!("{} addresses, at most {max_ips}", capture.ips.len()),
            });
        }
        let mut pod = ml_pod {
            proxy_uid: capture.proxy_uid,
            proxy_gid: capture.proxy_gid,
            outbound_port: capture.outbound_port,
            inbound_port: capture.inbound_port,
            dns_port: capture.dns_port,
            ip_count: capture.ips.len() as u16,
            ..Default::default()
        };
        for (slot, ip) in pod.ips.iter_mut().zip(&capture.ips) {
            *slot = ml_addr::from_ip(*ip);
        }
        let flag = |on: bool, bit: ml_pod_flag| if on { bit.0 } else { 0 };
        pod.flags = flag(
            capture.capture_outbound,
            ml_pod_flag::ML_POD_CAPTURE_OUTBOUND,
        ) | flag(capture.capture_inbound, ml_pod_flag::ML_POD_CAPTURE_INBOUND)
            | flag(capture.capture_dns, ml_pod_flag::ML_POD_CAPTURE_DNS)
            | flag(capture.short_path.is_on(), ml_pod_flag::ML_POD_SHORT_PATH)
            | flag(capture.kuma_rules, ml_pod_flag::ML_POD_KUMA_RULES)
            | flag(capture.linkerd_rules, ml_pod_flag::ML_POD_LINKERD_RULES)
            | flag(
                capture.short_path == ShortPath::ProxyAndApp,
                ml_pod_flag::ML_POD_SHORT_PATH_APP,
            )
            // Including every port captures every destination just the same.
            | flag(
                capture.include_outbound_cidrs == CidrSelection::All
                    || capture.include_outbound_ports == PortSelection::All,
                ml_pod_flag::ML_POD_INCLUDE_ALL_OUTBOUND,
            )
            | flag(
                capture.interface_routes.iter().any(|(_, excluded)| *excluded),
                ml_pod_flag::ML_POD_EXCLUDES_INTERFACES,
            )
            | flag(includes_loopback(capture), ml_pod_flag::ML_POD_INCLUDES_LOOPBACK)
            | flag(
                capture.ips.iter().any(IpAddr::is_ipv4),
                ml_pod_flag::ML_POD_HAS_IPV4,
            )
            | flag(
                capture.ips.iter().any(IpAddr::is_ipv6),
                ml_pod_flag::ML_POD_HAS_IPV6,
            )
            | flag(
                capture.include_inbound_ports == PortSelection::All,
                ml_pod_flag::ML_POD_INCLUDE_ALL_INBOUND,
            )
            | flag(
                capture.exclude_outbound_ports.is_empty(),
                ml_pod_flag::ML_POD_NO_EXCLUDED_OUT_PORTS,
            )
            | flag(
                !matches!(&capture.include_outbound_ports, PortSelection::Only(p) if !p.is_empty()),
                ml_pod_flag::ML_POD_NO_INCLUDED_OUT_PORTS,
            )
            | flag(
                capture.exclude_outbound_cidrs.is_empty(),
                ml_pod_flag::ML_POD_NO_EXCLUDED_OUT_CIDRS,
            )
            | flag(
                !matches!(&capture.include_outbound_cidrs, CidrSelection::Only(c) if !c.is_empty()),
                ml_pod_flag::ML_POD_NO_INCLUDED_OUT_CIDRS,
            );

        let mut ports = BTreeSet::new();
        let mut add_ports = |list: ml_port_list, set: &BTreeSet<u16>| {
            ports.extend(set.iter().map(|&port| PortEntry { list: list.0, port }));
        };
        add_ports(
            ml_port_list::ML_PORTS_EXCLUDE_OUTBOUND,
            &capture.exclude_outbound_ports,
        );
        if let PortSelection::Only(only) = &capture.include_outbound_ports {
            add_ports(ml_port_list::ML_PORTS_INCLUDE_OUTBOUND, only);
        }
        add_ports(
            ml_port_list::ML_PORTS_EXCLUDE_INBOUND,
            &capture.exclude_inbound_ports,
        );
        if let PortSelection::Only(only) = &capture.include_inbound_ports {
            add_ports(ml_port_list::ML_PORTS_INCLUDE_INBOUND, only);
        }

        let mut cidrs = BTreeSet::new();
        for cidr in &capture.exclude_outbound_cidrs {
            cidrs.insert((CidrTrie::ExcludeOutbound, CidrEntry(*cidr), 1));
        }
        if let CidrSelection::Only(only) = &capture.include_outbound_cidrs {
            for cidr in only {
                cidrs.insert((CidrTrie::IncludeOutbound, CidrEntry(*cidr), 1));
            }
        }
        if pod.flags & ml_pod_flag::ML_POD_EXCLUDES_INTERFACES.0 != 0 {
            // Routes come from the pod's netns, not from a list the pod chose; the
            // same per-pod share of the node-wide trie as a range annotation.
            let cap = limits::CIDRS_PER_ANNOTATION;
            if capture.interface_routes.len() > cap {
                return Err(DatapathError::DoesNotFit {
                    what: "routes of a pod with traffic.sidecar.istio.io/excludeInterfaces",
                    detail: format!(
                        "{} routes, at most {cap} per pod",
                        capture.interface_routes.len()
                    ),
                });
            }
            for (cidr, excluded) in &capture.interface_routes {
                cidrs.insert((
                    CidrTrie::InterfaceRoutes,
                    CidrEntry(*cidr),
                    u8::from(*excluded),
                ));
            }
        }
        let steered_ips = capture
            .ips
            .iter()
            .filter(|ip| !capture.unsteered_ips.contains(ip))
            .copied()
            .collect();
        Ok(PodEntries {
            pod,
            ports,
            cidrs,
            steered_ips,
        })
    }
}

/// Istio's `HasLoopBackIP`: an include-outbound range whose address is a loopback
/// address switches off its "apps over loopback are left alone" rules.
fn includes_loopback(capture: &PodCapture) -> bool {
    match &capture.include_outbound_cidrs {
        CidrSelection::All => false,
        CidrSelection::Only(cidrs) => cidrs.iter().any(|cidr| cidr.addr().is_loopback()),
    }
}

pub fn port_key(netns_cookie: u64, entry: PortEntry) -> ml_port_key {
    ml_port_key {
        netns_cookie,
        port: entry.port,
        list: entry.list as u8,
        ..Default::default()
    }
}

pub fn port_entry_of(key: &ml_port_key) -> PortEntry {
    PortEntry {
        list: u32::from(key.list),
        port: key.port,
    }
}

/// The trie key of a CIDR: the cookie always counts in full, IPv4 as /96+n mapped.
pub fn cidr_key(netns_cookie: u64, cidr: &Cidr) -> ml_cidr_key {
    let addr = ml_addr::from_ip(cidr.addr());
    let family_bits = if cidr.addr().is_ipv4() { 96 } else { 0 };
    let cookie = netns_cookie.to_ne_bytes();
    ml_cidr_key {
        prefixlen: 64 + family_bits + u32::from(cidr.prefix_len()),
        netns_cookie: [
            u32::from_ne_bytes([cookie[0], cookie[1], cookie[2], cookie[3]]),
            u32::from_ne_bytes([cookie[4], cookie[5], cookie[6], cookie[7]]),
        ],
        addr,
    }
}

pub fn cookie_of_cidr_key(key: &ml_cidr_key) -> u64 {
    let lo = key.netns_cookie[0].to_ne_bytes();
    let hi = key.netns_cookie[1].to_ne_bytes();
    u64::from_ne_bytes([lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture() -> PodCapture {
        PodCapture::istio_defaults(
            vec!["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()],
            1337,
            1337,
        )
    }

    #[test]
    fn istio_defaults_become_flags_and_port_entries() {
        let entries = PodEntries::from_capture(&capture()).unwrap();
        let flags = entries.pod.flags;
        for bit in [
            ml_pod_flag::ML_POD_CAPTURE_OUTBOUND,
            ml_pod_flag::ML_POD_CAPTURE_INBOUND,
            ml_pod_flag::ML_POD_INCLUDE_ALL_OUTBOUND,
            ml_pod_flag::ML_POD_INCLUDE_ALL_INBOUND,
        ] {
            assert_ne!(flags & bit.0, 0, "{bit:?}");
        }
        assert_eq!(flags & ml_pod_flag::ML_POD_CAPTURE_DNS.0, 0);
        assert_ne!(flags & ml_pod_flag::ML_POD_SHORT_PATH.0, 0);
        assert_eq!(flags & ml_pod_flag::ML_POD_SHORT_PATH_APP.0, 0);
        assert_eq!(flags & ml_pod_flag::ML_POD_KUMA_RULES.0, 0);
        assert_eq!(entries.pod.ip_count, 2);
        assert_eq!(entries.pod.ips[1].to_ip().to_string(), "fd00::5");
        assert!(entries.ports.contains(&PortEntry {
            list: ml_port_list::ML_PORTS_EXCLUDE_OUTBOUND.0,
            port: 15020
        }));
        assert_eq!(entries.ports.len(), 1 + 4);
        assert!(entries.cidrs.is_empty());
    }

    #[test]
    fn cidr_lists_become_trie_entries() {
        let mut capture = capture();
        capture.include_outbound_cidrs = CidrSelection::Only(vec!["10.0.0.0/8".parse().unwrap()]);
        capture.exclude_outbound_cidrs = vec!["10.96.0.0/12".parse().unwrap()];
        let entries = PodEntries::from_capture(&capture).unwrap();
        assert_eq!(
            entries.pod.flags & ml_pod_flag::ML_POD_INCLUDE_ALL_OUTBOUND.0,
            0
        );
        assert_eq!(entries.cidrs.len(), 2);
    }

    #[test]
    fn mesh_rules_become_flags() {
        let settings =
            crate::policy::kuma_annotations::KumaSettings::parse(&Default::default()).unwrap();
        let capture = settings.capture(&["10.0.0.5".parse().unwrap()], ShortPath::Off);
        let flags = PodEntries::from_capture(&capture).unwrap().pod.flags;
        assert_ne!(flags & ml_pod_flag::ML_POD_KUMA_RULES.0, 0);
        assert_eq!(flags & ml_pod_flag::ML_POD_LINKERD_RULES.0, 0);
        let settings =
            crate::policy::linkerd_annotations::LinkerdSettings::parse(&Default::default(), None)
                .unwrap();
        let capture = settings.capture(&["10.0.0.5".parse().unwrap()], ShortPath::Off);
        let flags = PodEntries::from_capture(&capture).unwrap().pod.flags;
        assert_ne!(flags & ml_pod_flag::ML_POD_LINKERD_RULES.0, 0);
        assert_eq!(flags & ml_pod_flag::ML_POD_KUMA_RULES.0, 0);
    }

    #[test]
    fn families_and_loopback_ranges_become_flags() {
        let mut v4_only = capture();
        v4_only.ips = vec!["10.0.0.5".parse().unwrap()];
        let flags = PodEntries::from_capture(&v4_only).unwrap().pod.flags;
        assert_ne!(flags & ml_pod_flag::ML_POD_HAS_IPV4.0, 0);
        assert_eq!(flags & ml_pod_flag::ML_POD_HAS_IPV6.0, 0);
        assert_eq!(flags & ml_pod_flag::ML_POD_INCLUDES_LOOPBACK.0, 0);

        let mut loopback = capture();
        loopback.include_outbound_cidrs = CidrSelection::Only(vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.0/8".parse().unwrap(),
        ]);
        let flags = PodEntries::from_capture(&loopback).unwrap().pod.flags;
        assert_ne!(flags & ml_pod_flag::ML_POD_INCLUDES_LOOPBACK.0, 0);
    }

    #[test]
    fn the_short_path_setting_becomes_two_flags() {
        let both = ml_pod_flag::ML_POD_SHORT_PATH.0 | ml_pod_flag::ML_POD_SHORT_PATH_APP.0;
        for (setting, expected) in [
            (ShortPath::Off, 0),
            (ShortPath::Proxy, ml_pod_flag::ML_POD_SHORT_PATH.0),
            (ShortPath::ProxyAndApp, both),
        ] {
            let mut capture = capture();
            capture.short_path = setting;
            let flags = PodEntries::from_capture(&capture).unwrap().pod.flags;
            assert_eq!(flags & both, expected, "{setting:?}");
        }
    }

    /// The per-pod caps of policy::annotations::limits, every pod at every cap,
    /// fit the node-wide maps.
    #[test]
    fn the_per_pod_caps_fit_the_maps_at_the_capped_pod_count() {
        let pods = limits::CAPPED_PODS;
        assert!(pods <= ml_limits::ML_MAX_PODS.0 as usize);
        // Four port lists, and exclude-inbound's 4 ports of Istio's own.
        let ports_per_pod = 4 * limits::PORTS_PER_ANNOTATION + 4;
        assert!(pods * ports_per_pod <= ml_limits::ML_MAX_PORT_RULES.0 as usize);
        // One trie per range list, and the interface-routes trie.
        assert!(pods * limits::CIDRS_PER_ANNOTATION <= ml_limits::ML_MAX_CIDR_RULES.0 as usize);
    }

    #[test]
    fn too_many_ips_do_not_fit() {
        let mut capture = capture();
        capture.ips = (1..=9)
            .map(|i| format!("10.0.0.{i}").parse().unwrap())
            .collect();
        assert!(matches!(
            PodEntries::from_capture(&capture),
            Err(DatapathError::DoesNotFit { .. })
        ));
    }

    #[test]
    fn more_routes_than_a_pods_share_of_the_trie_do_not_fit() {
        let routes = |count: usize| -> Vec<(Cidr, bool)> {
            (0..count)
                .map(|i| {
                    let cidr = format!("10.{}.{}.0/24", i / 256, i % 256);
                    (cidr.parse().unwrap(), i == 0)
                })
                .collect()
        };
        let mut capture = capture();
        capture.interface_routes = routes(limits::CIDRS_PER_ANNOTATION);
        let entries = PodEntries::from_capture(&capture).unwrap();
        assert_eq!(entries.cidrs.len(), limits::CIDRS_PER_ANNOTATION);
        capture.interface_routes = routes(limits::CIDRS_PER_ANNOTATION + 1);
        let err = PodEntries::from_capture(&capture).unwrap_err();
        assert!(matches!(err, DatapathError::DoesNotFit { .. }), "{err}");
        assert!(err.to_string().contains("excludeInterfaces"), "{err}");
    }

    #[test]
    fn cidr_keys_count_the_cookie_and_map_ipv4() {
        let v4 = cidr_key(0x1122_3344_5566_7788, &"10.0.0.0/8".parse().unwrap());
        assert_eq!(v4.prefixlen, 64 + 96 + 8);
        assert_eq!(cookie_of_cidr_key(&v4), 0x1122_3344_5566_7788);
        let v6 = cidr_key(7, &"fd00::/64".parse().unwrap());
        assert_eq!(v6.prefixlen, 64 + 64);
    }
}
