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
    // The attachment is how a repeated DEL finds the pod's records: it goes
    // last, so that a DEL killed half-way is finished by the runtime's next one.
    let released = maps.rebuild_from_attachments(attachment.netns_cookie, Some(key))?;
    maps.remove_attachment(key)?;
    if released {
        log_info!("released netns cookie {}", attachment.netns_cookie);
    }
    Ok(true)
}
