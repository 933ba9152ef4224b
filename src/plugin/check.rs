//! CNI CHECK: a captured pod still has its records and the node programs are
//! still attached.

use crate::cni::{AttachmentRequest, CniError};
use crate::datapath::inventory::Inventory;
use crate::datapath::PodMaps;
use crate::netns;
use crate::policy::selection::Selection;

use super::context::{attachment_key, Context};
use super::pod_info::classify;

pub fn check(request: &AttachmentRequest) -> Result<(), CniError> {
    let context = Context::for_attachment("CHECK", request)?;
    if request.config.prev_result.is_none() {
        return Err(CniError::config(
            "prevResult",
            "missing: CHECK needs the ADD result",
        ));
    }
    if let Selection::Skip(_) = classify(&context.config, request)?.selection {
        return Ok(());
    }
    if let Some(missing) = Inventory::probe(&context.layout).missing().first() {
        return Err(CniError::datapath(missing.clone()));
    }
    let netns_path = request
        .netns
        .as_deref()
        .ok_or_else(|| CniError::invalid_env("CNI_NETNS", "required for CHECK"))?;
    let facts = netns::inspect(netns_path, false)?;
    let maps = PodMaps::open(&context.layout)?;
    let key = attachment_key(request);
    let attachment = maps.attachment(&key)?.ok_or_else(|| {
        CniError::pod_state(format!(
            "no record of attachment {}/{}: the pod is not captured",
            key.container_id, key.ifname
        ))
    })?;
    if attachment.netns_cookie != facts.cookie {
        return Err(CniError::pod_state(format!(
            "attachment {}/{} is recorded for netns cookie {}, but {} has cookie {}",
            key.container_id,
            key.ifname,
            attachment.netns_cookie,
            netns_path.display(),
            facts.cookie
        )));
    }
    let pod = maps.pod_summary(facts.cookie)?.ok_or_else(|| {
        CniError::pod_state(format!(
            "no pod record for netns cookie {}: the pod is not captured",
            facts.cookie
        ))
    })?;
    if pod.captures_inbound && !maps.inbound_attached(facts.cookie) {
        return Err(CniError::datapath(format!(
            "inbound steering is not linked to {} (no pin at {})",
            netns_path.display(),
            context.layout.inbound_link(facts.cookie).display()
        )));
    }
    for ip in &attachment.ips {
        if !facts.has_address(ip) {
            return Err(CniError::pod_state(format!(
                "captured IP {ip} is no longer configured in {}",
                netns_path.display()
            )));
        }
    }
    let recorded = pod.ip_count;
    if recorded < attachment.ips.len() {
        return Err(CniError::pod_state(format!(
            "the pod record lists {recorded} IPs, the attachment {}",
            attachment.ips.len()
        )));
    }
    Ok(())
}
