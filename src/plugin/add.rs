//! CNI ADD: classify the pod, validate everything, then load the node programs if
//! needed and write the pod's records. Nothing is written before every input is
//! known to be good, and a pod that must be captured but cannot be set up fails.

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;

use serde_json::Value;

use crate::cni::{AttachmentRequest, CniError, PrevResult};
use crate::datapath::lock::RootLock;
use crate::datapath::{ensure_attached, AttachOutcome, Attachment, PodEntries, PodMaps};
use crate::netns::{self, NetnsFacts};
use crate::policy::annotations::TrafficAnnotations;
use crate::policy::pod_capture::{CaptureInputs, MeshSettings};
use crate::policy::selection::Selection;
use crate::policy::short_path::pod_short_path;
use crate::policy::PodCapture;
use crate::{log_info, log_warn};

use super::context::{attachment_key, pod_name, Context};
use super::excluded_interfaces::excluded_interfaces;
use super::pod_info::classify;
use super::pod_ips;

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
    let pod = classified.pod;
    let annotations = pod.annotations.clone().unwrap_or_default();
    let traffic = TrafficAnnotations::parse(&annotations)
        .map_err(|err| CniError::config(err.annotation, &err))?;
    let short_path = pod_short_path(context.config.short_path, &annotations)
        .map_err(|err| CniError::config(err.annotation, &err))?;

    let netns_path = request
        .netns
        .as_deref()
        .ok_or_else(|| CniError::invalid_env("CNI_NETNS", "required for ADD"))?;
    let facts = netns::inspect(netns_path, !traffic.exclude_interfaces.is_empty())?;
    refuse_user_namespaces(&facts, netns_path)?;
    let addresses: Vec<IpAddr> = facts
        .interface_addresses
        .iter()
        .map(|(_, ip)| *ip)
        .collect();
    let ips = pod_ips::checked_pod_ips(&prev, &addresses, netns_path)?;
    let interfaces = excluded_interfaces(&traffic.exclude_interfaces, &facts);
    let mut capture = PodCapture::for_istio_pod(&CaptureInputs {
        traffic: &traffic,
        spec: pod.spec.as_ref(),
        mesh: MeshSettings {
            proxy_uid: context.config.proxy_uid,
            proxy_gid: context.config.proxy_gid,
            dns_capture: context.config.dns_capture,
        },
        ips: &ips,
        interfaces: &interfaces,
        short_path,
    });
    // Validate the records before anything is loaded or written.
    PodEntries::from_capture(&capture)?;

    if capture.capture_inbound && capture.ips.iter().any(IpAddr::is_ipv6) {
        add_passthrough_source_v6(netns_path)?;
    }

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
    let key = attachment_key(request);
    let (pod_namespace, pod_name) = pod_name(request);
    let attachment = Attachment {
        key: key.clone(),
        netns_cookie: facts.cookie,
        ips: ips.clone(),
        pod_namespace,
        pod_name,
    };
    let replaced = maps.attachment(&key)?;
    capture.ips = pod_ips_with_siblings(&maps, &attachment)?;
    let entries = PodEntries::from_capture(&capture)?;
    maps.put_attachment(&attachment)?;
    if let Err(err) = maps.write_pod(facts.cookie, &entries) {
        // Leave nothing half-written: this attachment did not happen.
        let _ = restore_attachment(&maps, &attachment, replaced);
        return Err(err.into());
    }
    if capture.capture_inbound {
        if let Err(err) = maps.attach_inbound(facts.cookie, netns_path) {
            // Fail closed: a pod whose inbound cannot be captured does not start.
            let _ = restore_attachment(&maps, &attachment, replaced.clone());
            let _ = super::del::forget_netns_if_unused(&maps, facts.cookie);
            return Err(err.into());
        }
    }
    if let Some(old) = replaced.filter(|old| old.netns_cookie != facts.cookie) {
        log_warn!(
            "attachment moved from netns cookie {} to {}",
            old.netns_cookie,
            facts.cookie
        );
        super::del::forget_netns_if_unused(&maps, old.netns_cookie)?;
    }
    log_info!(
        "captured: netns cookie {}, {}",
        facts.cookie,
        describe(&capture)
    );
    Ok(result)
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

fn describe(capture: &PodCapture) -> String {
    let ips: Vec<String> = capture.ips.iter().map(IpAddr::to_string).collect();
    format!(
        "pod IPs {}, proxy {}:{}, inbound {}, dns {}, short path {:?}",
        ips.join(","),
        capture.proxy_uid,
        capture.proxy_gid,
        capture.capture_inbound,
        capture.capture_dns,
        capture.short_path
    )
}

/// A netns with several attachments (Multus) is one pod: its record lists the
/// IPs of all of them.
fn pod_ips_with_siblings(maps: &PodMaps, attachment: &Attachment) -> Result<Vec<IpAddr>, CniError> {
    let mut ips = attachment.ips.clone();
    for sibling in maps.attachments()? {
        if sibling.netns_cookie == attachment.netns_cookie && sibling.key != attachment.key {
            for ip in sibling.ips {
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
    }
    Ok(ips)
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
