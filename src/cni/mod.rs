//! meshlane's own thin layer over the CNI specification (1.1, reading 0.3.0–1.1.0
//! configurations). It knows the protocol — environment, stdin, stdout, exit codes,
//! version rules, result pass-through — and nothing about meshlane: the plugin
//! behind it implements [`Plugin`].
//!
//! Why not the `cni-plugin` crate: it is unmaintained, drops unknown fields of real
//! plugin results and has no CNI 1.1 (STATUS, GC).

pub mod command;
pub mod config;
pub mod error;
pub mod prev_result;
pub mod protocol;
pub mod version;

pub use command::{Command, Environment};
pub use config::NetConf;
pub use error::{CniError, ErrorCode};
pub use prev_result::{PodInterfaceIp, PrevResult};
pub use version::CniVersion;

/// One CNI attachment as named by the runtime (the unit DEL and GC work on).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttachmentId {
    pub container_id: String,
    pub ifname: String,
}

/// Everything an ADD, DEL or CHECK receives.
#[derive(Debug, Clone)]
pub struct AttachmentRequest {
    pub attachment: AttachmentId,
    /// `CNI_NETNS`; required for ADD and CHECK, optional for DEL.
    pub netns: Option<std::path::PathBuf>,
    /// `CNI_ARGS`, split into key/value pairs in order.
    pub args: Vec<(String, String)>,
    pub config: NetConf,
}

/// A GC request: every attachment not listed in `valid` may be cleaned up.
#[derive(Debug, Clone)]
pub struct GcRequest {
    pub valid: Vec<AttachmentId>,
    pub config: NetConf,
}

/// What a plugin implements; the protocol layer ([`protocol::run`]) does the protocol.
pub trait Plugin {
    /// ADD: returns the result to print. A chained plugin returns the previous
    /// result (see [`PrevResult::pass_through`]).
    fn add(&self, request: &AttachmentRequest) -> Result<serde_json::Value, CniError>;
    /// DEL: must succeed when repeated, without `prevResult`, and when the netns is gone.
    fn del(&self, request: &AttachmentRequest) -> Result<(), CniError>;
    fn check(&self, request: &AttachmentRequest) -> Result<(), CniError>;
    /// STATUS (1.1): `Ok` when the plugin is ready for ADDs.
    fn status(&self, config: &NetConf) -> Result<(), CniError>;
    fn gc(&self, request: &GcRequest) -> Result<(), CniError>;
}
