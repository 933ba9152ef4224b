//! CNI ADD: classify the pod, validate everything, then load the node programs if
//! needed and write the pod's records. Nothing is written before every input is
//! known to be good, and a pod that must be captured but cannot be set up fails.

use serde_json::Value;

use crate::cni::{AttachmentRequest, CniError, PrevResult};
use crate::datapath::lock::RootLock;
use crate::datapath::{ensure_attached, AttachOutcome, PodMaps};
use crate::log_info;
use crate::policy::selection::Selection;

use super::context::{attachment_key, pod_name, Context};
use super::pod_info::classify;
use super::pod_ips::ClaimedIps;
use super::setup::{self, Owner};

pub fn add(request: &AttachmentRequest) -> Result<Value, CniError> {
    let context = Context::for_attachment("ADD", request)?;
    let prev_value = request.config.prev_result.as_ref().ok_or_else(|| {
        CniError::config(
            "prevResult",
            "missing: meshlane is a chained plugin and must follow the primary plugin \
             (bridge, Calico, Cilium, ...) in the conflist",
        )
    })?;
    let prev = PrevResult::parse(prev_value)?;
    let result = PrevResult::pass_through(prev_value, request.config.cni_version);

    let classified = classify(&context.config, request)?;
    if let Selection::Skip(reason) = &classified.selection {
        log_info!("not captured: {reason}");
        return Ok(result);
    }
    let netns_path = request
        .netns
        .as_deref()
        .ok_or_else(|| CniError::invalid_env("CNI_NETNS", "required for ADD"))?;
    let prepared = setup::prepare(
        &context.config,
        &classified.pod,
        netns_path,
        ClaimedIps::PrevResult(&prev),
    )?;

    let cgroup = context.cgroup()?;
    if let AttachOutcome::Attached(programs) = ensure_attached(&context.layout, &cgroup)? {
        log_info!(
            "attached {} to {} (pins under {})",
            programs.join(", "),
            cgroup.display(),
            context.layout.root().display()
        );
    }

    let _lock = RootLock::exclusive(context.layout.root())?;
    let maps = PodMaps::open(&context.layout)?;
    let cookie = prepared.cookie;
    let (pod_namespace, pod_name) = pod_name(request);
    let owner = Owner {
        key: attachment_key(request),
        pod_namespace,
        pod_name,
    };
    let description = setup::write(&maps, prepared, owner)?;
    log_info!("captured: netns cookie {cookie}, {description}");
    Ok(result)
}
