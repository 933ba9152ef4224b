//! Errors of the installer: the conflist logic (pure) and the node edges (files,
//! BPF, the HTTP listener).

use std::path::PathBuf;

use crate::datapath::DatapathError;
use crate::plugin::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum ConflistError {
    #[error("the configured primary CNI config {file} is invalid: {reason}")]
    ConfiguredInvalid { file: String, reason: String },

    #[error("cannot chain meshlane into {file}: {reason}")]
    Unsupported { file: String, reason: String },

    #[error(
        "wrapping {conf} into {conflist} would make the runtime use {picked} instead; \
         set the primary config name explicitly or rename the files"
    )]
    WrapNotPicked {
        conf: String,
        conflist: String,
        picked: String,
    },

    #[error("meshlane's chain entry would be refused by the plugin: {0}")]
    Entry(#[from] ConfigError),

    #[error(
        "{file} chains Istio's own CNI plugin (istio-cni), which already redirects the \
         pods' traffic with iptables; meshlane would capture the same pods a second time, \
         so it does not add its entry. Remove istio-cni first (README, \"Moving from \
         istio-cni\"): meshlane chains itself as soon as istio-cni's entry is gone"
    )]
    IstioCni { file: String },
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Conflist(#[from] ConflistError),

    #[error(transparent)]
    Datapath(#[from] DatapathError),

    #[error(
        "{path} changed while meshlane was editing it (the primary CNI rewrote it): \
         left as it is, to be planned again"
    )]
    ChangedMeanwhile { path: PathBuf },

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{setting}: {problem}")]
    Setting {
        setting: &'static str,
        problem: String,
    },

    #[error(
        "{count} captured pod(s) still on this node: {pods}; delete them first (or pass \
         --force: they lose capture at once)"
    )]
    PodsStillCaptured { count: usize, pods: String },
}

impl InstallError {
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| InstallError::Io {
            action,
            path,
            source,
        }
    }
}
