//! `prevResult`: the previous plugin's result, embedded in stdin.

use std::net::IpAddr;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::json;
use crate::cni::prev_result::PrevResult;
use crate::cni::ErrorCode;

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

/// An interface address with a prefix length that fits its family.
fn prefix() -> impl Strategy<Value = (IpAddr, u8)> {
    ip().prop_flat_map(|ip| {
        let max: u8 = if ip.is_ipv4() { 32 } else { 128 };
        (Just(ip), 0..=max)
    })
}

/// A valid result: interfaces, ips that point into them (or nowhere), routes.
fn valid() -> impl Strategy<Value = Value> {
    let interfaces = prop::collection::vec(("[a-z][a-z0-9]{0,14}", any::<bool>()), 0..4);
    interfaces.prop_flat_map(|interfaces| {
        let count = interfaces.len();
        let ips = prop::collection::vec((prefix(), prop::option::of(0..count.max(1))), 0..5);
        let routes = prop::collection::vec((prefix(), prop::option::of(ip())), 0..4);
        (Just(interfaces), ips, routes).prop_map(move |(interfaces, ips, routes)| {
            let interfaces: Vec<Value> = interfaces
                .iter()
                .map(|(name, in_pod)| {
                    let sandbox = if *in_pod { "/var/run/netns/pod" } else { "" };
                    json!({"name": name, "sandbox": sandbox})
                })
                .collect();
            let ips: Vec<Value> = ips
                .into_iter()
                .map(|((ip, len), interface)| {
                    let mut entry = json!({"address": format!("{ip}/{len}")});
                    if let Some(index) = interface.filter(|_| count > 0) {
                        entry["interface"] = json!(index);
                    }
                    entry
                })
                .collect();
            let routes: Vec<Value> = routes
                .into_iter()
                .map(|((ip, len), gw)| match gw {
                    Some(gw) => json!({"dst": format!("{ip}/{len}"), "gw": gw.to_string()}),
                    None => json!({"dst": format!("{ip}/{len}")}),
                })
                .collect();
            json!({"cniVersion": "1.0.0", "interfaces": interfaces, "ips": ips, "routes": routes})
        })
    })
}

proptest! {
    #![proptest_config(super::config(2000))]

    #[test]
    fn any_document_parses_or_fails_with_code_6_naming_a_path(doc in json::value()) {
        if let Err(err) = PrevResult::parse(&doc) {
            prop_assert_eq!(err.code, ErrorCode::Decode, "{:?}", err);
            prop_assert!(err.msg.starts_with("prevResult"), "{:?}", err);
        }
    }

    #[test]
    fn valid_results_round_trip(doc in valid()) {
        let parsed = PrevResult::parse(&doc).unwrap();
        let ips = doc["ips"].as_array().unwrap();
        prop_assert_eq!(parsed.ips.len(), ips.len());
        for (ip, written) in parsed.ips.iter().zip(ips) {
            prop_assert_eq!(ip.address.to_string(), written["address"].as_str().unwrap());
            prop_assert_eq!(ip.interface, written["interface"].as_u64().map(|i| i as usize));
        }
        prop_assert_eq!(parsed.interfaces.len(), doc["interfaces"].as_array().unwrap().len());
        prop_assert_eq!(parsed.routes.len(), doc["routes"].as_array().unwrap().len());
        // The pod's IPs are those of the result, never an invented one.
        for pod_ip in parsed.pod_ips() {
            prop_assert!(parsed.ips.iter().any(|ip| ip.address.address == pod_ip.address));
        }
    }

    #[test]
    fn a_bad_field_is_named_by_its_path(
        doc in valid().prop_filter("has ips", |d| !d["ips"].as_array().unwrap().is_empty()),
        field in prop::sample::select(vec!["address", "gateway", "interface"]),
        value in json::value(),
    ) {
        let mut doc = doc;
        let valid_here = match field {
            "address" => value.as_str().is_some_and(|t| t.parse::<crate::cni::prev_result::IpPrefix>().is_ok()),
            "gateway" => value.is_null() || value.as_str().is_some_and(|t| t.parse::<IpAddr>().is_ok()),
            _ => value.is_null() || value.as_u64().is_some_and(|i| (i as usize) < doc["interfaces"].as_array().unwrap().len()),
        };
        doc["ips"][0][field] = value;
        match PrevResult::parse(&doc) {
            Ok(_) => prop_assert!(valid_here, "accepted a bad {field}: {}", doc["ips"][0]),
            Err(err) => {
                prop_assert!(!valid_here, "{:?}", err);
                prop_assert_eq!(err.code, ErrorCode::Decode);
                let path = format!("prevResult.ips[0].{field}");
                prop_assert!(err.msg.contains(&path), "{:?}", err);
            }
        }
    }
}
