//! `meshlane pods`: the captured pods (by netns) and the attachments behind them.

use anyhow::{Context, Result};
use serde_json::json;

use crate::datapath::abi::ml_pod_flag;
use crate::datapath::{PinLayout, PodMaps};

use super::output::{print_json, Output};

pub use super::output::ReadPinsArgs as Args;

const FLAG_NAMES: [(ml_pod_flag, &str); 6] = [
    (ml_pod_flag::ML_POD_CAPTURE_OUTBOUND, "outbound"),
    (ml_pod_flag::ML_POD_CAPTURE_INBOUND, "inbound"),
    (ml_pod_flag::ML_POD_CAPTURE_DNS, "dns"),
    (ml_pod_flag::ML_POD_SHORT_PATH, "short-path"),
    (ml_pod_flag::ML_POD_INCLUDE_ALL_OUTBOUND, "all-ranges"),
    (ml_pod_flag::ML_POD_INCLUDE_ALL_INBOUND, "all-inbound-ports"),
];

pub fn run(args: &Args) -> Result<i32> {
    let layout = PinLayout::new(&args.pin_root.bpffs_root);
    let maps = PodMaps::open(&layout).context("opening meshlane's maps")?;
    let attachments = maps.attachments()?;
    let pods = maps.pods()?;
    if args.output.output == Output::Json {
        let listed: Vec<serde_json::Value> = pods
            .iter()
            .map(|(cookie, pod)| {
                let count = usize::from(pod.ip_count).min(pod.ips.len());
                let of_pod: Vec<serde_json::Value> = attachments
                    .iter()
                    .filter(|a| a.netns_cookie == *cookie)
                    .map(|a| {
                        json!({
                            "container_id": a.key.container_id,
                            "ifname": a.key.ifname,
                            "namespace": a.pod_namespace,
                            "name": a.pod_name,
                        })
                    })
                    .collect();
                json!({
                    "netns_cookie": cookie,
                    "ips": pod.ips[..count].iter().map(|ip| ip.to_ip().to_string()).collect::<Vec<_>>(),
                    "proxy_uid": pod.proxy_uid,
                    "proxy_gid": pod.proxy_gid,
                    "outbound_port": pod.outbound_port,
                    "inbound_port": pod.inbound_port,
                    "capture": flag_names(pod.flags),
                    "attachments": of_pod,
                })
            })
            .collect();
        print_json(&json!({ "pods": listed }))?;
        return Ok(0);
    }
    if pods.is_empty() {
        println!("no captured pods");
    }
    for (cookie, pod) in pods {
        let flags = flag_names(pod.flags);
        let count = usize::from(pod.ip_count).min(pod.ips.len());
        let ips: Vec<String> = pod.ips[..count]
            .iter()
            .map(|ip| ip.to_ip().to_string())
            .collect();
        println!(
            "netns {cookie}: ips {} proxy uid/gid {}/{} ports out/in {}/{} capture {}",
            ips.join(","),
            pod.proxy_uid,
            pod.proxy_gid,
            pod.outbound_port,
            pod.inbound_port,
            flags.join(",")
        );
        for attachment in attachments.iter().filter(|a| a.netns_cookie == cookie) {
            println!(
                "  attachment {}/{}  pod {}/{}",
                attachment.key.container_id,
                attachment.key.ifname,
                attachment.pod_namespace,
                attachment.pod_name
            );
        }
    }
    Ok(0)
}

fn flag_names(flags: u32) -> Vec<&'static str> {
    FLAG_NAMES
        .iter()
        .filter(|(flag, _)| flags & flag.0 != 0)
        .map(|(_, name)| *name)
        .collect()
}
