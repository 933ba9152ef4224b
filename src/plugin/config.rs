//! meshlane's own keys in its CNI configuration entry. Unknown keys are refused
//! (a typo in `bpffsRoot` must not silently pin into the production root).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::datapath::DEFAULT_PIN_ROOT;
use crate::log::Level;
use crate::policy::pod_capture::{ISTIO_PROXY_GID, ISTIO_PROXY_UID};
use crate::policy::CaptureMode;

pub const DEFAULT_LOG_FILE: &str = "/var/log/meshlane/cni.log";

/// Every key meshlane reads, with what it means (the README lists the same).
pub const KEYS: [(&str, &str); 7] = [
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
        "which pods are captured: \"cni-args\" (default), \"all\" or \"none\"",
    ),
    ("proxyUID", "the sidecar's UID (default 1337)"),
    ("proxyGID", "the sidecar's GID (default 1337)"),
    (
        "logFile",
        "log file, \"\" for stderr only (default /var/log/meshlane/cni.log)",
    ),
    ("logLevel", "debug, info (default), warn or error"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    pub pin_root: PathBuf,
    /// `None`: the host's cgroup2 mount.
    pub cgroup: Option<PathBuf>,
    pub capture: CaptureMode,
    pub proxy_uid: u32,
    pub proxy_gid: u32,
    pub log_file: Option<PathBuf>,
    pub log_level: Level,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            pin_root: PathBuf::from(DEFAULT_PIN_ROOT),
            cgroup: None,
            capture: CaptureMode::default(),
            proxy_uid: ISTIO_PROXY_UID,
            proxy_gid: ISTIO_PROXY_GID,
            log_file: Some(PathBuf::from(DEFAULT_LOG_FILE)),
            log_level: Level::Info,
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
                    let text = string(key, value)?;
                    config.capture = CaptureMode::parse(text).ok_or_else(|| {
                        bad(
                            key,
                            format!("{text:?} is not one of \"cni-args\", \"all\", \"none\""),
                        )
                    })?;
                }
                "proxyUID" => config.proxy_uid = proxy_id(key, value)?,
                "proxyGID" => config.proxy_gid = proxy_id(key, value)?,
                "logFile" => {
                    config.log_file = match string(key, value)? {
                        "" => None,
                        _ => Some(absolute_path(key, value)?),
                    }
                }
                "logLevel" => {
                    let text = string(key, value)?;
                    config.log_level = Level::parse(text).ok_or_else(|| {
                        bad(
                            key,
                            format!("{text:?} is not one of debug, info, warn, error"),
                        )
                    })?;
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
        Ok(config)
    }
}

fn string<'v>(key: &str, value: &'v Value) -> Result<&'v str, ConfigError> {
    value
        .as_str()
        .ok_or_else(|| bad(key, format!("{value} is not a string")))
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
        assert_eq!(parse(json!({})).unwrap(), PluginConfig::default());
    }

    #[test]
    fn every_key_is_read() {
        let config = parse(json!({
            "bpffsRoot": "/tmp/t/bpffs/meshlane",
            "cgroupPath": "/sys/fs/cgroup/unified/test",
            "capture": "all",
            "proxyUID": 1500,
            "proxyGID": 1501,
            "logFile": "/tmp/t/cni.log",
            "logLevel": "debug"
        }))
        .unwrap();
        assert_eq!(config.pin_root, PathBuf::from("/tmp/t/bpffs/meshlane"));
        assert_eq!(
            config.cgroup,
            Some(PathBuf::from("/sys/fs/cgroup/unified/test"))
        );
        assert_eq!(config.capture, CaptureMode::All);
        assert_eq!((config.proxy_uid, config.proxy_gid), (1500, 1501));
        assert_eq!(config.log_file, Some(PathBuf::from("/tmp/t/cni.log")));
        assert_eq!(config.log_level, Level::Debug);
        assert_eq!(parse(json!({"logFile": ""})).unwrap().log_file, None);
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
            (
                json!({"bpfRoot": "/sys/fs/bpf/x"}),
                "bpfRoot",
                "unknown key",
            ),
        ];
        for (input, key, mention) in cases {
            let err = parse(input.clone()).unwrap_err();
            assert_eq!(err.key, key, "{input}");
            assert!(err.to_string().contains(mention), "{input}: {err}");
        }
    }
}
