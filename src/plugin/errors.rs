//! How meshlane's internal errors become CNI errors (code + message).

use crate::cni::CniError;
use crate::datapath::DatapathError;
use crate::netns::NetnsError;

use super::config::ConfigError;

impl From<ConfigError> for CniError {
    fn from(err: ConfigError) -> Self {
        CniError::config(&err.key, &err.problem)
    }
}

impl From<NetnsError> for CniError {
    fn from(err: NetnsError) -> Self {
        match err {
            NetnsError::Cookie { .. } => CniError::kernel_unsupported(err.to_string()),
            _ => CniError::netns(err.to_string()),
        }
    }
}

impl From<DatapathError> for CniError {
    fn from(err: DatapathError) -> Self {
        let cni = datapath_code(&err);
        match err.verifier_log() {
            Some(log) => cni.with_details(log.trim_end()),
            None => cni,
        }
    }
}

fn datapath_code(err: &DatapathError) -> CniError {
    {
        match err {
            DatapathError::NotBpffs { .. } => CniError::config("bpffsRoot", err),
            DatapathError::NotCgroup2 { .. } | DatapathError::CgroupMismatch { .. } => {
                CniError::config("cgroupPath", err)
            }
            DatapathError::NoCgroup2Mount | DatapathError::KernelFeature(_) => {
                CniError::kernel_unsupported(err.to_string())
            }
            DatapathError::Lock { .. } => CniError::try_again(err.to_string()),
            DatapathError::AddressInUse { .. } => CniError::config("prevResult.ips", err),
            DatapathError::OpenMap { .. }
            | DatapathError::MapAccess { .. }
            | DatapathError::MapLayout { .. }
            | DatapathError::DoesNotFit { .. } => CniError::pod_state(err.to_string()),
            DatapathError::PinDir { .. }
            | DatapathError::Cgroup { .. }
            | DatapathError::Load { .. }
            | DatapathError::Attach { .. }
            | DatapathError::Pin { .. }
            | DatapathError::InboundLink { .. }
            | DatapathError::MapAttach { .. }
            | DatapathError::MissingProgram { .. }
            | DatapathError::MapIncompatible { .. }
            | DatapathError::NotAttached { .. }
            | DatapathError::ProgramQuery { .. }
            | DatapathError::Replace { .. } => CniError::datapath(err.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::ErrorCode;
    use crate::datapath::features::{MissingFeature, REQUIRED};

    #[test]
    fn a_missing_kernel_feature_is_code_103_with_precheck_s_message() {
        let missing = MissingFeature::new("5.10.0-28-cloud-amd64", &REQUIRED[3]);
        let cni = CniError::from(DatapathError::KernelFeature(missing.clone()));
        assert_eq!(cni.code, ErrorCode::KernelUnsupported);
        assert_eq!(cni.code.value(), 103);
        // The same words as `meshlane precheck` and the agent's /readyz, no log.
        assert_eq!(cni.msg, missing.to_string());
        assert!(cni.details.is_empty());
        assert!(cni.msg.contains("program type sk_lookup"), "{}", cni.msg);
    }
}
