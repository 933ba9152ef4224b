//! A pod's inbound steering: the pinned sk_lookup program linked to the pod's
//! network namespace, the link pinned under `<root>/inbound/<netns cookie>` so that
//! it outlives the CNI process and DEL can find it even when the netns is gone.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use libbpf_rs::libbpf_sys;
use libbpf_rs::query::{LinkInfo, LinkTypeInfo};

use super::bpffs::{open_pin, pin_fd};
use super::error::DatapathError;
use super::layout::PinLayout;
use super::link_create::link_create;
use super::netns_tag;

const SK_LOOKUP_PROGRAM: &str = "sk_lookup";

/// Links the sk_lookup program to the netns at `netns_path`, after the netns's
/// tag programs (netns_tag.rs) that tell it which netns it runs in (idempotent).
/// The caller holds the pin root's lock.
pub fn attach(
    layout: &PinLayout,
    netns_cookie: u64,
    netns_path: &Path,
) -> Result<(), DatapathError> {
    let pin = layout.inbound_link(netns_cookie);
    // Looked at once: the caller's lock keeps anyone else from changing it.
    let pinned = pin.exists();
    if pinned && netns_tag::is_tagged(layout, netns_cookie) {
        return Ok(());
    }
    let link_err = |step: &'static str| {
        move |source: std::io::Error| DatapathError::InboundLink {
            netns: netns_path.to_path_buf(),
            step,
            source,
        }
    };
    ensure_inbound_dir(layout)?;
    let program_pin = layout.prog(SK_LOOKUP_PROGRAM);
    let program = open_pin(&program_pin).map_err(|source| DatapathError::OpenMap {
        path: program_pin.clone(),
        source: source.into(),
    })?;
    let netns = File::open(netns_path).map_err(link_err("opening the netns"))?;
    let tagged_now = netns_tag::attach(layout, netns_cookie, &netns, netns_path)?;
    if pinned && !tagged_now {
        return Ok(());
    }
    let result = (|| {
        let link = link_create(program.as_fd(), netns.as_fd(), libbpf_sys::BPF_SK_LOOKUP)
            .map_err(link_err("creating the link"))?;
        // A link made before the tags runs before them and would read no tag:
        // the new one, made after them, replaces it.
        if pinned {
            std::fs::remove_file(&pin).map_err(link_err("replacing an untagged link"))?;
        }
        pin_fd(link.as_fd(), &pin).map_err(link_err("pinning the link"))?;
        Ok(())
    })();
    if result.is_err() && !pin.exists() {
        // Tags without their steering program would be read by no one.
        let _ = netns_tag::detach(layout, netns_cookie);
    }
    result
}

/// `<root>/inbound`, which pin roots made by an older meshlane lack: one mkdir
/// that may find it there (no stat after it, as a recursive create makes).
fn ensure_inbound_dir(layout: &PinLayout) -> Result<(), DatapathError> {
    let dir = layout.inbound_dir();
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(DatapathError::PinDir { path: dir, source }),
    }
}

/// Unlinks a pod's tag programs, then unpins its steering link; the kernel
/// detaches a link once no descriptor holds it. Tags go first: a steering
/// program without tags falls back to the address map alone, while tags
/// without a steering program after them would be left for another lookup.
pub fn detach(layout: &PinLayout, netns_cookie: u64) -> Result<(), DatapathError> {
    netns_tag::detach(layout, netns_cookie)?;
    let pin = layout.inbound_link(netns_cookie);
    match std::fs::remove_file(&pin) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DatapathError::PinDir { path: pin, source }),
    }
}

/// Whether the pod's network namespace still exists, as its pinned link tells:
/// the kernel reports the namespace's inode until it destroys the namespace, then
/// 0. False when the pod has no inbound link.
pub fn netns_alive(layout: &PinLayout, netns_cookie: u64) -> bool {
    let Ok(link) = open_pin(&layout.inbound_link(netns_cookie)) else {
        return false;
    };
    LinkInfo::from_fd(link.as_fd())
        .is_ok_and(|info| matches!(info.info, LinkTypeInfo::NetNs(ref netns) if netns.ino != 0))
}

pub fn is_attached(layout: &PinLayout, netns_cookie: u64) -> bool {
    layout.inbound_link(netns_cookie).exists()
}

/// The netns cookies that have a pinned inbound link.
pub fn linked_cookies(layout: &PinLayout) -> Vec<u64> {
    std::fs::read_dir(layout.inbound_dir())
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
