//! A real node on this machine, for people (`sudo scripts/node.sh`): Debian's
//! containerd and runc driven through CRI as kubelet drives them, meshlane
//! installed from its DaemonSet, an Istio-injected pod captured, then all of
//! it removed. The same harness as `tests/containerd_node.rs`.
//!
//!   node                 the walk-through
//!   node bench [PODS]    RunPodSandbox time with and without meshlane
//!                        (default 50 pods per case), printed as a table
//!   node sweep           removes what an interrupted run left (its PID is
//!                        dead): scripts/node.sh runs it on every exit

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::cri_node::{pods, CriNode, RunningPod};
use serde_json::Value;

const PORT: u16 = 8080;

fn step(number: u32, text: &str) {
    println!("\n==> {number}. {text}");
}

fn show(text: &str) {
    for line in text.lines() {
        println!("      {line}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => walk_through(),
        Some("bench") => {
            let pods = args
                .get(1)
                .map(|n| n.parse().expect("PODS is a number"))
                .unwrap_or(50);
            bench(pods);
        }
        Some("sweep") => {
            let report = common::sweep::sweep_leftovers();
            for item in report.removed {
                println!("[node] removed what an interrupted run left: {item}");
            }
            for problem in &report.problems {
                eprintln!("[node] cleanup: {problem}");
            }
            if !report.problems.is_empty() {
                std::process::exit(1);
            }
        }
        Some(other) => {
            eprintln!("usage: node [bench [PODS]] (unknown argument {other:?})");
            std::process::exit(2);
        }
    }
}

fn walk_through() {
    step(
        1,
        "containerd + runc, fenced off: own config, root, socket; a private mount and \
         network namespace; the test's own cgroups and bpffs",
    );
    let node = CriNode::start("node");
    let version = node.cri.version().expect("CRI Version");
    show(&format!(
        "{} {} (CRI {}), node {}, socket {}",
        version.runtime_name,
        version.runtime_version,
        version.runtime_api_version,
        node.name,
        node.containerd.socket.display()
    ));

    step(2, "the primary CNI (a network add-on would write this)");
    show(&format!(
        "/etc/cni/net.d/{}: {}",
        common::cri_node::PRIMARY_CONFLIST,
        plugin_types(&node.read_primary_conflist())
    ));

    step(
        3,
        "meshlane's DaemonSet, rendered from manifests/ with kustomize, run as kubelet runs it",
    );
    let agent = node.run_daemonset();
    show(&format!(
        "agent pod {} (image {}) ready",
        agent.name, agent.object["spec"]["containers"][0]["image"]
    ));
    show(&node.container_log(&agent, "install"));
    show(&format!(
        "/etc/cni/net.d/{} now: {}",
        common::cri_node::PRIMARY_CONFLIST,
        plugin_types(&node.read_primary_conflist())
    ));

    step(
        4,
        "pods through CRI: 'server' (no sidecar) and 'web' (as Istio's injector leaves it \
         in CNI mode: istio-validation, then Envoy as 1337 and the app as 1000)",
    );
    let server = node.run_pod(&pods::plain(&node, "server", PORT));
    let web = node.run_pod(&pods::meshed(&node, "web", PORT));
    node.wait_for_envoy(&web);
    show(&format!("server {}   web {}", server.ip, web.ip));
    show(&format!(
        "istio-validation passed: {}",
        node.container_log(&web, "istio-validation").trim()
    ));

    step(
        5,
        "web's app calls server:8080 — meshlane sends it to web's Envoy",
    );
    let reply = call(&node, &web, &server);
    show(&format!("reply {}", reply["reply"]));
    let entry = node.wait_for_access(&web, |e| e.listener == "virtualOutbound");
    show(&format!(
        "Envoy: {} app={} original_dst={} upstream={}",
        entry.listener, entry.downstream_remote, entry.downstream_local, entry.upstream_host
    ));

    step(
        6,
        "server calls web:8080 — it lands on web's Envoy (15006) first",
    );
    let reply = call(&node, &server, &web);
    show(&format!(
        "web's app saw the call from {} (Envoy's inbound passthrough)",
        reply["reply"]["peer"]
    ));
    let entry = node.wait_for_access(&web, |e| e.listener == "virtualInbound");
    show(&format!(
        "Envoy: {} from={} original_dst={}",
        entry.listener, entry.downstream_remote, entry.downstream_local
    ));

    step(7, "meshlane pods (kubectl exec into the agent)");
    let (_, listed, _) = node.exec(&agent, "install", &["/meshlane", "pods"]);
    show(&listed);

    step(
        8,
        "web goes (StopPodSandbox, RemovePodSandbox): containerd runs meshlane's DEL",
    );
    node.remove_pod(&web);
    let log = std::fs::read_to_string(node.path("/var/log/meshlane/cni.log")).unwrap_or_default();
    show(
        &log.lines()
            .filter(|line| line.contains(" command=DEL "))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let (_, listed, _) = node.exec(&agent, "install", &["/meshlane", "pods"]);
    assert!(!listed.contains("shop/web"), "{listed}");
    show("meshlane pods: web is gone");

    step(
        9,
        "cleanup: sandboxes, containerd, shims and pause processes, mounts, netns, cgroups",
    );
    node.finish();
    show("nothing left; nothing was attached to this machine's root cgroup");
    println!("\nOK: a real containerd node ran meshlane's DaemonSet and captured an Istio pod");
}

fn call(node: &CriNode, from: &RunningPod, to: &RunningPod) -> Value {
    let reply = node.node_app(from, "app", &["call", "--to", &format!("{}:{PORT}", to.ip)]);
    assert_eq!(reply["ok"], true, "{} -> {}: {reply}", from.name, to.name);
    reply
}

fn plugin_types(conflist: &Value) -> String {
    conflist["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|plugin| plugin["type"].as_str().unwrap_or("?").to_owned())
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// RunPodSandbox as kubelet times it, on two nodes side by side: one whose
/// chain is bridge alone, one with meshlane's DaemonSet, pods alternating
/// between them (an injected pod on the meshlane node, which meshlane
/// captures, and a plain one, which it only classifies).
fn bench(pods_per_case: usize) {
    let plain_node = CriNode::start("bench-bridge");
    let mesh_node = CriNode::start("bench-meshlane");
    let _agent = mesh_node.run_daemonset();
    let cases: [(&str, &CriNode, bool); 3] = [
        ("bridge only", &plain_node, false),
        ("bridge + meshlane, plain pod", &mesh_node, false),
        ("bridge + meshlane, injected pod", &mesh_node, true),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    for round in 0..pods_per_case {
        for (index, (_, node, injected)) in cases.iter().enumerate() {
            let name = format!("p{index}-{round}");
            let mut pod = pods::plain(node, &name, PORT);
            if *injected {
                pod["metadata"]["annotations"]["sidecar.istio.io/status"] =
                    Value::from(common::pod::INJECTED_STATUS);
            }
            let sandbox = common::cri_node::kubelet::plan(&pod, &node.kubelet_context()).sandbox;
            let start = Instant::now();
            let id = node.cri.run_pod_sandbox(sandbox).expect("RunPodSandbox");
            times[index].push(start.elapsed());
            node.track_sandbox(id);
        }
    }
    println!(
        "\nRunPodSandbox over {pods_per_case} pods per case (alternating), containerd 1.6, runc"
    );
    println!("| case | p50 | p90 | p99 | mean |");
    println!("|---|---|---|---|---|");
    let base = median(&times[0]);
    for ((name, _, _), samples) in cases.iter().zip(&times) {
        println!(
            "| {name} | {:.1} ms ({:.2}×) | {:.1} ms | {:.1} ms | {:.1} ms |",
            ms(median(samples)),
            ms(median(samples)) / ms(base),
            ms(percentile(samples, 0.90)),
            ms(percentile(samples, 0.99)),
            ms(samples.iter().sum::<Duration>() / samples.len() as u32),
        );
    }
    plain_node.finish();
    mesh_node.finish();
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn median(samples: &[Duration]) -> Duration {
    percentile(samples, 0.5)
}

/// Nearest-rank percentile.
fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
