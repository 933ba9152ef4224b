//! CNI spec versions meshlane speaks, and the VERSION answer.
//!
//! 0.1.0/0.2.0 are not supported: they predate `prevResult` and chaining, which
//! is how meshlane learns the pod's IPs.

use serde_json::{json, Value};

use super::command::Command;
use super::error::CniError;

/// A supported CNI spec version. Ordered by age, so gates read `version >= V0_4_0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl CniVersion {
    /// Every version meshlane accepts, oldest first (the VERSION answer lists them).
    pub const SUPPORTED: [CniVersion; 5] = [
        CniVersion::V0_3_0,
        CniVersion::V0_3_1,
        CniVersion::V0_4_0,
        CniVersion::V1_0_0,
        CniVersion::V1_1_0,
    ];

    /// The version meshlane implements; used where no request version is known.
    pub const LATEST: CniVersion = CniVersion::V1_1_0;

    pub const fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    /// Parses the value of `cniVersion`. Anything that is not one of
    /// [`SUPPORTED`](Self::SUPPORTED) is code 1; the message says whether the text
    /// is not a version at all or a version meshlane does not speak.
    pub fn parse(text: &str) -> Result<Self, CniError> {
        if let Some(version) = Self::SUPPORTED.into_iter().find(|v| v.as_str() == text) {
            return Ok(version);
        }
        let err = if is_semver_core(text) {
            CniError::incompatible_version(format!("cniVersion: version {text:?} is not supported"))
        } else {
            CniError::incompatible_version(format!(
                "cniVersion: {text:?} is not a version (expected MAJOR.MINOR.PATCH)"
            ))
        };
        Err(err.with_details(format!("meshlane supports {}", supported_list())))
    }

    /// The oldest version in which `command` exists; `None` when every
    /// supported version has it.
    pub const fn minimum_for(command: Command) -> Option<CniVersion> {
        match command {
            Command::Check => Some(CniVersion::V0_4_0),
            Command::Status | Command::Gc => Some(CniVersion::V1_1_0),
            Command::Add | Command::Del | Command::Version => None,
        }
    }

    /// Code 1 when the configuration's version predates `command`.
    pub fn allows(self, command: Command) -> Result<(), CniError> {
        match Self::minimum_for(command) {
            Some(minimum) if self < minimum => Err(CniError::incompatible_version(format!(
                "cniVersion: version {self} does not allow {command} (needs {minimum} or later)"
            ))),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for CniVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CniVersion {
    type Err = CniError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// The VERSION answer. Always states [`CniVersion::LATEST`], whatever stdin said,
/// like the reference library: the runtime only reads `supportedVersions`.
pub fn version_info() -> Value {
    let supported: Vec<&str> = CniVersion::SUPPORTED.iter().map(|v| v.as_str()).collect();
    json!({"cniVersion": CniVersion::LATEST.as_str(), "supportedVersions": supported})
}

fn supported_list() -> String {
    CniVersion::SUPPORTED
        .iter()
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `MAJOR.MINOR.PATCH` with decimal parts, so "2.0.0" is reported as unsupported
/// and "latest" as not a version.
fn is_semver_core(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::error::ErrorCode;

    #[test]
    fn parses_every_supported_version_and_round_trips() {
        for version in CniVersion::SUPPORTED {
            assert_eq!(CniVersion::parse(version.as_str()), Ok(version));
            assert_eq!(version.to_string().parse::<CniVersion>(), Ok(version));
        }
    }

    #[test]
    fn supported_is_oldest_first() {
        assert!(CniVersion::SUPPORTED.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(CniVersion::SUPPORTED.last(), Some(&CniVersion::LATEST));
    }

    #[test]
    fn rejects_unsupported_and_unparseable_versions_with_code_1() {
        let table = [
            ("0.1.0", "version \"0.1.0\" is not supported"),
            ("0.2.0", "version \"0.2.0\" is not supported"),
            ("0.3.2", "version \"0.3.2\" is not supported"),
            ("1.2.0", "version \"1.2.0\" is not supported"),
            ("2.0.0", "version \"2.0.0\" is not supported"),
            ("", "\"\" is not a version"),
            ("1.0", "\"1.0\" is not a version"),
            ("1", "\"1\" is not a version"),
            ("v1.0.0", "\"v1.0.0\" is not a version"),
            ("1.0.0-rc1", "\"1.0.0-rc1\" is not a version"),
            ("1.0.0.0", "\"1.0.0.0\" is not a version"),
            (" 1.0.0", "\" 1.0.0\" is not a version"),
            ("1..0", "\"1..0\" is not a version"),
            ("latest", "\"latest\" is not a version"),
        ];
        for (text, message) in table {
            let err = CniVersion::parse(text).expect_err(text);
            assert_eq!(err.code, ErrorCode::IncompatibleVersion, "{text:?}");
            assert!(err.msg.starts_with("cniVersion: "), "{}", err.msg);
            assert!(err.msg.contains(message), "{text:?}: {}", err.msg);
            assert_eq!(
                err.details,
                "meshlane supports 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"
            );
        }
    }

    #[test]
    fn command_gates() {
        use CniVersion::*;
        // (command, versions that must be refused)
        let table: [(Command, &[CniVersion]); 6] = [
            (Command::Add, &[]),
            (Command::Del, &[]),
            (Command::Version, &[]),
            (Command::Check, &[V0_3_0, V0_3_1]),
            (Command::Status, &[V0_3_0, V0_3_1, V0_4_0, V1_0_0]),
            (Command::Gc, &[V0_3_0, V0_3_1, V0_4_0, V1_0_0]),
        ];
        for (command, refused) in table {
            for version in CniVersion::SUPPORTED {
                let result = version.allows(command);
                if refused.contains(&version) {
                    let err = result.expect_err("gate");
                    assert_eq!(err.code, ErrorCode::IncompatibleVersion);
                    assert!(
                        err.msg
                            .contains(&format!("version {version} does not allow {command}")),
                        "{}",
                        err.msg
                    );
                } else {
                    assert_eq!(result, Ok(()), "{command} at {version}");
                }
            }
        }
    }

    #[test]
    fn version_answer() {
        assert_eq!(
            version_info(),
            json!({
                "cniVersion": "1.1.0",
                "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
            })
        );
    }
}
