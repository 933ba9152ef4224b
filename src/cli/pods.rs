//! `meshlane pods`: the captured pods (by netns) and the attachments behind them.

use anyhow::{Context, Result};

use crate::datapath::abi::ml_pod_flag;
use crate::datapath::PodMaps;

use super::args::Args;

const FLAG_NAMES: [(ml_pod_flag, &str); 6] = [
    (ml_pod_flag::ML_POD_CAPTURE_OUTBOUND, "outbound"),
    (ml_pod_flag::ML_POD_CAPTURE_INBOUND, "inbound"),
    (ml_pod_flag::ML_POD_CAPTURE_DNS, "dns"),
    (ml_pod_flag::ML_POD_SHORT_PATH, "short-path"),
    (ml_pod_flag::ML_POD_INCLUDE_ALL_OUTBOUND, "all-ranges"),
    (ml_pod_flag::ML_POD_INCLUDE_ALL_INBOUND, "all-inbound-ports"),
];

pub fn run(args: &mut Args) -> Result<i32> {
    let layout = args.layout()?;
    args.finish()?;
    let maps = PodMaps::open(&layout).context("opening meshlane's maps")?;
    let attachments = maps.attachments()?;
    let pods = maps.pods()?;
    if pods.is_empty() {
        println!("no captured pods");
    }
    for (cookie, pod) in pods {
        let flags: Vec<&str> = FLAG_NAMES
            .iter()
            .filter(|(flag, _)| pod.flags & flag.0 != 0)
            .map(|(_, name)| *name)
            .collect();
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
