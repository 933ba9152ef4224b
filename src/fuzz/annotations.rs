//! Istio's `traffic.sidecar.istio.io/*` annotations.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use crate::policy::annotations::{self as a, limits, TrafficAnnotations};
use crate::policy::{Cidr, CidrSelection, PortSelection};

const LISTS: [&str; 7] = [
    a::INCLUDE_OUTBOUND_IP_RANGES,
    a::EXCLUDE_OUTBOUND_IP_RANGES,
    a::INCLUDE_OUTBOUND_PORTS,
    a::EXCLUDE_OUTBOUND_PORTS,
    a::INCLUDE_INBOUND_PORTS,
    a::EXCLUDE_INBOUND_PORTS,
    a::EXCLUDE_INTERFACES,
];

/// Values that look like lists, and anything at all.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9, */.:a-f]{0,40}",
        any::<String>(),
        prop::collection::vec(any::<u16>(), 0..50).prop_map(|ports| {
            ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",")
        }),
    ]
}

/// A list joined with commas and random spaces around the items.
fn joined(items: Vec<String>, spaces: Vec<(bool, bool)>) -> String {
    items
        .iter()
        .zip(spaces.iter().chain(std::iter::repeat(&(false, false))))
        .map(|(item, (before, after))| {
            format!(
                "{}{item}{}",
                if *before { " " } else { "" },
                if *after { " " } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn cidr() -> impl Strategy<Value = Cidr> {
    prop_oneof![
        (any::<[u8; 4]>(), 0u8..=32).prop_map(|(ip, len)| Cidr::new(ip.into(), len)),
        (any::<[u8; 16]>(), 0u8..=128).prop_map(|(ip, len)| Cidr::new(ip.into(), len)),
    ]
    .prop_filter_map("a prefix that fits", |cidr| cidr)
}

proptest! {
    #![proptest_config(super::config(3000))]

    #[test]
    fn any_values_parse_or_name_an_annotation_that_was_set(
        set in prop::collection::btree_map(prop::sample::select(LISTS.to_vec()), value(), 0..4),
    ) {
        let annotations: BTreeMap<String, String> =
            set.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        if let Err(err) = TrafficAnnotations::parse(&annotations) {
            prop_assert!(set.contains_key(err.annotation), "{err}");
            prop_assert!(err.to_string().contains(err.annotation));
            // A message stays one readable line, whatever the value's size.
            prop_assert!(err.to_string().len() < 400 + 4 * 64, "{}", err.to_string().len());
        }
    }

    #[test]
    fn port_lists_within_the_cap_round_trip(
        ports in prop::collection::btree_set(1u16..=65535, 0..=limits::PORTS_PER_ANNOTATION),
        spaces in prop::collection::vec(any::<(bool, bool)>(), 0..40),
        list in prop::sample::select(vec![a::INCLUDE_OUTBOUND_PORTS, a::EXCLUDE_OUTBOUND_PORTS, a::INCLUDE_INBOUND_PORTS]),
    ) {
        let text = joined(ports.iter().map(u16::to_string).collect(), spaces);
        let parsed = TrafficAnnotations::parse(&BTreeMap::from([(list.to_string(), text.clone())]))
            .unwrap_or_else(|err| panic!("{text:?}: {err}"));
        let got: BTreeSet<u16> = match list {
            a::INCLUDE_OUTBOUND_PORTS => match parsed.include_outbound_ports {
                PortSelection::Only(set) => set,
                PortSelection::All => unreachable!(),
            },
            a::EXCLUDE_OUTBOUND_PORTS => parsed.exclude_outbound_ports,
            _ => match parsed.include_inbound_ports {
                PortSelection::Only(set) => set,
                PortSelection::All => unreachable!(),
            },
        };
        prop_assert_eq!(got, ports);
    }

    #[test]
    fn range_lists_within_the_cap_round_trip(
        cidrs in prop::collection::vec(cidr(), 0..20),
        spaces in prop::collection::vec(any::<(bool, bool)>(), 0..20),
    ) {
        let text = joined(cidrs.iter().map(Cidr::to_string).collect(), spaces);
        let map = BTreeMap::from([
            (a::INCLUDE_OUTBOUND_IP_RANGES.to_string(), text.clone()),
            (a::EXCLUDE_OUTBOUND_IP_RANGES.to_string(), text.clone()),
        ]);
        let parsed = TrafficAnnotations::parse(&map).unwrap_or_else(|err| panic!("{text:?}: {err}"));
        prop_assert_eq!(parsed.include_outbound_cidrs, CidrSelection::Only(cidrs.clone()));
        prop_assert_eq!(parsed.exclude_outbound_cidrs, cidrs);
    }

    #[test]
    fn one_bad_item_fails_its_own_annotation(
        ports in prop::collection::vec(1u16..=65535, 0..10),
        bad in prop_oneof![Just("0".to_string()), Just("65536".to_string()), "[a-z]{1,5}", Just("-1".to_string())],
        at in 0usize..10,
        list in prop::sample::select(vec![a::INCLUDE_OUTBOUND_PORTS, a::EXCLUDE_OUTBOUND_PORTS, a::INCLUDE_INBOUND_PORTS, a::EXCLUDE_INBOUND_PORTS]),
    ) {
        let mut items: Vec<String> = ports.iter().map(u16::to_string).collect();
        items.insert(at.min(items.len()), bad.clone());
        let map = BTreeMap::from([
            (list.to_string(), items.join(",")),
            // A valid neighbour must not be blamed.
            (a::EXCLUDE_OUTBOUND_IP_RANGES.to_string(), "10.0.0.0/8".to_string()),
        ]);
        let err = TrafficAnnotations::parse(&map).unwrap_err();
        prop_assert_eq!(err.annotation, list);
        prop_assert!(err.to_string().contains(&format!("{bad:?}")), "{}", err);
    }
}
