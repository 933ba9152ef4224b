//! CNI stdin (`NetConf`) and meshlane's own keys (`PluginConfig`).

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::json;
use crate::cni::config::NetConf;
use crate::cni::version::CniVersion;
use crate::cni::ErrorCode;
use crate::plugin::config::PluginConfig;

/// Codes a config that cannot be read may get: 6 (not a JSON object), 7 (a key),
/// 1 (cniVersion).
const CONFIG_CODES: [ErrorCode; 3] = [
    ErrorCode::Decode,
    ErrorCode::InvalidConfig,
    ErrorCode::IncompatibleVersion,
];

fn version() -> impl Strategy<Value = &'static str> {
    prop::sample::select(
        CniVersion::SUPPORTED
            .iter()
            .map(|v| v.as_str())
            .collect::<Vec<_>>(),
    )
}

/// A valid config: standard keys of the right types plus plugin keys.
fn valid() -> impl Strategy<Value = Map<String, Value>> {
    (
        version(),
        "[a-z0-9][a-z0-9_.-]{0,20}",
        "[a-z][a-z0-9-]{0,12}",
        prop::collection::btree_map("[a-z][a-zA-Z]{0,10}", json::value(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(version, name, plugin_type, extra, disable_check)| {
            let mut map = Map::new();
            // Plugin keys never shadow the standard ones in this generator.
            for (key, value) in extra {
                map.insert(format!("x{key}"), value);
            }
            map.insert("cniVersion".into(), json!(version));
            map.insert("name".into(), json!(name));
            map.insert("type".into(), json!(plugin_type));
            map.insert("disableCheck".into(), json!(disable_check));
            map
        })
}

/// Standard keys and a value of the wrong type for each.
fn wrong_typed() -> impl Strategy<Value = (&'static str, Value)> {
    prop_oneof![
        json::not_string().prop_map(|v| ("name", v)),
        json::not_string().prop_map(|v| ("type", v)),
        json::not_string().prop_map(|v| ("cniVersion", v)),
        json::not_bool().prop_map(|v| ("disableCheck", v)),
        json::not_bool().prop_map(|v| ("disableGC", v)),
        json::not_bool().prop_map(|v| ("ipMasq", v)),
        json::not_object().prop_map(|v| ("runtimeConfig", v)),
        json::not_object().prop_map(|v| ("args", v)),
        json::not_object().prop_map(|v| ("capabilities", v)),
        json::not_object().prop_map(|v| ("ipam", v)),
        json::not_object().prop_map(|v| ("dns", v)),
    ]
}

/// meshlane's keys and any value.
fn plugin_key() -> impl Strategy<Value = (&'static str, Value)> {
    let keys = prop::sample::select(vec![
        "bpffsRoot",
        "cgroupPath",
        "capture",
        "excludeNamespaces",
        "proxyUID",
        "proxyGID",
        "dnsCapture",
        "kubeconfig",
        "podSpecLookup",
        "logFile",
        "logLevel",
        "shortPath",
    ]);
    (keys, json::value())
}

proptest! {
    #![proptest_config(super::config(2000))]

    #[test]
    fn any_bytes_fail_with_a_config_code_or_parse(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Err(err) = NetConf::from_slice(&bytes) {
            prop_assert!(CONFIG_CODES.contains(&err.code), "{err:?}");
            prop_assert!(!err.msg.is_empty());
            // The error document a runtime reads is always well formed.
            let doc = err.to_json(None);
            prop_assert_eq!(doc["code"].as_u64(), Some(u64::from(err.code.value())));
        }
    }

    #[test]
    fn any_json_document_fails_with_a_config_code_or_parses(doc in json::value()) {
        let bytes = serde_json::to_vec(&doc).unwrap();
        if let Err(err) = NetConf::from_slice(&bytes) {
            prop_assert!(CONFIG_CODES.contains(&err.code), "{err:?}");
        }
    }

    #[test]
    fn valid_configs_round_trip(map in valid()) {
        let bytes = serde_json::to_vec(&Value::Object(map.clone())).unwrap();
        let conf = NetConf::from_slice(&bytes).unwrap();
        prop_assert_eq!(conf.cni_version.as_str(), map["cniVersion"].as_str().unwrap());
        prop_assert_eq!(&conf.name, map["name"].as_str().unwrap());
        prop_assert_eq!(&conf.plugin_type, map["type"].as_str().unwrap());
        prop_assert_eq!(Some(conf.disable_check), map["disableCheck"].as_bool());
        // Plugin keys come back as the JSON reader read them (serde_json does not
        // promise that a float's text round-trips bit for bit).
        let read: Value = serde_json::from_slice(&bytes).unwrap();
        for key in map.keys().filter(|key| key.starts_with('x')) {
            prop_assert_eq!(conf.plugin.get(key), read.get(key));
        }
    }

    #[test]
    fn a_wrong_typed_standard_key_is_named_with_its_code(
        map in valid(),
        (key, value) in wrong_typed(),
    ) {
        let mut map = map;
        map.insert(key.to_string(), value);
        let err = NetConf::from_slice(&serde_json::to_vec(&map).unwrap()).unwrap_err();
        let code = if key == "cniVersion" { ErrorCode::IncompatibleVersion } else { ErrorCode::InvalidConfig };
        prop_assert_eq!(err.code, code, "{:?}", err);
        prop_assert!(err.msg.contains(key), "{:?}", err);
    }

    #[test]
    fn meshlanes_keys_fail_naming_the_key_or_parse((key, value) in plugin_key()) {
        let mut keys = Map::new();
        keys.insert(key.to_string(), value);
        if let Err(err) = PluginConfig::from_keys(&keys) {
            prop_assert_eq!(&err.key, key);
            prop_assert_eq!(crate::cni::CniError::from(err).code, ErrorCode::InvalidConfig);
        }
    }

    #[test]
    fn proxy_ids_round_trip(uid in any::<u32>(), gid in any::<u32>()) {
        let keys = json!({"proxyUID": uid, "proxyGID": gid});
        match PluginConfig::from_keys(keys.as_object().unwrap()) {
            Ok(config) => {
                prop_assert_eq!(config.proxy_uid, uid);
                prop_assert_eq!(config.proxy_gid, gid);
            }
            // Refused IDs are named (root, say, cannot be the proxy).
            Err(err) => prop_assert!(err.key == "proxyUID" || err.key == "proxyGID"),
        }
    }
}
