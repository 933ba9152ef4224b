//! meshlane as a CNI plugin: what ADD, DEL, CHECK, STATUS and GC do.

pub mod add;
pub mod check;
pub mod config;
pub mod context;
pub mod del;
mod errors;
pub mod excluded_interfaces;
pub mod gc;
pub mod pod_info;
pub mod pod_ips;
pub mod setup;
pub mod status;

use serde_json::Value;

use crate::cni::{AttachmentRequest, CniError, GcRequest, NetConf, Plugin};

pub struct Meshlane;

/// Failures go to the log too: the runtime shows the error JSON, the node's log
/// keeps the history. The record's `code` field (with the context's `command`)
/// is what the agent counts as a failed call (`install::log_tail`).
fn logged<T>(result: Result<T, CniError>) -> Result<T, CniError> {
    if let Err(err) = &result {
        let code = err.code.value();
        if err.details.is_empty() {
            crate::log::error("failed", &[("code", &code), ("error", &err.msg)]);
        } else {
            crate::log::error(
                "failed",
                &[
                    ("code", &code),
                    ("error", &err.msg),
                    ("details", &err.details),
                ],
            );
        }
    }
    result
}

impl Plugin for Meshlane {
    fn add(&self, request: &AttachmentRequest) -> Result<Value, CniError> {
        logged(add::add(request))
    }

    fn del(&self, request: &AttachmentRequest) -> Result<(), CniError> {
        logged(del::del(request))
    }

    fn check(&self, request: &AttachmentRequest) -> Result<(), CniError> {
        logged(check::check(request))
    }

    fn status(&self, config: &NetConf) -> Result<(), CniError> {
        logged(status::status(config))
    }

    fn gc(&self, request: &GcRequest) -> Result<(), CniError> {
        logged(gc::gc(request))
    }
}
