//! Istio's pod selection and per-pod settings, through the real chain: which pods
//! meshlane captures (from the annotations containerd/CRI-O pass in runtimeConfig),
//! which it leaves alone, which it refuses (fail closed), and how annotations land
//! in the pod's BPF records.
//!
//! Needs root; fails loudly (never skips) when it cannot run.

mod common;

use std::process::Command;

use meshlane::datapath::abi::ml_pod_flag;
use meshlane::policy::kuma_annotations::NO_PROXY_GID;
use serde_json::json;

use common::api_server::{status_json, Reply};
use common::pod::INJECTED_STATUS;
use common::{Pod, PodOptions, TestNode};

fn captured(node: &TestNode, pod: &Pod) -> bool {
    node.pin_root().exists() && node.maps().pod(pod.netns_cookie()).unwrap().is_some()
}

#[test]
fn pods_istio_does_not_capture_are_left_alone() {
    let node = TestNode::new("istio-skip");
    let skipped = [
        ("plain", PodOptions::new()),
        (
            "gateway",
            PodOptions::new().annotation(
                "sidecar.istio.io/status",
                r#"{"containers":["istio-proxy"],"templates":["gateway"]}"#,
            ),
        ),
        (
            "iptables",
            PodOptions::new().annotation(
                "sidecar.istio.io/status",
                r#"{"initContainers":["istio-init"],"containers":["istio-proxy"]}"#,
            ),
        ),
        (
            "optout",
            PodOptions::new()
                .injected()
                .annotation("sidecar.istio.io/inject", "false"),
        ),
        (
            "none",
            PodOptions::new()
                .injected()
                .annotation("sidecar.istio.io/interceptionMode", "NONE"),
        ),
        (
            "ambient",
            PodOptions::new()
                .injected()
                .annotation("ambient.istio.io/redirection", "enabled"),
        ),
        (
            "system",
            PodOptions::new().injected().namespace("kube-system"),
        ),
    ];
    for (name, options) in skipped {
        let pod = node.add_pod(name, options);
        assert!(!captured(&node, &pod), "{name} was captured");
    }
    let sidecar = node.add_pod("sidecar", PodOptions::new().injected());
    assert!(
        captured(&node, &sidecar),
        "an injected sidecar pod must be captured"
    );
}

#[test]
fn pods_that_must_not_run_uncaptured_fail_their_add() {
    let node = TestNode::new("istio-refuse");
    // (pod, annotation, value, CNI error code, what the message must name)
    let cases = [
        (
            "tproxy",
            "sidecar.istio.io/interceptionMode",
            "TPROXY",
            104,
            &["TPROXY"][..],
        ),
        (
            "badrange",
            "traffic.sidecar.istio.io/excludeOutboundIPRanges",
            "10.0.0.0/33",
            7,
            &[
                "traffic.sidecar.istio.io/excludeOutboundIPRanges",
                "10.0.0.0/33",
            ][..],
        ),
        (
            "badport",
            "traffic.sidecar.istio.io/includeInboundPorts",
            "80,99999",
            7,
            &["includeInboundPorts", "99999"][..],
        ),
    ];
    for (name, annotation, value, code, named) in cases {
        let pod = node.try_add_pod(
            name,
            PodOptions::new().injected().annotation(annotation, value),
        );
        let (got, msg) = pod.meshlane_add_error();
        assert_eq!(got, code, "{name}: {msg}");
        for fragment in named {
            assert!(msg.contains(fragment), "{name}: no {fragment:?} in {msg}");
        }
    }
    // Refused before anything was loaded or written.
    assert!(!node.pin_root().exists(), "a refused ADD left state behind");
}

/// A pod with `annotation: value` on top of `options` fails its ADD with code 7
/// naming both.
fn refused_naming(node: &TestNode, options: PodOptions, annotation: &str, value: &str) {
    let pod = node.try_add_pod("refused", options.annotation(annotation, value));
    let (code, msg) = pod.meshlane_add_error();
    assert_eq!(code, 7, "{msg}");
    assert!(msg.contains(annotation) && msg.contains(value), "{msg}");
}

/// Under `mesh: "kuma"` (docs/meshes.md): an Istio pod is left alone, and a Kuma
/// pod whose settings meshlane cannot honour fails its ADD with code 7 naming the
/// annotation, before anything is written.
#[test]
fn kuma_pods_meshlane_cannot_honour_fail_their_add_and_istio_pods_are_left_alone() {
    let node = TestNode::builder("kuma-refuse")
        .meshlane_config(|_| json!({"mesh": "kuma"}))
        .build();
    for (annotation, value) in [
        ("traffic.kuma.io/exclude-inbound-ips", "10.0.0.1"),
        ("kuma.io/transparent-proxying-ip-family-mode", "ipv4"),
        ("traffic.kuma.io/exclude-outbound-ports", "80,99999"),
    ] {
        refused_naming(&node, PodOptions::new().kuma_injected(), annotation, value);
    }
    assert!(!node.pin_root().exists(), "a refused ADD left state behind");
    // An Istio pod is another mesh's: no capture, so nothing is loaded either.
    let _istio = node.add_pod("istio", PodOptions::new().injected());
    assert!(
        !node.pin_root().exists(),
        "an Istio pod was captured under mesh kuma"
    );
}

/// Under `mesh: "linkerd"` (docs/meshes.md): a Linkerd pod whose settings meshlane
/// cannot honour fails its ADD with code 7 naming the annotation, before anything
/// is written; Linkerd's iptables-mode pods, pods without linkerd-proxy and Istio
/// pods are left alone; a Linkerd pod in CNI mode is captured with its settings.
#[test]
fn linkerd_pods_are_selected_by_their_containers_and_settings_are_honoured_or_refused() {
    let (node, _api) = common::linkerd_node::linkerd_node(TestNode::builder("linkerd-pods"));
    for (annotation, value) in [
        ("config.linkerd.io/skip-subnets", "10.0.0.0/8"),
        ("config.linkerd.io/close-wait-timeout", "1m"),
        ("config.linkerd.io/skip-outbound-ports", "80,99999"),
        ("config.linkerd.io/proxy-uid", "linkerd"),
    ] {
        refused_naming(
            &node,
            PodOptions::new().linkerd_injected(),
            annotation,
            value,
        );
    }
    assert!(!node.pin_root().exists(), "a refused ADD left state behind");
    for (name, options) in [
        ("init", PodOptions::new().linkerd_injected()),
        ("plain", PodOptions::new().linkerd_injected()),
        ("istio", PodOptions::new().injected()),
    ] {
        let _left_alone = node.add_pod(name, options);
        assert!(!node.pin_root().exists(), "{name} was captured");
    }
    let pod = node.add_pod(
        "web",
        PodOptions::new()
            .linkerd_injected()
            .annotation("config.linkerd.io/proxy-uid", "2200")
            .annotation("config.linkerd.io/skip-inbound-ports", "9000-9001"),
    );
    let record = node
        .maps()
        .pod(pod.netns_cookie())
        .unwrap()
        .expect("captured");
    assert_eq!(
        (record.proxy_uid, record.outbound_port, record.inbound_port),
        (2200, 4140, 4143)
    );
    assert_ne!(record.flags & ml_pod_flag::ML_POD_LINKERD_RULES.0, 0);
    let none_skipped = ml_pod_flag::ML_POD_NO_EXCLUDED_OUT_PORTS.0;
    assert_ne!(record.flags & none_skipped, 0, "no outbound port skipped");
    // A control-plane pod (its label, from the API) skips the API server's ports.
    let control_plane = node.add_pod("cpdest", PodOptions::new().linkerd_injected());
    let record = node
        .maps()
        .pod(control_plane.netns_cookie())
        .unwrap()
        .expect("captured");
    assert_eq!(record.flags & none_skipped, 0, "443 and 6443 skipped");

    // Without a kubeconfig an injected pod's containers are unknown: never guessed.
    let blind = TestNode::builder("linkerd-blind")
        .meshlane_config(|_| json!({"mesh": "linkerd"}))
        .build();
    let pod = blind.try_add_pod("web", PodOptions::new().linkerd_injected());
    let (code, msg) = pod.meshlane_add_error();
    assert_eq!(code, 104, "{msg}");
    assert!(msg.contains("linkerd-init"), "{msg}");
}

#[test]
fn a_runtime_that_passes_no_annotations_cannot_have_its_pods_classified() {
    // The entry does not declare the capability, so no runtimeConfig arrives (as
    // with a runtime that does not support it), and no kubeconfig is configured.
    let node = TestNode::builder("istio-noannot")
        .edit_conflist(|_, conflist| {
            let meshlane = conflist.plugins.last_mut().expect("meshlane's entry");
            meshlane.as_object_mut().unwrap().remove("capabilities");
        })
        .build();
    let pod = node.try_add_pod("web", PodOptions::new().injected());
    let (code, msg) = pod.meshlane_add_error();
    assert_eq!(code, 104, "{msg}");
    assert!(
        msg.contains("annotations") && msg.contains("kubeconfig"),
        "{msg}"
    );
}

#[test]
fn a_pod_without_annotations_starts_with_no_api_call() {
    // containerd passes `"io.kubernetes.cri.pod-annotations": null` for a pod with
    // no annotations (the harness does the same): the pod has none, so Istio's
    // selection skips it without asking the API. The node has a kubeconfig, as a
    // default install does; a pod whose runtime passes no key at all is the
    // control that the API is reachable from where the plugin runs.
    let kubeconfig_dir = tempfile_dir("istio-plain");
    let kubeconfig = kubeconfig_dir.join("kubeconfig");
    let kubeconfig_text = kubeconfig.display().to_string();
    let node = TestNode::builder("istio-plain")
        .edit_conflist(move |_, conflist| {
            let meshlane = conflist.plugins.last_mut().expect("meshlane's entry");
            meshlane["kubeconfig"] = json!(kubeconfig_text);
        })
        .build();
    let api = common::api_server::for_plugin(
        &node,
        &kubeconfig,
        Box::new(|_| Reply::Json(404, status_json(404, "NotFound", "pods not found"))),
    );

    let plain = node.add_pod("plain", PodOptions::new());
    assert!(!captured(&node, &plain), "a plain pod was captured");
    assert!(
        api.seen().is_empty(),
        "a pod without annotations made API calls: {:?}",
        api.seen()
    );

    let control = node.try_add_pod("control", PodOptions::new().runtime_lacks_annotations());
    let (code, msg) = control.meshlane_add_error();
    assert_eq!(code, 104, "{msg}");
    let seen = api.seen();
    assert_eq!(seen.len(), 1, "the control pod asks the API once: {seen:?}");
    assert!(
        seen[0]
            .path
            .starts_with("/api/v1/namespaces/default/pods/control-"),
        "{seen:?}"
    );
    let _ = std::fs::remove_dir_all(&kubeconfig_dir);
}

/// A fresh directory under the system temp dir, named for the test and process.
fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("meshlane-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn annotations_become_the_pods_records() {
    let node = TestNode::builder("istio-records").dual_stack().build();
    let pod = node.add_pod(
        "web",
        PodOptions::new()
            .injected()
            .annotation("traffic.sidecar.istio.io/includeInboundPorts", "")
            .annotation(
                "traffic.sidecar.istio.io/excludeOutboundPorts",
                "3306, 5432",
            )
            .annotation(
                "traffic.sidecar.istio.io/includeOutboundIPRanges",
                "10.96.0.0/12,fd00::/8",
            ),
    );
    let cookie = pod.netns_cookie();
    let maps = node.maps();
    let record = maps.pod(cookie).unwrap().expect("captured");
    assert_eq!(
        record.flags & ml_pod_flag::ML_POD_CAPTURE_INBOUND.0,
        0,
        "inbound list is empty"
    );
    assert_eq!(record.flags & ml_pod_flag::ML_POD_INCLUDE_ALL_OUTBOUND.0, 0);
    assert!(
        !maps.inbound_attached(cookie),
        "no inbound capture, no sk_lookup link"
    );
    // Inbound off: no ::6 either (it is only for the inbound passthrough).
    let lo = pod.ip(&["-6", "addr", "show", "dev", "lo"]);
    assert!(!lo.contains("::6/128"), "{lo}");
}

#[test]
fn a_pod_in_a_user_namespace_is_refused() {
    let node = TestNode::new("istio-userns");
    // A network namespace owned by a new user namespace, as a pod with
    // hostUsers: false has; kept alive by a sleeping process, bind-mounted so
    // that it has a path like any CNI_NETNS.
    let mut holder = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "sleep", "60"])
        .spawn()
        .expect("unshare runs");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let path = node.layout().tmp.join("userns-netns");
    std::fs::write(&path, "").unwrap();
    let bind = Command::new("mount")
        .arg("--bind")
        .arg(format!("/proc/{}/ns/net", holder.id()))
        .arg(&path)
        .status()
        .unwrap();
    assert!(bind.success(), "bind-mount the netns");
    let cleanup = || {
        let _ = Command::new("umount").arg(&path).status();
    };
    let ip = Command::new("nsenter")
        .arg(format!("--net={}", path.display()))
        .args(["ip", "addr", "add", "10.77.0.5/24", "dev", "lo"])
        .status()
        .unwrap();
    assert!(ip.success());

    let mut conf = node.meshlane_netconf("1.0.0");
    conf["prevResult"] = json!({
        "cniVersion": "1.0.0",
        "ips": [{"address": "10.77.0.5/24"}]
    });
    conf["runtimeConfig"] = json!({
        "io.kubernetes.cri.pod-annotations": {"sidecar.istio.io/status": INJECTED_STATUS}
    });
    let env: Vec<(String, String)> = vec![
        ("CNI_COMMAND".into(), "ADD".into()),
        ("CNI_CONTAINERID".into(), "userns-pod".into()),
        ("CNI_NETNS".into(), path.display().to_string()),
        ("CNI_IFNAME".into(), "eth0".into()),
        (
            "CNI_PATH".into(),
            node.layout().bin_dir.display().to_string(),
        ),
        (
            "CNI_ARGS".into(),
            "K8S_POD_NAMESPACE=default;K8S_POD_NAME=userns".into(),
        ),
    ];
    let output = node.run_meshlane(&env, conf.to_string());
    cleanup();
    let _ = holder.kill();
    let _ = holder.wait();
    let error = output
        .error()
        .unwrap_or_else(|| panic!("expected an error: {output:?}"));
    assert_eq!(error.code, 104, "{error:?}");
    assert!(error.msg.contains("user namespace"), "{error:?}");
    assert!(
        !node.pin_root().exists(),
        "nothing may be loaded for a refused pod"
    );
}

/// `meshlane pods -o json` on `node`.
fn listed_pods(node: &TestNode) -> Vec<serde_json::Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_meshlane"))
        .args(["pods", "-o", "json", "--bpffs-root"])
        .arg(node.pin_root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    listed["pods"].as_array().unwrap().clone()
}

/// Asserts `listed` has `pod` with its mesh's proxy identity and listener ports
/// (docs/meshes.md), its address and its name: `K8S_POD_NAME`, the harness's
/// name and the pod's number on the node.
fn listed_with(
    listed: &[serde_json::Value],
    (pod, k8s_name): (&Pod, &str),
    uid_gid: (u32, u32),
    ports: (u16, u16),
) {
    let entry = listed
        .iter()
        .find(|e| e["netns_cookie"] == pod.netns_cookie())
        .unwrap_or_else(|| panic!("{} not listed: {listed:#?}", pod.name()));
    assert_eq!(
        (&entry["proxy_uid"], &entry["proxy_gid"]),
        (&json!(uid_gid.0), &json!(uid_gid.1)),
        "{entry:#}"
    );
    assert_eq!(
        (&entry["outbound_port"], &entry["inbound_port"]),
        (&json!(ports.0), &json!(ports.1)),
        "{entry:#}"
    );
    assert_eq!(entry["ips"], json!([pod.ipv4().to_string()]), "{entry:#}");
    let attachments = entry["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1, "{entry:#}");
    assert_eq!(attachments[0]["name"], k8s_name, "{entry:#}");
    assert_eq!(attachments[0]["namespace"], pod.namespace(), "{entry:#}");
    let capture = entry["capture"].as_array().unwrap();
    for flag in ["outbound", "inbound"] {
        assert!(capture.contains(&json!(flag)), "{flag}: {entry:#}");
    }
}

/// Issue 15, item 4: `meshlane pods` shows a Kuma pod with kuma-dp's identity
/// (5678, or `kuma.io/sidecar-uid`; no GID, docs/meshes.md) on 15001/15006, and
/// a Linkerd pod with the proxy's (2102 and no GID, or
/// `config.linkerd.io/proxy-uid`/`proxy-gid`) on 4140/4143.
#[test]
fn meshlane_pods_lists_kuma_and_linkerd_pods_with_their_mesh_settings() {
    let kuma = TestNode::builder("kuma-list")
        .meshlane_config(|_| json!({"mesh": "kuma"}))
        .build();
    let web = kuma.add_pod("web", PodOptions::new().kuma_injected().namespace("shop"));
    let api = kuma.add_pod(
        "api",
        PodOptions::new()
            .kuma_injected()
            .annotation("kuma.io/sidecar-uid", "5700"),
    );
    let listed = listed_pods(&kuma);
    assert_eq!(listed.len(), 2, "{listed:#?}");
    listed_with(
        &listed,
        (&web, "web-0"),
        (5678, NO_PROXY_GID),
        (15001, 15006),
    );
    listed_with(
        &listed,
        (&api, "api-1"),
        (5700, NO_PROXY_GID),
        (15001, 15006),
    );

    let (linkerd, _api) = common::linkerd_node::linkerd_node(TestNode::builder("linkerd-list"));
    let web = linkerd.add_pod(
        "web",
        PodOptions::new().linkerd_injected().namespace("shop"),
    );
    let api = linkerd.add_pod(
        "api",
        PodOptions::new()
            .linkerd_injected()
            .annotation("config.linkerd.io/proxy-uid", "2200")
            .annotation("config.linkerd.io/proxy-gid", "2201"),
    );
    let listed = listed_pods(&linkerd);
    assert_eq!(listed.len(), 2, "{listed:#?}");
    listed_with(&listed, (&web, "web-0"), (2102, NO_PROXY_GID), (4140, 4143));
    listed_with(&listed, (&api, "api-1"), (2200, 2201), (4140, 4143));
}
