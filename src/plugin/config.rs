//! meshlane's own keys in its CNI configuration entry. Unknown keys are refused
//! (a typo in `bpffsRoot` must not silently pin into the production root).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::datapath::DEFAULT_PIN_ROOT;
use crate::log::file::DEFAULT_MAX_BYTES;
use crate::log::{Format, Level};
use crate::policy::pod_capture::{ISTIO_PROXY_GID, ISTIO_PROXY_UID};
use crate::policy::short_path_kernels::ShortPathSwitch;
use crate::policy::{CaptureMode, Mesh};

pub const DEFAULT_LOG_FILE: &str = "/var/log/meshlane/cni.log";

/// Every key meshlane reads, with what it means (the README lists the same).
pub const KEYS: [(&str, &str); 15] = [
    (
        "bpffsRoot",
        "pin root on a bpffs (default /sys/fs/bpf/meshlane)",
    ),
    (
        "cgroupPath",
        "cgroup v2 directory the node programs attach to (default: the cgroup2 mount)",
    ),
    (
        "capture",
        "which pods: \"mesh\" (default; also written \"istio\": the pods the configured \
         mesh injected), \"all\", \"cni-args\" or \"none\"",
    ),
    (
        "mesh",
        "whose capture rules: \"istio\" (default), \"kuma\" or \"linkerd\" (docs/meshes.md); \
         pods of other meshes are left alone",
    ),
    (
        "excludeNamespaces",
        "namespaces never captured (default [\"kube-system\"])",
    ),
    (
        "proxyUID",
        "the sidecar's UID when the pod sets none (default 1337)",
    ),
    (
        "proxyGID",
        "the sidecar's GID when the pod sets none (default 1337)",
    ),
    (
        "dnsCapture",
        "capture DNS mesh-wide, as ISTIO_META_DNS_CAPTURE does (default false)",
    ),
    (
        "kubeconfig",
        "kubeconfig for reading pods from the API (default: none)",
    ),
    (
        "podSpecLookup",
        "read the pod from the API: \"fallback\" (default), \"always\" or \"never\"",
    ),
    (
        "logFile",
        "log file, \"\" for stderr only (default /var/log/meshlane/cni.log)",
    ),
    ("logLevel", "debug, info (default), warn or error"),
    (
        "logFormat",
        "\"logfmt\" (default) or \"json\", the same as the agent's",
    ),
    (
        "logMaxBytes",
        "the log file is rotated to <file>.1 past this size (default 10485760; 0: never)",
    ),
    (
        "shortPath",
        "sockmap short path between sidecars on the node: true (on), false (off); unset: on \
         where the kernel series is proven (docs/kernels.md); per pod: the annotation \
         meshlane.io/short-path: \"false\" or \"app\"",
    ),
];

/// When the plugin reads a pod from the Kubernetes API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PodSpecLookup {
    /// Only when the runtime did not pass the pod's annotations.
    #[default]
    Fallback,
    /// For every pod that may be captured: per-pod proxy settings (runAsUser,
    /// DNS capture in the proxy's env), the inject label, a gateway's proxy type.
    Always,
    /// Never: a pod without annotations cannot be classified and fails.
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    pub pin_root: PathBuf,
    /// `None`: the host's cgroup2 mount.
    pub cgroup: Option<PathBuf>,
    pub capture: CaptureMode,
    pub mesh: Mesh,
    pub exclude_namespaces: Vec<String>,
    pub proxy_uid: u32,
    pub proxy_gid: u32,
    pub dns_capture: bool,
    pub kubeconfig: Option<PathBuf>,
    pub pod_spec_lookup: PodSpecLookup,
    pub log_file: Option<PathBuf>,
    pub log_level: Level,
    pub log_format: Format,
    pub log_max_bytes: u64,
    /// Absent: on where the kernel series is proven.
    pub short_path: ShortPathSwitch,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            pin_root: PathBuf::from(DEFAULT_PIN_ROOT),
            cgroup: None,
            capture: CaptureMode::default(),
            mesh: Mesh::default(),
            exclude_namespaces: vec!["kube-system".to_owned()],
            proxy_uid: ISTIO_PROXY_UID,
            proxy_gid: ISTIO_PROXY_GID,
            dns_capture: false,
            kubeconfig: None,
            pod_spec_lookup: PodSpecLookup::default(),
            log_file: Some(PathBuf::from(DEFAULT_LOG_FILE)),
            log_level: Level::Info,
            log_format: Format::Logfmt,
            log_max_bytes: DEFAULT_MAX_BYTES,
            short_path: ShortPathSwitch::ByKernel,
        }
    }
}

/// A key with a value meshlane cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn bad(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        problem: problem.into(),
    }
}

impl PluginConfig {
    /// Reads meshlane's keys from the non-standard keys of its config entry.
    pub fn from_keys(keys: &Map<String, Value>) -> Result<Self, ConfigError> {
        let mut config = PluginConfig::default();
        for (key, value) in keys {
            match key.as_str() {
                "bpffsRoot" => config.pin_root = absolute_path(key, value)?,
                "cgroupPath" => config.cgroup = Some(absolute_path(key, value)?),
                "capture" => {
                    config.capture = keyword(key, value, CaptureMode::parse, CAPTURE_MODES)?
                }
                "mesh" => config.mesh = keyword(key, value, Mesh::parse, MESHES)?,
                "excludeNamespaces" => config.exclude_namespaces = string_list(key, value)?,
                "proxyUID" => config.proxy_uid = proxy_id(key, value)?,
                "proxyGID" => config.proxy_gid = proxy_id(key, value)?,
                "dnsCapture" => config.dns_capture = boolean(key, value)?,
                "kubeconfig" => config.kubeconfig = Some(absolute_path(key, value)?),
                "podSpecLookup" => {
                    config.pod_spec_lookup = keyword(key, value, pod_spec_lookup, LOOKUPS)?
                }
                "logFile" => {
                    config.log_file = match string(key, value)? {
                        "" => None,
                        _ => Some(absolute_path(key, value)?),
                    }
                }
                "logLevel" => config.log_level = keyword(key, value, Level::parse, LEVELS)?,
                "logFormat" => config.log_format = keyword(key, value, Format::parse, FORMATS)?,
                "logMaxBytes" => {
                    config.log_max_bytes = value
                        .as_u64()
                        .ok_or_else(|| bad(key, format!("{value} is not a number of bytes")))?;
                }
                "shortPath" => {
                    config.short_path = ShortPathSwitch::from_setting(Some(boolean(key, value)?))
                }
                _ => {
                    let known: Vec<&str> = KEYS.iter().map(|(name, _)| *name).collect();
                    return Err(bad(
                        key,
                        format!("unknown key (meshlane reads {})", known.join(", ")),
                    ));
                }
            }
        }
        istio_only_keys(&config, keys)?;
        Ok(config)
    }
}

/// Keys that hold Istio's mesh-wide settings: another mesh's pods carry their own.
const ISTIO_ONLY_KEYS: [&str; 3] = ["proxyUID", "proxyGID", "dnsCapture"];

fn istio_only_keys(config: &PluginConfig, keys: &Map<String, Value>) -> Result<(), ConfigError> {
    match ISTIO_ONLY_KEYS.iter().find(|key| keys.contains_key(**key)) {
        Some(key) if config.mesh != Mesh::Istio => Err(bad(
            key,
            format!(
                "is an Istio setting and the mesh is {:?} (its pods' annotations say it)",
                config.mesh.name()
            ),
        )),
        _ => Ok(()),
    }
}

/// The keywords each keyword setting takes, as its error lists them.
const CAPTURE_MODES: &str = r#""mesh", "istio", "all", "cni-args", "none""#;
const MESHES: &str = r#""istio", "kuma", "linkerd""#;
const LOOKUPS: &str = r#""fallback", "always", "never""#;
const LEVELS: &str = "debug, info, warn, error";
const FORMATS: &str = "logfmt, json";

/// A keyword `parse` knows; an error lists the keywords (`names`).
fn keyword<T>(
    key: &str,
    value: &Value,
    parse: impl Fn(&str) -> Option<T>,
    names: &str,
) -> Result<T, ConfigError> {
    let text = string(key, value)?;
    parse(text).ok_or_else(|| bad(key, format!("{text:?} is not one of {names}")))
}

fn string<'v>(key: &str, value: &'v Value) -> Result<&'v str, ConfigError> {
    value
        .as_str()
        .ok_or_else(|| bad(key, format!("{value} is not a string")))
}

fn boolean(key: &str, value: &Value) -> Result<bool, ConfigError> {
    value
        .as_bool()
        .ok_or_else(|| bad(key, format!("{value} is not true or false")))
}

fn string_list(key: &str, value: &Value) -> Result<Vec<String>, ConfigError> {
    let items = value
        .as_array()
        .ok_or_else(|| bad(key, format!("{value} is not a list of strings")))?;
    items
        .iter()
        .map(|item| {
            item.as_str()
                .map(str::to_owned)
                .ok_or_else(|| bad(key, format!("{item} in the list is not a string")))
        })
        .collect()
}

fn pod_spec_lookup(text: &str) -> Option<PodSpecLookup> {
    match text {
        "fallback" => Some(PodSpecLookup::Fallback),
        "always" => Some(PodSpecLookup::Always),
        "never" => Some(PodSpecLookup::Never),
        _ => None,
    }
}

fn absolute_path(key: &str, value: &Value) -> Result<PathBuf, ConfigError> {
    let text = string(key, value)?;
    let path = Path::new(text);
    if !path.is_absolute() {
        return Err(bad(key, format!("{text:?} is not an absolute path")));
    }
    Ok(path.to_path_buf())
}

/// A proxy UID/GID: root (0) would exempt every root process from capture.
fn proxy_id(key: &str, value: &Value) -> Result<u32, ConfigError> {
    match value.as_u64() {
        Some(id) if id > 0 && id < u64::from(u32::MAX) => Ok(id as u32),
        _ => Err(bad(
            key,
            format!("{value} is not a user/group id between 1 and 4294967294"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<PluginConfig, ConfigError> {
        PluginConfig::from_keys(value.as_object().unwrap())
    }

    #[test]
    fn empty_means_defaults() {
        let config = parse(json!({})).unwrap();
        assert_eq!(config, PluginConfig::default());
        assert_eq!(config.capture, CaptureMode::Mesh);
        assert_eq!(config.mesh, Mesh::Istio);
        assert_eq!(config.exclude_namespaces, vec!["kube-system"]);
        assert_eq!(config.short_path, ShortPathSwitch::ByKernel);
    }

    #[test]
    fn every_key_is_read() {
        let config = parse(json!({
            "bpffsRoot": "/tmp/t/bpffs/meshlane",
            "cgroupPath": "/sys/fs/cgroup/unified/test",
            "capture": "all",
            "excludeNamespaces": ["kube-system", "istio-system"],
            "proxyUID": 1500,
            "proxyGID": 1501,
            "dnsCapture": true,
            "kubeconfig": "/etc/cni/net.d/meshlane-kubeconfig",
            "podSpecLookup": "always",
            "logFile": "/tmp/t/cni.log",
            "logLevel": "debug",
            "logFormat": "json",
            "logMaxBytes": 4096,
            "shortPath": false
        }))
        .unwrap();
        assert_eq!(config.pin_root, PathBuf::from("/tmp/t/bpffs/meshlane"));
        assert_eq!(
            config.cgroup,
            Some(PathBuf::from("/sys/fs/cgroup/unified/test"))
        );
        assert_eq!(config.capture, CaptureMode::All);
        assert_eq!(
            config.exclude_namespaces,
            vec!["kube-system", "istio-system"]
        );
        assert_eq!((config.proxy_uid, config.proxy_gid), (1500, 1501));
        assert!(config.dns_capture);
        assert_eq!(
            config.kubeconfig,
            Some(PathBuf::from("/etc/cni/net.d/meshlane-kubeconfig"))
        );
        assert_eq!(config.pod_spec_lookup, PodSpecLookup::Always);
        assert_eq!(config.log_file, Some(PathBuf::from("/tmp/t/cni.log")));
        assert_eq!(config.log_level, Level::Debug);
        assert_eq!(config.log_format, Format::Json);
        assert_eq!(config.log_max_bytes, 4096);
        assert_eq!(config.short_path, ShortPathSwitch::Off);
        assert_eq!(
            parse(json!({"shortPath": true})).unwrap().short_path,
            ShortPathSwitch::On
        );
        assert_eq!(parse(json!({"logFile": ""})).unwrap().log_file, None);
        assert_eq!(
            parse(json!({"excludeNamespaces": []}))
                .unwrap()
                .exclude_namespaces,
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_mesh_key_picks_whose_selection_capture_follows() {
        let linkerd = parse(json!({"mesh": "linkerd"})).unwrap();
        assert_eq!(linkerd.mesh, Mesh::Linkerd);
        for capture in ["istio", "mesh"] {
            let config = parse(json!({"mesh": "kuma", "capture": capture})).unwrap();
            assert_eq!(
                (config.mesh, config.capture),
                (Mesh::Kuma, CaptureMode::Mesh)
            );
        }
        let istio = parse(json!({"mesh": "istio", "proxyUID": 1500})).unwrap();
        assert_eq!((istio.mesh, istio.proxy_uid), (Mesh::Istio, 1500));
    }

    #[test]
    fn bad_values_name_the_key_and_value() {
        let cases = [
            (
                json!({"bpffsRoot": "relative/path"}),
                "bpffsRoot",
                "relative/path",
            ),
            (json!({"bpffsRoot": 7}), "bpffsRoot", "7"),
            (json!({"cgroupPath": "cgroup"}), "cgroupPath", "cgroup"),
            (json!({"capture": "sometimes"}), "capture", "sometimes"),
            (json!({"proxyUID": 0}), "proxyUID", "0"),
            (json!({"proxyUID": -1}), "proxyUID", "-1"),
            (json!({"proxyGID": "1337"}), "proxyGID", "1337"),
            (json!({"proxyGID": 4294967295u64}), "proxyGID", "4294967295"),
            (json!({"logLevel": "loud"}), "logLevel", "loud"),
            (json!({"logFormat": "text"}), "logFormat", "text"),
            (json!({"logMaxBytes": -1}), "logMaxBytes", "-1"),
            (
                json!({"bpfRoot": "/sys/fs/bpf/x"}),
                "bpfRoot",
                "unknown key",
            ),
            (
                json!({"excludeNamespaces": "kube-system"}),
                "excludeNamespaces",
                "kube-system",
            ),
            (json!({"excludeNamespaces": [1]}), "excludeNamespaces", "1"),
            (json!({"dnsCapture": "yes"}), "dnsCapture", "yes"),
            (
                json!({"podSpecLookup": "sometimes"}),
                "podSpecLookup",
                "sometimes",
            ),
            (
                json!({"kubeconfig": "kubeconfig"}),
                "kubeconfig",
                "kubeconfig",
            ),
            (json!({"shortPath": 1}), "shortPath", "1"),
            (json!({"mesh": "consul"}), "mesh", "consul"),
            (
                json!({"mesh": "linkerd", "proxyUID": 2102}),
                "proxyUID",
                "linkerd",
            ),
            (
                json!({"mesh": "linkerd", "dnsCapture": false}),
                "dnsCapture",
                "linkerd",
            ),
            (
                json!({"mesh": "kuma", "proxyUID": 1500}),
                "proxyUID",
                "kuma",
            ),
            (
                json!({"dnsCapture": true, "mesh": "kuma"}),
                "dnsCapture",
                "kuma",
            ),
            (
                json!({"mesh": "kuma", "proxyGID": 1500}),
                "proxyGID",
                "kuma",
            ),
        ];
        for (input, key, mention) in cases {
            let err = parse(input.clone()).unwrap_err();
            assert_eq!(err.key, key, "{input}");
            assert!(err.to_string().contains(mention), "{input}: {err}");
        }
    }

    #[test]
    fn a_bad_keyword_is_refused_listing_the_keywords() {
        let cases = [
            (
                "capture",
                r#""x" is not one of "mesh", "istio", "all", "cni-args", "none""#,
            ),
            ("mesh", r#""x" is not one of "istio", "kuma", "linkerd""#),
            (
                "podSpecLookup",
                r#""x" is not one of "fallback", "always", "never""#,
            ),
            ("logLevel", r#""x" is not one of debug, info, warn, error"#),
            ("logFormat", r#""x" is not one of logfmt, json"#),
        ];
        for (key, problem) in cases {
            let err = parse(json!({ key: "x" })).unwrap_err();
            assert_eq!((err.key.as_str(), err.problem.as_str()), (key, problem));
        }
    }
}
