//! The CNI error result: a numeric code, a short message and optional details,
//! printed on stdout as JSON when a command fails.
//!
//! Codes 1–99 are the spec's; 100+ are meshlane's own, so an operator reading a
//! kubelet event can tell "the kernel refused our program" from "bad config".

use serde_json::{Map, Value};

use super::version::CniVersion;

/// Every code meshlane may answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 1: the configuration's `cniVersion` is missing, unparseable or unsupported,
    /// or too old for the command.
    IncompatibleVersion,
    /// 2: a configuration field meshlane does not support (message names key and value).
    UnsupportedField,
    /// 3: the container is unknown; the runtime need not clean up.
    UnknownContainer,
    /// 4: a `CNI_*` environment variable is missing or invalid (message names it).
    InvalidEnvironment,
    /// 5: reading stdin or writing stdout failed.
    Io,
    /// 6: stdin or an embedded document (e.g. `prevResult`) could not be decoded.
    Decode,
    /// 7: the network configuration is invalid.
    InvalidConfig,
    /// 11: a transient condition; the runtime should retry later.
    TryAgainLater,
    /// 50 (STATUS): the plugin cannot serve ADDs.
    PluginNotAvailable,
    /// 51 (STATUS): the plugin cannot serve ADDs and existing pods may lose connectivity.
    LimitedConnectivity,
    /// 100: loading, attaching or pinning the BPF programs failed.
    Datapath,
    /// 101: entering or reading the pod's network namespace failed.
    Netns,
    /// 102: writing or removing the pod's BPF map entries failed.
    PodState,
    /// 103: a kernel feature meshlane needs is missing.
    KernelUnsupported,
    /// 104: the pod must be captured but cannot be classified or configured.
    PodPolicy,
    /// 999: a bug in meshlane (e.g. a panic caught by the protocol layer). Same value as
    /// the reference library's "internal" code, so runtimes log it the same way.
    Internal,
}

impl ErrorCode {
    /// All codes, in numeric order (for tables and tests).
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::IncompatibleVersion,
        ErrorCode::UnsupportedField,
        ErrorCode::UnknownContainer,
        ErrorCode::InvalidEnvironment,
        ErrorCode::Io,
        ErrorCode::Decode,
        ErrorCode::InvalidConfig,
        ErrorCode::TryAgainLater,
        ErrorCode::PluginNotAvailable,
        ErrorCode::LimitedConnectivity,
        ErrorCode::Datapath,
        ErrorCode::Netns,
        ErrorCode::PodState,
        ErrorCode::KernelUnsupported,
        ErrorCode::PodPolicy,
        ErrorCode::Internal,
    ];

    /// The number printed in the error JSON.
    pub const fn value(self) -> u32 {
        match self {
            ErrorCode::IncompatibleVersion => 1,
            ErrorCode::UnsupportedField => 2,
            ErrorCode::UnknownContainer => 3,
            ErrorCode::InvalidEnvironment => 4,
            ErrorCode::Io => 5,
            ErrorCode::Decode => 6,
            ErrorCode::InvalidConfig => 7,
            ErrorCode::TryAgainLater => 11,
            ErrorCode::PluginNotAvailable => 50,
            ErrorCode::LimitedConnectivity => 51,
            ErrorCode::Datapath => 100,
            ErrorCode::Netns => 101,
            ErrorCode::PodState => 102,
            ErrorCode::KernelUnsupported => 103,
            ErrorCode::PodPolicy => 104,
            ErrorCode::Internal => 999,
        }
    }

    /// The code with this number, if meshlane uses it.
    pub fn from_value(value: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.value() == value)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.value())
    }
}

/// A failed CNI command, as the runtime will see it.
///
/// `msg` names the culprit first (`"CNI_IFNAME: ..."`, `"prevResult.ips[1].address: ..."`)
/// so that a kubelet event is actionable without the details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{msg}{} (CNI error code {code})", details_suffix(.details))]
pub struct CniError {
    pub code: ErrorCode,
    pub msg: String,
    pub details: String,
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(": {details}")
    }
}

/// The constructors whose message is given whole, one per code: `CniError::io(msg)`
/// is `CniError::new(ErrorCode::Io, msg)`.
macro_rules! plain_constructors {
    ($($(#[$doc:meta])* $name:ident => $code:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(msg: impl Into<String>) -> Self {
                Self::new(ErrorCode::$code, msg)
            }
        )*
    };
}

impl CniError {
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// The culprit first, then what is wrong with it: `"CNI_IFNAME: is empty"`.
    fn naming(code: ErrorCode, culprit: &str, problem: impl std::fmt::Display) -> Self {
        Self::new(code, format!("{culprit}: {problem}"))
    }

    plain_constructors! {
        /// Code 1.
        incompatible_version => IncompatibleVersion;
        /// Code 3.
        unknown_container => UnknownContainer;
        /// Code 5.
        io => Io;
        /// Code 11.
        try_again => TryAgainLater;
        /// Code 50 (STATUS).
        plugin_not_available => PluginNotAvailable;
        /// Code 51 (STATUS).
        limited_connectivity => LimitedConnectivity;
        /// Code 100.
        datapath => Datapath;
        /// Code 101.
        netns => Netns;
        /// Code 102.
        pod_state => PodState;
        /// Code 103.
        kernel_unsupported => KernelUnsupported;
        /// Code 104.
        pod_policy => PodPolicy;
        /// Code 999.
        internal => Internal;
    }

    /// Adds the longer explanation (e.g. a verifier log, an errno chain).
    #[must_use]
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// Code 2; the spec wants the key and the value in the message.
    pub fn unsupported_field(key: &str, value: &Value) -> Self {
        Self::new(
            ErrorCode::UnsupportedField,
            format!("{key}: unsupported field (value {value})"),
        )
    }

    /// Code 4, naming the variable: `invalid_env("CNI_IFNAME", "is empty")`.
    pub fn invalid_env(variable: &str, problem: impl std::fmt::Display) -> Self {
        Self::naming(ErrorCode::InvalidEnvironment, variable, problem)
    }

    /// Code 6, naming where in the input: `decode("prevResult.ips[0]", "...")`.
    pub fn decode(path: &str, problem: impl std::fmt::Display) -> Self {
        Self::naming(ErrorCode::Decode, path, problem)
    }

    /// Code 7, naming the configuration key: `config("name", "is missing")`.
    pub fn config(key: &str, problem: impl std::fmt::Display) -> Self {
        Self::naming(ErrorCode::InvalidConfig, key, problem)
    }

    /// The error result document. `version` is the request's version when it is
    /// known; otherwise the newest version is stated, as the reference library does.
    pub fn to_json(&self, version: Option<CniVersion>) -> Value {
        let mut doc = Map::new();
        doc.insert(
            "cniVersion".into(),
            Value::from(version.unwrap_or(CniVersion::LATEST).as_str()),
        );
        doc.insert("code".into(), Value::from(self.code.value()));
        doc.insert("msg".into(), Value::from(self.msg.as_str()));
        if !self.details.is_empty() {
            doc.insert("details".into(), Value::from(self.details.as_str()));
        }
        Value::Object(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn codes_have_the_spec_and_meshlane_values() {
        let table = [
            (ErrorCode::IncompatibleVersion, 1),
            (ErrorCode::UnsupportedField, 2),
            (ErrorCode::UnknownContainer, 3),
            (ErrorCode::InvalidEnvironment, 4),
            (ErrorCode::Io, 5),
            (ErrorCode::Decode, 6),
            (ErrorCode::InvalidConfig, 7),
            (ErrorCode::TryAgainLater, 11),
            (ErrorCode::PluginNotAvailable, 50),
            (ErrorCode::LimitedConnectivity, 51),
            (ErrorCode::Datapath, 100),
            (ErrorCode::Netns, 101),
            (ErrorCode::PodState, 102),
            (ErrorCode::KernelUnsupported, 103),
            (ErrorCode::PodPolicy, 104),
            (ErrorCode::Internal, 999),
        ];
        assert_eq!(table.len(), ErrorCode::ALL.len());
        for (code, value) in table {
            assert_eq!(code.value(), value, "{code:?}");
            assert_eq!(ErrorCode::from_value(value), Some(code));
            assert_eq!(code.to_string(), value.to_string());
        }
        // ALL is sorted and has no duplicates.
        assert!(ErrorCode::ALL
            .windows(2)
            .all(|pair| pair[0].value() < pair[1].value()));
        for unused in [0, 8, 10, 12, 49, 52, 99, 105, 998, 1000] {
            assert_eq!(ErrorCode::from_value(unused), None, "{unused}");
        }
    }

    #[test]
    fn constructors_pick_the_code_and_name_the_culprit() {
        let table = [
            (CniError::incompatible_version("x"), 1, "x"),
            (
                CniError::unsupported_field("mtu", &json!(9000)),
                2,
                "mtu: unsupported field (value 9000)",
            ),
            (CniError::unknown_container("x"), 3, "x"),
            (
                CniError::invalid_env("CNI_IFNAME", "is empty"),
                4,
                "CNI_IFNAME: is empty",
            ),
            (CniError::io("x"), 5, "x"),
            (
                CniError::decode("prevResult.ips", "expected an array"),
                6,
                "prevResult.ips: expected an array",
            ),
            (
                CniError::config("name", "is missing"),
                7,
                "name: is missing",
            ),
            (CniError::try_again("x"), 11, "x"),
            (CniError::plugin_not_available("x"), 50, "x"),
            (CniError::limited_connectivity("x"), 51, "x"),
            (CniError::datapath("x"), 100, "x"),
            (CniError::netns("x"), 101, "x"),
            (CniError::pod_state("x"), 102, "x"),
            (CniError::kernel_unsupported("x"), 103, "x"),
            (CniError::pod_policy("x"), 104, "x"),
            (CniError::internal("x"), 999, "x"),
        ];
        for (err, code, msg) in table {
            assert_eq!(err.code.value(), code, "{err:?}");
            assert_eq!(err.msg, msg);
            assert!(err.details.is_empty());
        }
    }

    #[test]
    fn json_shape_with_known_version_and_details() {
        let err = CniError::datapath("attaching sk_lookup failed")
            .with_details("bpf_link_create: Operation not permitted");
        assert_eq!(
            err.to_json(Some(CniVersion::V0_4_0)),
            json!({
                "cniVersion": "0.4.0",
                "code": 100,
                "msg": "attaching sk_lookup failed",
                "details": "bpf_link_create: Operation not permitted",
            })
        );
    }

    #[test]
    fn json_omits_empty_details_and_defaults_the_version() {
        let err = CniError::invalid_env("CNI_COMMAND", "is missing");
        assert_eq!(
            err.to_json(None),
            json!({"cniVersion": "1.1.0", "code": 4, "msg": "CNI_COMMAND: is missing"})
        );
    }

    #[test]
    fn display_shows_message_details_and_code() {
        let plain = CniError::config("type", "is missing");
        assert_eq!(plain.to_string(), "type: is missing (CNI error code 7)");
        let detailed = CniError::netns("entering the pod netns").with_details("ENOENT");
        assert_eq!(
            detailed.to_string(),
            "entering the pod netns: ENOENT (CNI error code 101)"
        );
    }
}
