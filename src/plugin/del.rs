//! CNI DEL: removes what ADD created. Succeeds when repeated, without prevResult,
//! when the netns is gone, and when meshlane never loaded anything.

use crate::cni::{AttachmentRequest, CniError};
use crate::datapath::lock::RootLock;
use crate::datapath::{AttachmentKey, PodMaps};
use crate::log_info;

use super::context::{attachment_key, Context};

pub fn del(request: &AttachmentRequest) -> Result<(), CniError> {
    let context = Context::for_attachment("DEL", request)?;
    if !context.layout.maps_dir().exists() {
        // Nothing was ever loaded under this root, so nothing of this pod exists.
        return Ok(());
    }
    let _lock = RootLock::exclusive(context.layout.root())?;
    let maps = PodMaps::open(&context.layout)?;
    if !forget_attachment(&maps, &attachment_key(request))? {
        // Runtimes repeat DEL (containerd at StopPodSandbox and again at
        // RemovePodSandbox, by then with the netns gone): one line per call.
        log_info!(
            "nothing to release (not captured, or released already; netns {})",
            netns_state(request.netns.as_deref())
        );
    }
    Ok(())
}

fn netns_state(netns: Option<&std::path::Path>) -> &'static str {
    match netns {
        None => "not given",
        Some(path) if path.exists() => "present",
        Some(_) => "gone",
    }
}

/// Removes one attachment, and its pod's records once no attachment is left.
/// Returns whether there was one.
pub fn forget_attachment(maps: &PodMaps, key: &AttachmentKey) -> Result<bool, CniError> {
    let Some(attachment) = maps.attachment(key)? else {
        return Ok(false);
    };
    maps.remove_attachment(key)?;
    if forget_netns_if_unused(maps, attachment.netns_cookie)? {
        log_info!("released netns cookie {}", attachment.netns_cookie);
    }
    Ok(true)
}

/// Removes a netns's pod records if no attachment references it any more; when
/// others remain, the record keeps only their IPs. Returns whether it removed.
pub fn forget_netns_if_unused(maps: &PodMaps, netns_cookie: u64) -> Result<bool, CniError> {
    let remaining: Vec<_> = maps
        .attachments()?
        .into_iter()
        .filter(|a| a.netns_cookie == netns_cookie)
        .collect();
    if remaining.is_empty() {
        maps.remove_pod(netns_cookie)?;
        return Ok(true);
    }
    if let Some(mut pod) = maps.pod(netns_cookie)? {
        let mut ips = Vec::new();
        for ip in remaining.iter().flat_map(|a| a.ips.iter()) {
            if !ips.contains(ip) {
                ips.push(*ip);
            }
        }
        let mut slots = pod.ips;
        slots.fill(Default::default());
        for (slot, ip) in slots.iter_mut().zip(&ips) {
            *slot = crate::datapath::abi::ml_addr::from_ip(*ip);
        }
        pod.ips = slots;
        pod.ip_count = ips.len().min(slots.len()) as u16;
        maps.put_pod_record(netns_cookie, &pod)?;
    }
    Ok(false)
}
