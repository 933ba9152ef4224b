//! `traffic.sidecar.istio.io/excludeInterfaces`: Istio leaves traffic that leaves
//! or enters through those interfaces alone ("-o/-i <iface> -j RETURN"). A connect
//! hook cannot see the outgoing interface, so at ADD time the pod's routes are
//! marked by interface (the BPF side then answers like the route lookup would),
//! and the addresses of excluded interfaces are not steered inbound.

use crate::netns::NetnsFacts;
use crate::policy::pod_capture::ExcludedInterfaces;

pub fn excluded_interfaces(names: &[String], facts: &NetnsFacts) -> ExcludedInterfaces {
    if names.is_empty() {
        return ExcludedInterfaces::default();
    }
    let excluded = |interface: &Option<String>| {
        interface
            .as_ref()
            .is_some_and(|name| names.iter().any(|n| n == name))
    };
    ExcludedInterfaces {
        routes: facts
            .routes
            .iter()
            .map(|route| (route.destination, excluded(&route.interface)))
            .collect(),
        unsteered_ips: facts
            .interface_addresses
            .iter()
            .filter(|(interface, _)| names.contains(interface))
            .map(|(_, ip)| *ip)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::Route;

    fn facts() -> NetnsFacts {
        let route = |dst: &str, dev: &str| Route {
            destination: dst.parse().unwrap(),
            interface: Some(dev.to_owned()),
        };
        NetnsFacts {
            cookie: 1,
            interface_addresses: vec![
                ("eth0".into(), "10.0.0.5".parse().unwrap()),
                ("net1".into(), "192.168.77.5".parse().unwrap()),
            ],
            routes: vec![
                route("0.0.0.0/0", "eth0"),
                route("10.0.0.0/24", "eth0"),
                route("192.168.77.0/24", "net1"),
                route("192.168.77.128/25", "eth0"),
            ],
            in_user_namespace: false,
        }
    }

    #[test]
    fn routes_are_marked_by_interface() {
        let result = excluded_interfaces(&["net1".to_string()], &facts());
        let marked: Vec<(String, bool)> = result
            .routes
            .iter()
            .map(|(cidr, excluded)| (cidr.to_string(), *excluded))
            .collect();
        assert_eq!(
            marked,
            vec![
                ("0.0.0.0/0".to_string(), false),
                ("10.0.0.0/24".to_string(), false),
                ("192.168.77.0/24".to_string(), true),
                // More specific and through eth0: the longest match says "not
                // excluded", as the route lookup would.
                ("192.168.77.128/25".to_string(), false),
            ]
        );
        assert_eq!(
            result.unsteered_ips,
            vec!["192.168.77.5".parse::<std::net::IpAddr>().unwrap()]
        );
    }

    #[test]
    fn nothing_excluded_costs_nothing() {
        assert_eq!(
            excluded_interfaces(&[], &facts()),
            ExcludedInterfaces::default()
        );
    }
}
