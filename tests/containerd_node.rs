//! meshlane on a real node: Debian's containerd 1.6 (CRI plugin built in) and
//! runc, driven through CRI as kubelet drives them (tests/common/cri_node/).
//! meshlane arrives as users install it — the DaemonSet rendered from
//! `manifests/` with kustomize, run from the install image that
//! `scripts/image.sh` builds — and the pods are Istio-injected pods with a real
//! Envoy sidecar. The one stand-in is the Kubernetes API (a local HTTPS
//! server in the node's netns).
//!
//! Needs root; fails loudly (never skips) when it cannot run.

mod common;

use meshlane::datapath::PinLayout;
use meshlane::log::line::{field, parse as parse_record, Fields};
use serde_json::Value;

use common::conflist::plugin_types;
use common::cri_node::{daemonset, images, pods, CriNode, RunningPod};
use common::variant;

const PORT: u16 = 8080;

fn target(pod: &RunningPod) -> String {
    assert!(!pod.ip.is_empty(), "{} has no IP", pod.name);
    format!("{}:{PORT}", pod.ip)
}

/// The DaemonSet's pod with the short path switched on, as an operator does
/// (`MESHLANE_SHORT_PATH`; off by default on every kernel, docs/kernels.md).
fn with_short_path(mut pod: Value) -> Value {
    let container = &mut pod["spec"]["containers"][0];
    if !container["env"].is_array() {
        container["env"] = serde_json::json!([]);
    }
    container["env"]
        .as_array_mut()
        .expect("env is a list")
        .push(serde_json::json!({ "name": "MESHLANE_SHORT_PATH", "value": "true" }));
    pod
}

/// `node-app call` from `from`'s app container to `to`; the reply must come.
fn call(node: &CriNode, from: &RunningPod, to: &RunningPod) -> Value {
    let reply = node.node_app(from, "app", &["call", "--to", &target(to)]);
    assert_eq!(reply["ok"], true, "{} -> {}: {reply}", from.name, to.name);
    assert_eq!(reply["reply"]["name"], to.name.as_str(), "{reply}");
    reply
}

/// `meshlane pods`, run in the agent's container as `kubectl exec` would.
fn captured_pods(node: &CriNode, agent: &RunningPod) -> String {
    let (code, stdout, stderr) = node.exec(agent, "install", &["/meshlane", "pods"]);
    assert_eq!(code, 0, "meshlane pods: {stdout}{stderr}");
    stdout
}

#[test]
fn the_daemonset_installs_meshlane_and_injected_pods_are_captured() {
    let node = CriNode::start("capture");
    let agent = node.run_daemonset();

    // The agent put its binary and its entry in place.
    let conflist = node.read_primary_conflist();
    let types = plugin_types(&conflist);
    assert_eq!(types, ["bridge", "meshlane"], "{conflist}");
    assert!(node.path("/opt/cni/bin/meshlane").is_file());

    let server = node.run_pod(&pods::plain(&node, "server", PORT));
    // istio-validation ran to success as an init container before the proxy
    // started: run_pod fails otherwise.
    let web = node.run_pod(&pods::meshed(&node, "web", PORT));
    node.wait_for_envoy(&web);

    // Outbound: the app's connect reaches the server through its Envoy, which
    // got the original destination from SO_ORIGINAL_DST.
    let reply = call(&node, &web, &server);
    assert_eq!(
        reply["peer"],
        target(&server).as_str(),
        "getpeername: {reply}"
    );
    let entry = node.wait_for_access(&web, |e| e.listener == "virtualOutbound");
    assert_eq!(entry.downstream_local, target(&server), "{entry:?}");
    assert_eq!(entry.upstream_host, target(&server), "{entry:?}");

    // Inbound: a connection into the meshed pod lands on its Envoy's 15006.
    let reply = call(&node, &server, &web);
    let seen_from = reply["reply"]["peer"].as_str().unwrap();
    assert!(
        seen_from.starts_with("127.0.0.6:"),
        "the app must be reached through Envoy's inbound passthrough: {reply}"
    );
    let entry = node.wait_for_access(&web, |e| e.listener == "virtualInbound");
    assert_eq!(entry.downstream_local, target(&web), "{entry:?}");

    // A pod without injection is left alone: its connection arrives directly.
    let plain = node.run_pod(&pods::plain(&node, "plain", PORT));
    let reply = call(&node, &plain, &server);
    let server_saw = reply["reply"]["peer"].as_str().unwrap();
    assert!(server_saw.starts_with(&format!("{}:", plain.ip)), "{reply}");
    let listed = captured_pods(&node, &agent);
    assert!(listed.contains("shop/web"), "{listed}");
    assert!(
        !listed.contains("shop/plain") && !listed.contains("shop/server"),
        "{listed}"
    );

    // Every pod was classified from the annotations containerd passed
    // (`null` for the plain pods): the plugin never asked the API.
    assert_eq!(node.cluster.pod_requests(), Vec::<String>::new());

    // kubelet removes the pod: StopPodSandbox, RemovePodSandbox. containerd
    // runs DEL at each (the second time with the netns gone); both succeed and
    // the pod is forgotten.
    let web_id = web.sandbox_id.clone();
    node.remove_pod(&web);
    let listed = captured_pods(&node, &agent);
    assert!(!listed.contains("shop/web"), "{listed}");
    // The plugin's records carry the command and the container id as fields.
    let dels: Vec<Fields> = plugin_log(&node)
        .lines()
        .filter_map(parse_record)
        .filter(|f| field(f, "command") == Some("DEL") && field(f, "container_id") == Some(&web_id))
        .collect();
    assert!(!dels.is_empty(), "no DEL logged:\n{}", plugin_log(&node));
    assert!(
        dels.iter().all(|f| field(f, "level") == Some("info")),
        "a DEL failed: {dels:#?}"
    );
    assert!(
        dels.iter()
            .any(|f| field(f, "msg").is_some_and(|msg| msg.contains("released netns cookie"))),
        "{dels:#?}"
    );
    node.finish();
}

/// The plugin's log on the node.
fn plugin_log(node: &CriNode) -> String {
    std::fs::read_to_string(node.path("/var/log/meshlane/cni.log")).unwrap_or_default()
}

#[test]
fn a_pod_started_before_the_agent_is_enrolled_from_the_runtimes_layout() {
    let node = CriNode::start("enroll");
    let server = node.run_pod(&pods::plain(&node, "server", PORT));
    // Without meshlane in the chain, Istio's start-up check fails: the pod would
    // never start. (This is also what proves the check can fail.)
    let refused = node
        .try_run_pod(&pods::meshed(&node, "early", PORT))
        .expect_err("istio-validation must fail without capture");
    assert!(refused.contains("istio-validation"), "{refused}");
    // A pod whose sidecar started without the check (as pods do that were
    // running before a CNI plugin captured them) runs uncaptured:
    let mut object = pods::meshed(&node, "web", PORT);
    object["spec"]
        .as_object_mut()
        .unwrap()
        .remove("initContainers");
    let web = node.run_pod(&object);
    node.wait_for_envoy(&web);
    let reply = call(&node, &web, &server);
    assert!(
        reply["reply"]["peer"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}:", web.ip)),
        "{reply}"
    );
    assert!(
        node.access_log(&web).is_empty(),
        "{:?}",
        node.access_log(&web)
    );

    // The API lists the node's pods as they run; the agent enrolls web at
    // start, finding its sandbox and netns through containerd's real cgroup
    // and netns layout.
    node.cluster
        .set_pods(vec![node.api_object(&server), node.api_object(&web)]);
    let agent = node.run_daemonset();
    // Ready means new pods are captured; the first enrollment round runs right
    // after (it reads each running pod's netns, and looks for Istio's iptables).
    node.wait_for_log(
        &agent,
        "install",
        "enrollment round done",
        std::time::Duration::from_secs(60),
    );
    let log = node.container_log(&agent, "install");
    assert!(log.contains("enrolled=1"), "{log}");
    let listed = captured_pods(&node, &agent);
    assert!(listed.contains("shop/web"), "{listed}");
    assert!(!listed.contains("shop/server"), "{listed}");

    let reply = call(&node, &web, &server);
    assert_eq!(reply["peer"], target(&server).as_str(), "{reply}");
    let entry = node.wait_for_access(&web, |e| e.listener == "virtualOutbound");
    assert_eq!(entry.downstream_local, target(&server), "{entry:?}");
    let reply = call(&node, &server, &web);
    assert!(
        reply["reply"]["peer"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.6:"),
        "{reply}"
    );
    assert!(!node.cluster.list_requests().is_empty());

    // The enrolled attachment carries the sandbox ID containerd's DEL names.
    node.remove_pod(&web);
    let listed = captured_pods(&node, &agent);
    assert!(!listed.contains("shop/web"), "{listed}");
    node.finish();
}

#[test]
fn the_agent_puts_meshlane_back_when_the_primary_cni_rewrites_its_config() {
    let node = CriNode::start("rewrite");
    let agent = node.run_daemonset();
    // The add-on rewrites its file (an upgrade of it, a restart): meshlane's
    // entry is gone for a moment.
    node.write_primary_conflist(&node.primary_conflist());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let conflist = node.read_primary_conflist();
        let plugins = conflist["plugins"].as_array().unwrap();
        if plugins.last().unwrap()["type"] == "meshlane" {
            assert_eq!(plugins.len(), 2, "{conflist}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "meshlane's entry was not put back: {conflist}\n{}",
            node.container_log(&agent, "install")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let server = node.run_pod(&pods::plain(&node, "server", PORT));
    let web = node.run_pod(&pods::meshed(&node, "web", PORT));
    node.wait_for_envoy(&web);
    call(&node, &web, &server);
    node.wait_for_access(&web, |e| e.listener == "virtualOutbound");
    node.finish();
}

#[test]
fn a_rolling_update_of_the_agent_keeps_a_live_connection_and_the_capture() {
    let node = CriNode::start("upgrade");
    let agent = node.run_pod(&with_short_path(node.daemonset_pod(None)));
    node.wait_until_ready(&agent);
    let client = node.run_pod(&pods::meshed(&node, "client", PORT));
    let echo = node.run_pod(&pods::meshed(&node, "echo", PORT));
    node.wait_for_envoy(&client);
    node.wait_for_envoy(&echo);

    // The programs on the node become another build's (the short path's
    // object with another `.rodata` setting), as after an older meshlane.
    let layout = PinLayout::new(node.path("/sys/fs/bpf/meshlane"));
    let old_program = variant::attach_variant_sk_msg(&layout);

    // A long-lived connection through both sidecars (and the short path
    // between them) while the DaemonSet rolls: the old agent pod goes, a pod
    // of the new image comes and replaces the program that differs.
    let total = 48u64 << 20;
    let new_image = images::install_image_tagged("0.1.0-next");
    node.containerd.import(&new_image.archive);
    let (result, new_agent) = std::thread::scope(|scope| {
        let stream = scope.spawn(|| {
            node.node_app(
                &client,
                "app",
                &[
                    "stream",
                    "--to",
                    &target(&echo),
                    "--bytes",
                    &total.to_string(),
                    "--rate",
                    &(4u64 << 20).to_string(),
                    "--max-gap",
                    "2",
                    "--timeout",
                    "50",
                ],
            )
        });
        std::thread::sleep(std::time::Duration::from_secs(3));
        node.remove_pod(&agent);
        let pod = with_short_path(node.daemonset_pod(Some(&new_image.reference)));
        let new_agent = node.run_pod(&pod);
        node.wait_until_ready(&new_agent);
        (stream.join().expect("the stream thread"), new_agent)
    });
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["verified"], total, "{result}");

    let log = node.container_log(&new_agent, "install");
    assert!(log.contains("replaced=1"), "{log}");
    let new_program = variant::sk_msg_program_id(&layout);
    assert_ne!(new_program, old_program, "sk_msg was not replaced");
    let (_, metrics) = node
        .http_get(daemonset::probe_port(&new_agent.object), "/metrics")
        .expect("metrics");
    let short_path_bytes = metrics
        .lines()
        .find_map(|line| line.strip_prefix("meshlane_short_path_bytes_total "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        short_path_bytes >= total as f64,
        "the stream did not take the short path between the sidecars: {short_path_bytes}"
    );

    // New connections are captured as before.
    let reply = call(&node, &client, &echo);
    assert_eq!(reply["peer"], target(&echo).as_str(), "{reply}");
    node.finish();
}

#[test]
fn the_uninstall_job_refuses_while_captured_pods_run_then_removes_everything() {
    let node = CriNode::start("uninstall");
    let original = node.read_primary_conflist();
    let agent = node.run_daemonset();
    let web = node.run_pod(&pods::meshed(&node, "web", PORT));
    node.wait_for_envoy(&web);
    // The README's order: the DaemonSet goes first, then the Job per node.
    node.remove_pod(&agent);

    let job = daemonset::uninstall_job(&node.name);
    let template = &job["spec"]["template"];
    assert_eq!(
        template["spec"]["containers"][0]["image"],
        images::install_reference().as_str(),
        "manifests/uninstall/job.yaml names another image than the one built"
    );
    let run_job = |attempt: u32| {
        let pod = daemonset::pod_from_template(
            template,
            &format!("meshlane-uninstall-{attempt}"),
            "meshlane-system",
            &node.name,
        );
        let pod = node.run_pod(&pod);
        let exit = node
            .wait_for_exit(
                pod.container("uninstall"),
                std::time::Duration::from_secs(60),
            )
            .unwrap();
        let log = node.container_log(&pod, "uninstall");
        node.remove_pod(&pod);
        (exit, log)
    };

    let (exit, log) = run_job(1);
    assert_eq!(exit, 3, "{log}");
    assert!(log.contains("shop/web"), "{log}");
    assert_eq!(
        plugin_types(&node.read_primary_conflist()),
        ["bridge", "meshlane"]
    );
    call(
        &node,
        &web,
        &node.run_pod(&pods::plain(&node, "server", PORT)),
    );
    node.wait_for_access(&web, |e| e.listener == "virtualOutbound");

    node.remove_pod(&web);
    let (exit, log) = run_job(2);
    assert_eq!(exit, 0, "{log}");
    assert_eq!(node.read_primary_conflist(), original, "{log}");
    for gone in [
        "/opt/cni/bin/meshlane",
        "/sys/fs/bpf/meshlane",
        "/etc/cni/net.d/meshlane-kubeconfig",
    ] {
        assert!(!node.path(gone).exists(), "{gone} is left:\n{log}");
    }
    // Nothing captures any more: Istio's check fails, as it must.
    let refused = node
        .try_run_pod(&pods::meshed(&node, "late", PORT))
        .expect_err("no capture after uninstall");
    assert!(refused.contains("istio-validation"), "{refused}");
    node.finish();
}
