//! Setting up one pod that is to be captured, shared by the CNI ADD and the node
//! agent's enrollment of pods that already run: first every input is checked and
//! the records computed ([`prepare`], nothing written), then the attachment, the
//! pod record and the inbound link are written ([`write`]), all or nothing.

use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::cni::CniError;
use crate::datapath::features;
use crate::datapath::pod_index::PodKeys;
use crate::datapath::{Attachment, AttachmentKey, PodEntries, PodMaps};
use crate::log_warn;
use crate::netns::{self, NetnsFacts};
use crate::policy::annotations::TrafficAnnotations;
use crate::policy::kuma_annotations::KumaSettings;
use crate::policy::linkerd_annotations::LinkerdSettings;
use crate::policy::pod_capture::{CaptureInputs, MeshSettings};
use crate::policy::pod_meta::PodMeta;
use crate::policy::short_path::pod_short_path;
use crate::policy::short_path_kernels::{node_short_path, NodeShortPath};
use crate::policy::{Mesh, PodCapture};

use super::config::PluginConfig;
use super::excluded_interfaces::excluded_interfaces;
use super::pod_ips::{self, ClaimedIps};

/// The settings of a pod of a mesh other than Istio.
enum MeshProfile {
    Kuma(KumaSettings),
    Linkerd(LinkerdSettings),
}

/// A pod whose inputs are all valid; nothing of it is written yet.
pub struct Prepared {
    /// The netns cookie its records are keyed by.
    pub cookie: u64,
    /// Its own IPs (this attachment's share).
    pub ips: Vec<IpAddr>,
    capture: PodCapture,
    /// The node-wide short path and why, for the log line.
    node_short_path: NodeShortPath,
    netns: PathBuf,
}

/// Checks the pod's settings and its netns and computes its records.
pub fn prepare(
    config: &PluginConfig,
    pod: &PodMeta,
    netns_path: &Path,
    claimed: ClaimedIps<'_>,
) -> Result<Prepared, CniError> {
    let annotations = pod.annotations.clone().unwrap_or_default();
    let node_short_path = node_short_path(config.short_path, &features::kernel_release());
    let short_path = pod_short_path(node_short_path.on, &annotations)
        .map_err(|err| CniError::config(err.annotation, &err))?;
    // Kuma's and Linkerd's settings all come from their annotations; Istio's are
    // not read for their pods.
    let capture = match config.mesh {
        Mesh::Istio => None,
        Mesh::Kuma => Some(MeshProfile::Kuma(
            KumaSettings::parse(&annotations)
                .map_err(|err| CniError::config(err.annotation, &err))?,
        )),
        Mesh::Linkerd => Some(MeshProfile::Linkerd(
            LinkerdSettings::parse(&annotations, pod.labels.as_ref())
                .map_err(|err| CniError::config(err.annotation, &err))?,
        )),
    };
    let traffic = match capture {
        Some(_) => TrafficAnnotations::parse(&Default::default()),
        None => TrafficAnnotations::parse(&annotations),
    }
    .map_err(|err| CniError::config(err.annotation, &err))?;

    let facts = netns::inspect(netns_path, !traffic.exclude_interfaces.is_empty())?;
    refuse_user_namespaces(&facts, netns_path)?;
    let addresses: Vec<IpAddr> = facts
        .interface_addresses
        .iter()
        .map(|(_, ip)| *ip)
        .collect();
    let ips = pod_ips::checked_pod_ips(claimed, &addresses, netns_path)?;
    let capture = match capture {
        Some(MeshProfile::Kuma(kuma)) => kuma.capture(&ips, short_path),
        Some(MeshProfile::Linkerd(linkerd)) => linkerd.capture(&ips, short_path),
        None => {
            let interfaces = excluded_interfaces(&traffic.exclude_interfaces, &facts);
            PodCapture::for_istio_pod(&CaptureInputs {
                traffic: &traffic,
                spec: pod.spec.as_ref(),
                mesh: MeshSettings {
                    proxy_uid: config.proxy_uid,
                    proxy_gid: config.proxy_gid,
                    dns_capture: config.dns_capture,
                },
                ips: &ips,
                interfaces: &interfaces,
                short_path,
            })
        }
    };
    // Validate the records before anything is loaded or written.
    PodEntries::from_capture(&capture)?;
    Ok(Prepared {
        cookie: facts.cookie,
        ips,
        capture,
        node_short_path,
        netns: netns_path.to_owned(),
    })
}

/// Who the attachment belongs to, as the runtime will name it at DEL.
pub struct Owner {
    pub key: AttachmentKey,
    pub pod_namespace: String,
    pub pod_name: String,
}

/// Writes a prepared pod's records; the caller holds the pin root's lock (other
/// ADDs and DELs run in parallel). Returns a description for the log line.
pub fn write(maps: &PodMaps, prepared: Prepared, owner: Owner) -> Result<String, CniError> {
    let Prepared {
        cookie,
        ips,
        mut capture,
        node_short_path,
        netns: netns_path,
    } = prepared;
    if capture.capture_inbound && capture.ips.iter().any(IpAddr::is_ipv6) {
        add_passthrough_source_v6(&netns_path)?;
    }
    let attachment = Attachment {
        key: owner.key,
        netns_cookie: cookie,
        ips,
        pod_namespace: owner.pod_namespace,
        pod_name: owner.pod_name,
    };
    let replaced = maps.attachment(&attachment.key)?;
    let old = maps.recorded_keys(cookie, replaced.as_ref())?;
    capture.ips = maps.netns_ips_with(&attachment, old.as_ref())?;
    let entries = PodEntries::from_capture(&capture)?;
    // The index lists every key before it is written (old and new ones while
    // the new replace the old), so that a DEL after a crash finds them all. It
    // comes after the attachment, which is what a DEL starts from: a DEL that
    // finds the attachment but no index entry searches the node-wide maps.
    let listed = PodKeys::listing(&attachment.key, &entries);
    let during = old
        .as_ref()
        .map_or(listed.clone(), |old| old.union(&listed));
    during.to_abi()?;
    maps.put_attachment(&attachment)?;
    if let Err(err) = maps.put_keys(cookie, &during) {
        let _ = restore_attachment(maps, &attachment, replaced);
        return Err(err.into());
    }
    if let Err(err) = maps.write_pod(cookie, &entries, old.as_ref()) {
        // Leave nothing half-written: this attachment did not happen.
        let _ = maps.restore_keys(cookie, old.as_ref());
        let _ = restore_attachment(maps, &attachment, replaced);
        return Err(err.into());
    }
    if let Some(old) = &old {
        // Only the attachments stay listed from before; the entries are new.
        let mut after = listed;
        after.attachments.extend(old.attachments.iter().cloned());
        if after != during {
            maps.put_keys(cookie, &after)?;
        }
    }
    if capture.capture_inbound {
        if let Err(err) = maps.attach_inbound(cookie, &netns_path) {
            // Fail closed: a pod whose inbound cannot be captured does not start.
            let _ = restore_attachment(maps, &attachment, replaced.clone());
            let _ = maps.rebuild_from_attachments(cookie, None);
            return Err(err.into());
        }
    }
    if let Some(old) = replaced.filter(|old| old.netns_cookie != cookie) {
        log_warn!(
            "attachment moved from netns cookie {} to {}",
            old.netns_cookie,
            cookie
        );
        maps.rebuild_from_attachments(old.netns_cookie, None)?;
    }
    Ok(describe(&capture, &node_short_path))
}

/// A pod in a user namespace (`hostUsers: false`): the kernel reports its proxy's
/// UID mapped, not 1337. Refuse rather than capture the proxy's own traffic.
fn refuse_user_namespaces(facts: &NetnsFacts, netns: &Path) -> Result<(), CniError> {
    if facts.in_user_namespace {
        return Err(CniError::pod_policy(format!(
            "network namespace {} belongs to a user namespace (a pod with hostUsers: false): \
             meshlane cannot identify the proxy's UID there yet, and will not risk \
             capturing the proxy's own traffic",
            netns.display()
        )));
    }
    Ok(())
}

fn describe(capture: &PodCapture, node: &NodeShortPath) -> String {
    let ips: Vec<String> = capture.ips.iter().map(IpAddr::to_string).collect();
    format!(
        "pod IPs {}, proxy {}:{}, inbound {}, dns {}, short path {:?} (node-wide {}: {})",
        ips.join(","),
        capture.proxy_uid,
        capture.proxy_gid,
        capture.capture_inbound,
        capture.capture_dns,
        capture.short_path,
        if node.on { "on" } else { "off" },
        node.reason
    )
}

/// Envoy's inbound passthrough binds `::6` to call the app; Istio's init puts that
/// address on the pod's loopback, so meshlane, replacing it, does too.
fn add_passthrough_source_v6(netns_path: &Path) -> Result<(), CniError> {
    let _inside = netns::NetnsGuard::enter(netns_path)?;
    crate::netlink::add_address("lo", IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 6)), 128)
        .map_err(|err| CniError::netns(format!("{err} in {}", netns_path.display())))
}

fn restore_attachment(
    maps: &PodMaps,
    attachment: &Attachment,
    replaced: Option<Attachment>,
) -> Result<(), CniError> {
    match replaced {
        Some(old) => maps.put_attachment(&old)?,
        None => maps.remove_attachment(&attachment.key)?,
    }
    Ok(())
}
