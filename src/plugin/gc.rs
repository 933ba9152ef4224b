//! CNI GC (1.1): forget every attachment the runtime no longer lists, and any
//! pod record no attachment references.

use std::collections::HashSet;

use crate::cni::{CniError, GcRequest};
use crate::datapath::attachment::UNKNOWN_SANDBOX_PREFIX;
use crate::datapath::lock::RootLock;
use crate::datapath::{inbound_link, AttachmentKey, PodMaps};
use crate::log_info;

use super::context::Context;
use super::del::forget_attachment;

pub fn gc(request: &GcRequest) -> Result<(), CniError> {
    let context = Context::for_netconf("GC", &request.config)?;
    if !context.layout.maps_dir().exists() {
        return Ok(());
    }
    let _lock = RootLock::exclusive(context.layout.root())?;
    let maps = PodMaps::open(&context.layout)?;
    let valid: HashSet<AttachmentKey> = request
        .valid
        .iter()
        .map(|id| AttachmentKey::new(&id.container_id, &id.ifname))
        .collect();
    for attachment in maps.attachments()? {
        // A pod enrolled without its sandbox ID is in no runtime's list: it goes
        // when its netns does, not before (its capture would silently stop).
        let enrolled_alive = attachment
            .key
            .container_id
            .starts_with(UNKNOWN_SANDBOX_PREFIX)
            && inbound_link::netns_alive(&context.layout, attachment.netns_cookie);
        if !valid.contains(&attachment.key) && !enrolled_alive {
            log_info!(
                "gc: forgetting attachment {}/{} ({}/{})",
                attachment.key.container_id,
                attachment.key.ifname,
                attachment.pod_namespace,
                attachment.pod_name
            );
            forget_attachment(&maps, &attachment.key)?;
        }
    }
    let referenced: HashSet<u64> = maps.attachments()?.iter().map(|a| a.netns_cookie).collect();
    let mut orphans: HashSet<u64> = maps.pods()?.into_iter().map(|(cookie, _)| cookie).collect();
    orphans.extend(inbound_link::linked_cookies(&context.layout));
    // An ADD that stopped right after listing its keys leaves only its index.
    orphans.extend(maps.indexed_cookies()?);
    for cookie in orphans {
        if !referenced.contains(&cookie) {
            log_info!("gc: removing orphaned records of netns cookie {cookie}");
            maps.remove_pod(cookie)?;
        }
    }
    Ok(())
}
