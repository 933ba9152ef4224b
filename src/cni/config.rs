//! The plugin configuration on stdin (spec section 1 "plugin configuration
//! objects", as transformed by the runtime in section 3).
//!
//! Standard keys are checked for their JSON type here; everything else is kept,
//! untouched, in [`NetConf::plugin`] for the plugin to validate.

use serde_json::{Map, Value};

use super::command::is_cni_identifier;
use super::error::CniError;
use super::prev_result::PrevResult;
use super::version::CniVersion;
use super::AttachmentId;
use crate::json_kind::json_kind;

/// The key GC requests carry the still-valid attachments in.
pub const VALID_ATTACHMENTS_KEY: &str = "cni.dev/valid-attachments";
/// The name libcni also injects, because an early 1.1 spec draft used it.
pub const LEGACY_ATTACHMENTS_KEY: &str = "cni.dev/attachments";

/// One plugin configuration as received on stdin.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: CniVersion,
    /// The network name; a valid CNI identifier.
    pub name: String,
    /// `type`: the plugin binary's name.
    pub plugin_type: String,
    pub disable_check: bool,
    pub disable_gc: bool,
    /// The previous plugin's result, raw; see [`NetConf::parsed_prev_result`].
    pub prev_result: Option<Value>,
    /// `runtimeConfig`, raw; `{}` when absent.
    pub runtime_config: Value,
    /// `args` (an object), raw.
    pub args: Option<Value>,
    /// `capabilities`: capability name → declared.
    pub capabilities: Map<String, Value>,
    pub ip_masq: bool,
    /// `ipam` (an object), raw.
    pub ipam: Option<Value>,
    /// `dns` (an object), raw.
    pub dns: Option<Value>,
    /// `cni.dev/valid-attachments`, raw; see [`NetConf::valid_attachments`].
    pub valid_attachments: Option<Value>,
    /// Every other top-level key, including the plugin's own settings and keys
    /// runtimes inject (e.g. `cni.dev/attachments`).
    pub plugin: Map<String, Value>,
}

impl NetConf {
    /// Decodes stdin. Order of checks (the reference skeleton's): JSON object
    /// (code 6), `name` and `type` (code 7), `cniVersion` (code 1), then the
    /// types of the other standard keys (code 7, naming the key).
    pub fn from_slice(stdin: &[u8]) -> Result<Self, CniError> {
        Self::from_map(decode_object(stdin)?)
    }

    /// As [`from_slice`](Self::from_slice), from an already decoded object.
    pub fn from_map(mut map: Map<String, Value>) -> Result<Self, CniError> {
        let name = required_string(&mut map, "name")?;
        if !is_cni_identifier(&name) {
            return Err(CniError::config(
                "name",
                format!(
                    "{name:?} is not a valid network name (it must start with a letter or digit, \
                     followed by letters, digits, '_', '.' or '-')"
                ),
            ));
        }
        let plugin_type = required_string(&mut map, "type")?;
        let cni_version = version_of(&map)?;
        map.remove("cniVersion");

        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            disable_check: take_bool(&mut map, "disableCheck")?,
            disable_gc: take_bool(&mut map, "disableGC")?,
            prev_result: take_present(&mut map, "prevResult"),
            runtime_config: take_object(&mut map, "runtimeConfig")?
                .unwrap_or_else(|| Value::Object(Map::new())),
            args: take_object(&mut map, "args")?,
            capabilities: match take_object(&mut map, "capabilities")? {
                Some(Value::Object(caps)) => caps,
                _ => Map::new(),
            },
            ip_masq: take_bool(&mut map, "ipMasq")?,
            ipam: take_object(&mut map, "ipam")?,
            dns: take_object(&mut map, "dns")?,
            valid_attachments: take_present(&mut map, VALID_ATTACHMENTS_KEY),
            plugin: map,
        })
    }

    /// The plugin's own settings: [`plugin`](Self::plugin) minus the keys runtimes
    /// and meta-plugins inject, which by convention contain `/` or `.`
    /// (`cni.dev/attachments`, `io.kubernetes.cri.pod-annotations`, …). A plugin
    /// that refuses unknown keys checks these against its own list.
    pub fn plugin_keys(&self) -> Map<String, Value> {
        self.plugin
            .iter()
            .filter(|(key, _)| !key.contains('/') && !key.contains('.'))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    /// Whether `capabilities` declares `name` as `true`.
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.get(name) == Some(&Value::Bool(true))
    }

    /// `prevResult`, parsed and validated (code 6 naming the JSON path).
    pub fn parsed_prev_result(&self) -> Result<Option<PrevResult>, CniError> {
        self.prev_result.as_ref().map(PrevResult::parse).transpose()
    }

    /// The GC request's still-valid attachments, from `cni.dev/valid-attachments`
    /// or, failing that, the legacy `cni.dev/attachments`.
    ///
    /// A GC request without either key is refused (code 7) rather than read as
    /// "nothing is valid": that reading would tear down every pod on the node.
    pub fn valid_attachments(&self) -> Result<Vec<AttachmentId>, CniError> {
        let (key, list) = match (
            &self.valid_attachments,
            self.plugin.get(LEGACY_ATTACHMENTS_KEY),
        ) {
            (Some(list), _) => (VALID_ATTACHMENTS_KEY, list),
            (None, Some(list)) if !list.is_null() => (LEGACY_ATTACHMENTS_KEY, list),
            _ => {
                return Err(CniError::config(
                    VALID_ATTACHMENTS_KEY,
                    "is missing (required for GC)",
                ))
            }
        };
        let entries = list
            .as_array()
            .ok_or_else(|| CniError::config(key, format!("expected an array, got {list}")))?;
        entries
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let path = format!("{key}[{index}]");
                let field = |name: &str| -> Result<String, CniError> {
                    match entry.get(name) {
                        Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
                        Some(other) => Err(CniError::config(
                            &format!("{path}.{name}"),
                            format!("expected a non-empty string, got {other}"),
                        )),
                        None => Err(CniError::config(&format!("{path}.{name}"), "is missing")),
                    }
                };
                if !entry.is_object() {
                    return Err(CniError::config(
                        &path,
                        format!("expected an object, got {entry}"),
                    ));
                }
                Ok(AttachmentId {
                    container_id: field("containerID")?,
                    ifname: field("ifname")?,
                })
            })
            .collect()
    }
}

/// stdin must be one JSON object (code 6 otherwise).
pub fn decode_object(stdin: &[u8]) -> Result<Map<String, Value>, CniError> {
    match serde_json::from_slice::<Value>(stdin) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(CniError::decode(
            "stdin",
            format!(
                "the network configuration must be a JSON object, got {}",
                json_kind(&other)
            ),
        )),
        Err(err) => Err(CniError::decode(
            "stdin",
            format!("the network configuration is not valid JSON: {err}"),
        )),
    }
}

/// The configuration's `cniVersion` (code 1 when missing, not a string, or
/// unsupported). Also used to state the version in error results.
pub fn version_of(map: &Map<String, Value>) -> Result<CniVersion, CniError> {
    match map.get("cniVersion") {
        Some(Value::String(text)) => CniVersion::parse(text),
        None | Some(Value::Null) => Err(CniError::incompatible_version("cniVersion: is missing")),
        Some(other) => Err(CniError::incompatible_version(format!(
            "cniVersion: {other} is not a version string"
        ))),
    }
}

fn required_string(map: &mut Map<String, Value>, key: &str) -> Result<String, CniError> {
    match map.remove(key) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        None | Some(Value::Null) => Err(CniError::config(key, "is missing")),
        Some(Value::String(_)) => Err(CniError::config(key, "is empty")),
        Some(other) => Err(CniError::config(
            key,
            format!("expected a string, got {}", json_kind(&other)),
        )),
    }
}

/// `null` is treated as absent (serializers of optional fields emit it).
fn take_present(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    map.remove(key).filter(|value| !value.is_null())
}

fn take_object(map: &mut Map<String, Value>, key: &str) -> Result<Option<Value>, CniError> {
    match take_present(map, key) {
        Some(value) if !value.is_object() => Err(CniError::config(
            key,
            format!("expected an object, got {}", json_kind(&value)),
        )),
        value => Ok(value),
    }
}

/// A boolean, absent meaning `false`. Like libcni, also accepts the strings
/// "true"/"false" in any case, which hand-written conflists contain.
fn take_bool(map: &mut Map<String, Value>, key: &str) -> Result<bool, CniError> {
    match take_present(map, key) {
        None => Ok(false),
        Some(Value::Bool(flag)) => Ok(flag),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(CniError::config(
            key,
            format!("expected a boolean, got {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::error::ErrorCode;
    use serde_json::json;

    fn parse(doc: Value) -> Result<NetConf, CniError> {
        NetConf::from_slice(doc.to_string().as_bytes())
    }

    fn minimal() -> Value {
        json!({"cniVersion": "1.1.0", "name": "k8s-pod-network", "type": "meshlane"})
    }

    fn set(mut doc: Value, key: &str, value: Value) -> Value {
        doc[key] = value;
        doc
    }

    fn without(mut doc: Value, key: &str) -> Value {
        doc.as_object_mut().expect("object").remove(key);
        doc
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let conf = parse(minimal()).expect("valid");
        assert_eq!(
            conf,
            NetConf {
                cni_version: CniVersion::V1_1_0,
                name: "k8s-pod-network".into(),
                plugin_type: "meshlane".into(),
                disable_check: false,
                disable_gc: false,
                prev_result: None,
                runtime_config: json!({}),
                args: None,
                capabilities: Map::new(),
                ip_masq: false,
                ipam: None,
                dns: None,
                valid_attachments: None,
                plugin: Map::new(),
            }
        );
        assert!(conf.plugin_keys().is_empty());
        assert_eq!(conf.parsed_prev_result(), Ok(None));
    }

    #[test]
    fn full_config_keeps_every_field() {
        let doc = json!({
            "cniVersion": "0.4.0",
            "name": "mesh.net_1",
            "type": "meshlane",
            "disableCheck": true,
            "disableGC": "TRUE",
            "prevResult": {"cniVersion": "0.4.0", "ips": []},
            "runtimeConfig": {"io.kubernetes.cri.pod-annotations": {"sidecar.istio.io/status": "{}"}},
            "args": {"cni": {"ips": ["10.0.0.1"]}},
            "capabilities": {"io.kubernetes.cri.pod-annotations": true, "portMappings": false},
            "ipMasq": true,
            "ipam": {"type": "host-local"},
            "dns": {"nameservers": ["10.96.0.10"]},
            "cni.dev/valid-attachments": [],
            "cni.dev/attachments": [],
            "proxyUID": 1337,
            "logLevel": "debug",
            "io.cilium.extra": 1,
        });
        let conf = parse(doc).expect("valid");
        assert_eq!(conf.cni_version, CniVersion::V0_4_0);
        assert_eq!(conf.name, "mesh.net_1");
        assert!(conf.disable_check);
        assert!(conf.disable_gc);
        assert!(conf.ip_masq);
        assert_eq!(
            conf.prev_result,
            Some(json!({"cniVersion": "0.4.0", "ips": []}))
        );
        assert_eq!(
            conf.runtime_config["io.kubernetes.cri.pod-annotations"]["sidecar.istio.io/status"],
            json!("{}")
        );
        assert_eq!(conf.args, Some(json!({"cni": {"ips": ["10.0.0.1"]}})));
        assert!(conf.has_capability("io.kubernetes.cri.pod-annotations"));
        assert!(!conf.has_capability("portMappings"));
        assert!(!conf.has_capability("bandwidth"));
        assert_eq!(conf.ipam, Some(json!({"type": "host-local"})));
        assert_eq!(conf.dns, Some(json!({"nameservers": ["10.96.0.10"]})));
        assert_eq!(conf.valid_attachments, Some(json!([])));
        let mut keys: Vec<&str> = conf.plugin.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "cni.dev/attachments",
                "io.cilium.extra",
                "logLevel",
                "proxyUID"
            ]
        );
        assert_eq!(
            Value::Object(conf.plugin_keys()),
            json!({"logLevel": "debug", "proxyUID": 1337})
        );
    }

    #[test]
    fn nulls_count_as_absent() {
        let mut doc = minimal();
        for key in [
            "prevResult",
            "runtimeConfig",
            "args",
            "capabilities",
            "ipMasq",
            "ipam",
            "dns",
            "disableCheck",
        ] {
            doc = set(doc, key, Value::Null);
        }
        let conf = parse(doc).expect("valid");
        assert_eq!(conf.prev_result, None);
        assert_eq!(conf.runtime_config, json!({}));
        assert!(conf.plugin.is_empty());
    }

    #[test]
    fn decode_failures_are_code_6() {
        let table: [(&[u8], &str); 9] = [
            (b"", "not valid JSON"),
            (b"   ", "not valid JSON"),
            (b"{", "not valid JSON"),
            (b"{\"name\": \"a\",}", "not valid JSON"),
            (b"{} {}", "not valid JSON"),
            (b"[]", "must be a JSON object, got an array"),
            (b"\"conf\"", "must be a JSON object, got a string"),
            (b"null", "must be a JSON object, got null"),
            (b"42", "must be a JSON object, got a number"),
        ];
        for (stdin, fragment) in table {
            let err = NetConf::from_slice(stdin).expect_err("must fail");
            assert_eq!(err.code, ErrorCode::Decode, "{stdin:?}");
            assert!(err.msg.starts_with("stdin: "), "{}", err.msg);
            assert!(err.msg.contains(fragment), "{stdin:?}: {}", err.msg);
        }
    }

    #[test]
    fn name_and_type_are_required_strings() {
        for key in ["name", "type"] {
            let table = [
                (without(minimal(), key), "is missing"),
                (set(minimal(), key, Value::Null), "is missing"),
                (set(minimal(), key, json!("")), "is empty"),
                (
                    set(minimal(), key, json!(1)),
                    "expected a string, got a number",
                ),
                (
                    set(minimal(), key, json!(["a"])),
                    "expected a string, got an array",
                ),
            ];
            for (doc, problem) in table {
                let err = parse(doc).expect_err(key);
                assert_eq!(err.code, ErrorCode::InvalidConfig);
                assert_eq!(err.msg, format!("{key}: {problem}"));
            }
        }
    }

    #[test]
    fn network_name_follows_the_identifier_rule() {
        for bad in ["-net", "net/1", "my net", "net:1", "_x"] {
            let err = parse(set(minimal(), "name", json!(bad))).expect_err(bad);
            assert_eq!(err.code, ErrorCode::InvalidConfig);
            assert!(err.msg.starts_with("name: "), "{}", err.msg);
            assert!(err.msg.contains(&format!("{bad:?}")), "{}", err.msg);
        }
    }

    #[test]
    fn name_and_type_are_checked_before_the_version() {
        let doc = json!({"cniVersion": "9.9.9", "type": "meshlane"});
        assert_eq!(parse(doc).expect_err("no name").msg, "name: is missing");
        let doc = json!({"cniVersion": "9.9.9", "name": "n"});
        assert_eq!(parse(doc).expect_err("no type").msg, "type: is missing");
    }

    #[test]
    fn version_failures_are_code_1() {
        let table = [
            (without(minimal(), "cniVersion"), "cniVersion: is missing"),
            (
                set(minimal(), "cniVersion", Value::Null),
                "cniVersion: is missing",
            ),
            (
                set(minimal(), "cniVersion", json!(1.0)),
                "cniVersion: 1.0 is not a version string",
            ),
            (
                set(minimal(), "cniVersion", json!("0.2.0")),
                "cniVersion: version \"0.2.0\" is not supported",
            ),
            (
                set(minimal(), "cniVersion", json!("one")),
                "cniVersion: \"one\" is not a version",
            ),
        ];
        for (doc, fragment) in table {
            let err = parse(doc).expect_err(fragment);
            assert_eq!(err.code, ErrorCode::IncompatibleVersion);
            assert!(err.msg.contains(fragment), "{}", err.msg);
        }
        for version in CniVersion::SUPPORTED {
            let conf =
                parse(set(minimal(), "cniVersion", json!(version.as_str()))).expect("supported");
            assert_eq!(conf.cni_version, version);
        }
    }

    #[test]
    fn standard_keys_of_the_wrong_type_are_code_7() {
        let table = [
            (
                "disableCheck",
                json!("yes"),
                "expected a boolean, got \"yes\"",
            ),
            ("disableGC", json!(1), "expected a boolean, got 1"),
            ("ipMasq", json!([]), "expected a boolean, got []"),
            (
                "runtimeConfig",
                json!([]),
                "expected an object, got an array",
            ),
            ("args", json!("K=V"), "expected an object, got a string"),
            (
                "capabilities",
                json!(["mac"]),
                "expected an object, got an array",
            ),
            (
                "ipam",
                json!("host-local"),
                "expected an object, got a string",
            ),
            (
                "dns",
                json!(["10.96.0.10"]),
                "expected an object, got an array",
            ),
        ];
        for (key, value, problem) in table {
            let err = parse(set(minimal(), key, value)).expect_err(key);
            assert_eq!(err.code, ErrorCode::InvalidConfig);
            assert_eq!(err.msg, format!("{key}: {problem}"));
        }
    }

    #[test]
    fn boolean_strings_like_libcni() {
        for (text, expected) in [
            ("true", true),
            ("True", true),
            ("false", false),
            ("FALSE", false),
        ] {
            let conf = parse(set(minimal(), "disableCheck", json!(text))).expect(text);
            assert_eq!(conf.disable_check, expected);
        }
    }

    #[test]
    fn prev_result_is_validated_on_demand() {
        let conf = parse(set(minimal(), "prevResult", json!({"ips": "nope"}))).expect("kept raw");
        let err = conf.parsed_prev_result().expect_err("malformed");
        assert_eq!(err.code, ErrorCode::Decode);
        assert!(err.msg.starts_with("prevResult.ips: "), "{}", err.msg);
    }

    #[test]
    fn valid_attachments() {
        let doc = set(
            minimal(),
            VALID_ATTACHMENTS_KEY,
            json!([
                {"containerID": "abc", "ifname": "eth0"},
                {"containerID": "def", "ifname": "net1", "extra": true},
            ]),
        );
        let conf = parse(doc).expect("valid");
        assert_eq!(
            conf.valid_attachments(),
            Ok(vec![
                AttachmentId {
                    container_id: "abc".into(),
                    ifname: "eth0".into()
                },
                AttachmentId {
                    container_id: "def".into(),
                    ifname: "net1".into()
                },
            ])
        );
        let empty = parse(set(minimal(), VALID_ATTACHMENTS_KEY, json!([]))).expect("valid");
        assert_eq!(empty.valid_attachments(), Ok(vec![]));
    }

    #[test]
    fn legacy_attachments_key_is_the_fallback() {
        let doc = set(
            minimal(),
            LEGACY_ATTACHMENTS_KEY,
            json!([{"containerID": "old", "ifname": "eth0"}]),
        );
        let conf = parse(doc.clone()).expect("valid");
        assert_eq!(
            conf.valid_attachments().expect("legacy")[0].container_id,
            "old"
        );
        // The current key wins when both are present.
        let both = set(doc, VALID_ATTACHMENTS_KEY, json!([]));
        assert_eq!(parse(both).expect("valid").valid_attachments(), Ok(vec![]));
    }

    #[test]
    fn malformed_valid_attachments_name_the_path() {
        let key = VALID_ATTACHMENTS_KEY;
        let table = [
            (json!({}), format!("{key}: expected an array, got {{}}")),
            (
                json!("abc"),
                format!("{key}: expected an array, got \"abc\""),
            ),
            (
                json!(["abc"]),
                format!("{key}[0]: expected an object, got \"abc\""),
            ),
            (
                json!([{"containerID": "a", "ifname": "eth0"}, {"ifname": "eth0"}]),
                format!("{key}[1].containerID: is missing"),
            ),
            (
                json!([{"containerID": "a"}]),
                format!("{key}[0].ifname: is missing"),
            ),
            (
                json!([{"containerID": 7, "ifname": "eth0"}]),
                format!("{key}[0].containerID: expected a non-empty string, got 7"),
            ),
            (
                json!([{"containerID": "a", "ifname": ""}]),
                format!("{key}[0].ifname: expected a non-empty string, got \"\""),
            ),
        ];
        for (list, message) in table {
            let conf = parse(set(minimal(), key, list)).expect("kept raw");
            let err = conf.valid_attachments().expect_err(&message);
            assert_eq!(err.code, ErrorCode::InvalidConfig);
            assert_eq!(err.msg, message);
        }
    }

    #[test]
    fn missing_valid_attachments_is_refused() {
        for doc in [
            minimal(),
            set(minimal(), VALID_ATTACHMENTS_KEY, Value::Null),
        ] {
            let err = parse(doc)
                .expect("valid")
                .valid_attachments()
                .expect_err("missing");
            assert_eq!(err.code, ErrorCode::InvalidConfig);
            assert_eq!(
                err.msg,
                "cni.dev/valid-attachments: is missing (required for GC)"
            );
        }
    }
}
