//! Proves the integration-test harness itself, with no meshlane capture involved:
//! chains here run without meshlane (it is not what is under test).
//! Privileged: run as root (`sudo -E cargo test --test harness_smoke`).

mod common;

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use common::names::{DIR_PREFIX, NETNS_PREFIX, TMP_ROOT};
use common::{
    bpffs, mountinfo, netns, probe, sweep, Connect, EnvoyOptions, Family, Identity, PodOptions,
    ProbeServer, TestNode,
};
use serde_json::json;

/// A node whose chain is the primary plugin only.
fn plain_node(name: &str) -> TestNode {
    TestNode::builder(name).without_meshlane().build()
}

/// Links of the node netns other than `lo` and the bridge: the host ends of veths.
fn veths_in_node(node: &TestNode) -> Vec<String> {
    node.ip(&["-o", "link", "show", "type", "veth"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// IPs host-local has reserved (one file per address in `<dataDir>/<network>/`).
fn ipam_reservations(node: &TestNode) -> Vec<String> {
    let dir = node.layout().ipam_dir.join(common::conflist::NETWORK_NAME);
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.parse::<IpAddr>().is_ok())
        .collect()
}

#[test]
fn two_pods_get_addresses_and_reach_each_other() {
    let node = plain_node("two-pods");
    let a = node.add_pod("a", PodOptions::new());
    let b = node.add_pod("b", PodOptions::new().namespace("other"));

    let subnet = node
        .layout()
        .subnet_v4
        .trim_end_matches(".0/24")
        .to_string();
    for pod in [&a, &b] {
        assert!(
            pod.ipv4().to_string().starts_with(&subnet),
            "{:?}",
            pod.addresses()
        );
        assert!(pod
            .ip(&["-o", "addr", "show", "eth0"])
            .contains(&pod.ipv4().to_string()));
    }
    assert_ne!(a.ipv4(), b.ipv4());

    let _server = ProbeServer::start(&b.place(), 8080, "b");
    let reply = Connect::to(SocketAddr::from((b.ipv4(), 8080)))
        .send("ping from a")
        .expect_reply(&a.place());
    assert_eq!(reply.name, "b");
    assert_eq!(reply.got, "ping from a");
    assert_eq!(reply.peer.ip(), IpAddr::V4(a.ipv4()));
    assert_eq!(reply.local, SocketAddr::from((b.ipv4(), 8080)));

    a.check();
    b.check();
}

#[test]
fn dual_stack_pods_reach_each_other_over_ipv6() {
    let node = TestNode::builder("dual")
        .without_meshlane()
        .dual_stack()
        .build();
    let a = node.add_pod("a", PodOptions::new());
    let b = node.add_pod("b", PodOptions::new());
    assert_eq!(a.addresses().len(), 2, "{:?}", a.result());

    let _server = ProbeServer::start(&b.place(), 8080, "b");
    let reply = Connect::to(SocketAddr::from((b.ipv6(), 8080))).expect_reply(&a.place());
    assert_eq!(reply.peer.ip(), IpAddr::V6(a.ipv6()));
    assert_eq!(reply.local, SocketAddr::from((b.ipv6(), 8080)));

    // The same dual-stack server also answers IPv4 and IPv4-mapped clients.
    let v4 = Connect::to(SocketAddr::from((b.ipv4(), 8080))).expect_reply(&a.place());
    assert_eq!(v4.peer.ip(), IpAddr::V4(a.ipv4()));
    let mapped = Connect::to(SocketAddr::from((b.ipv4(), 8080)))
        .family(Family::Mapped)
        .run(&a.place());
    assert!(mapped.ok, "{}", mapped.raw);
    assert_eq!(
        mapped.raw["peer_raw"],
        format!("[::ffff:{}]:8080", b.ipv4())
    );
}

/// A test plugin that records each call and passes prevResult through, so the
/// harness's libcni behaviour (order, injected keys, env) can be checked.
const RECORDER: &str = r#"#!/usr/bin/python3
import json, os, sys
conf = json.load(sys.stdin)
env = {k: v for k, v in os.environ.items()}
with open(conf["log"], "a") as log:
    log.write(json.dumps({"tag": conf["tag"], "conf": conf, "env": env}) + "\n")
if conf.get("fail"):
    print(json.dumps({"cniVersion": conf["cniVersion"], "code": 7, "msg": "told to fail"}))
    sys.exit(1)
if os.environ["CNI_COMMAND"] == "ADD":
    print(json.dumps(conf["prevResult"]))
"#;

fn recorder_node(name: &str, fail_second_add: bool) -> TestNode {
    recorder_node_at(name, "1.0.0", fail_second_add)
}

fn recorder_node_at(name: &str, cni_version: &str, fail_second_add: bool) -> TestNode {
    let node = TestNode::builder(name)
        .without_meshlane()
        .cni_version(cni_version)
        .plugin(|l| json!({"type": "recorder", "tag": "first", "log": l.work_dir.join("calls")}))
        .plugin(move |l| {
            json!({"type": "recorder", "tag": "second", "fail": fail_second_add,
                   "log": l.work_dir.join("calls"), "capabilities": {common::POD_ANNOTATIONS_CAPABILITY: true}})
        })
        .plugin_env("MESHLANE_TEST_MARKER", "1")
        .build();
    let script = node.layout().bin_dir.join("recorder");
    fs::write(&script, RECORDER).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    node
}

fn recorded_calls(node: &TestNode) -> Vec<serde_json::Value> {
    fs::read_to_string(node.layout().work_dir.join("calls"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn chain_runs_like_libcni_and_del_releases_everything() {
    let node = recorder_node("libcni", false);
    let mut pod = node.add_pod(
        "a",
        PodOptions::new().annotation("sidecar.istio.io/status", "{}"),
    );
    assert_eq!(pod.add_output().order(), ["bridge", "recorder", "recorder"]);
    assert_eq!(veths_in_node(&node).len(), 1);
    assert_eq!(ipam_reservations(&node), [pod.ipv4().to_string()]);

    pod.check();
    let del = pod.del();
    assert_eq!(del.order(), ["recorder", "recorder", "bridge"]);

    let calls = recorded_calls(&node);
    let seen: Vec<(String, String)> = calls
        .iter()
        .map(|c| {
            let cmd = c["env"]["CNI_COMMAND"].as_str().unwrap().to_string();
            (cmd, c["tag"].as_str().unwrap().to_string())
        })
        .collect();
    let expected = [
        ("ADD", "first"),
        ("ADD", "second"),
        ("CHECK", "first"),
        ("CHECK", "second"),
        ("DEL", "second"),
        ("DEL", "first"),
    ];
    assert_eq!(
        seen,
        expected.map(|(c, t)| (c.to_string(), t.to_string())),
        "calls in order"
    );
    for call in &calls {
        let (conf, env) = (&call["conf"], &call["env"]);
        assert_eq!(conf["name"], common::conflist::NETWORK_NAME);
        assert_eq!(conf["cniVersion"], "1.0.0");
        // Every call (ADD, CHECK, DEL) gets the bridge's result with the pod's IP.
        let prev_ip = conf["prevResult"]["ips"][0]["address"].as_str().unwrap();
        assert!(prev_ip.starts_with(&format!("{}/", pod.ipv4())), "{conf}");
        assert_eq!(env["CNI_NETNS"], pod.netns_path().to_str().unwrap());
        assert_eq!(env["CNI_IFNAME"], "eth0");
        assert_eq!(env["CNI_CONTAINERID"], pod.container_id());
        assert_eq!(env["CNI_PATH"], node.layout().bin_dir.to_str().unwrap());
        let args = env["CNI_ARGS"].as_str().unwrap();
        assert!(args.starts_with("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=a-"));
        assert!(args.contains(&format!(
            "K8S_POD_INFRA_CONTAINER_ID={}",
            pod.container_id()
        )));
        assert!(args.contains(&format!("K8S_POD_UID={}", pod.uid())));
        // Python itself adds LC_CTYPE (PEP 538 locale coercion) in the recorder.
        let mut keys: Vec<&str> = env
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.retain(|k| *k != "LC_CTYPE");
        keys.sort();
        assert_eq!(
            keys,
            [
                "CNI_ARGS",
                "CNI_COMMAND",
                "CNI_CONTAINERID",
                "CNI_IFNAME",
                "CNI_NETNS",
                "CNI_PATH",
                "MESHLANE_TEST_MARKER",
                "PATH"
            ],
            "only the CNI variables, PATH and plugin_env"
        );
        // runtimeConfig only for the plugin that declares the capability.
        let annotations = &conf["runtimeConfig"][common::POD_ANNOTATIONS_CAPABILITY];
        if call["tag"] == "second" {
            assert_eq!(annotations["sidecar.istio.io/status"], "{}");
        } else {
            assert!(conf.get("runtimeConfig").is_none(), "{conf}");
        }
    }

    // DEL removed the veth and the reservation; it can be repeated, also after the
    // netns is gone (then without CNI_NETNS and without a cached result).
    assert!(
        veths_in_node(&node).is_empty(),
        "{:?}",
        veths_in_node(&node)
    );
    assert!(ipam_reservations(&node).is_empty());
    pod.remove_netns();
    let again = pod.del();
    assert!(again
        .steps
        .iter()
        .all(|s| !s.env.iter().any(|(k, _)| k == "CNI_NETNS")));
    assert!(again
        .steps
        .iter()
        .all(|s| s.stdin_json().get("prevResult").is_none()));
}

#[test]
fn failed_add_stops_the_chain_and_reports_every_step() {
    let node = recorder_node("failing", true);
    let mut pod = node.try_add_pod("a", PodOptions::new());
    let add = pod.add_output().clone();
    assert!(!add.succeeded());
    assert_eq!(add.order(), ["bridge", "recorder", "recorder"]);
    let failed = add.failed_step().unwrap();
    assert_eq!(failed.error().unwrap().code, 7);
    assert!(pod.result().is_none());
    // A runtime DELs after a failed ADD: the whole chain, in reverse, without prevResult.
    let del = pod.try_del();
    assert_eq!(
        del.order(),
        ["recorder"],
        "the failing recorder fails DEL too"
    );
    assert!(!del.succeeded());
}

#[test]
fn cni_0_3_1_chains_get_no_cached_result_on_del() {
    let node = recorder_node_at("old", "0.3.1", false);
    let mut pod = node.add_pod("a", PodOptions::new());
    assert!(pod.ipv4().is_private());
    pod.del();
    let calls = recorded_calls(&node);
    let del = calls
        .iter()
        .find(|c| c["env"]["CNI_COMMAND"] == "DEL")
        .unwrap();
    assert_eq!(del["conf"]["cniVersion"], "0.3.1");
    assert!(del["conf"].get("prevResult").is_none(), "{del}");
    assert!(ipam_reservations(&node).is_empty());
}

#[test]
fn raw_plugin_calls_reach_any_plugin() {
    let node = plain_node("raw");
    let env = node.cni_env("VERSION", None);
    let out = node
        .chain()
        .exec_plugin(
            "bridge",
            &env,
            json!({"cniVersion": "1.0.0"}).to_string().as_bytes(),
        )
        .expect_success();
    let versions = out.json().unwrap()["supportedVersions"].clone();
    assert!(
        versions.as_array().unwrap().contains(&json!("1.0.0")),
        "{versions}"
    );

    // An error path: ADD without CNI_NETNS fails with a CNI error object.
    let out = node.chain().exec_plugin(
        "bridge",
        &node.cni_env("ADD", None),
        node.chain().conflist.plugins[0].to_string().as_bytes(),
    );
    assert!(!out.succeeded());
    assert!(out.error().is_some(), "{}", out.describe());

    // The meshlane entry is available as a standalone netconf for STATUS / GC.
    let conf = node.meshlane_netconf("1.1.0");
    assert_eq!(conf["type"], "meshlane");
    assert_eq!(conf["cniVersion"], "1.1.0");
    // …and keeps meshlane inside the node: never the machine's root cgroup or bpffs.
    assert_eq!(conf["bpffsRoot"], node.pin_root().to_str().unwrap());
    assert_eq!(conf["cgroupPath"], node.layout().cgroup.to_str().unwrap());
    assert!(conf["logFile"]
        .as_str()
        .unwrap()
        .starts_with(node.layout().tmp.to_str().unwrap()));
}

#[test]
fn processes_run_in_the_pod_netns_and_hooked_cgroup_as_the_given_user() {
    let node = plain_node("process");
    let pod = node.add_pod("a", PodOptions::new());
    let script = "id -u; id -g; id -G; cat /proc/self/cgroup; stat -L -c %i /proc/self/ns/net";
    let out = pod
        .command("/bin/sh")
        .args(["-c", script])
        .identity(Identity::APP)
        .run();
    assert!(out.success(), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(&lines[..3], ["1000", "1000", "1000"]);
    let cgroup_line = lines.iter().find(|l| l.starts_with("0::")).unwrap();
    let relative = node
        .layout()
        .cgroup
        .strip_prefix(mountinfo::cgroup2_mount().unwrap())
        .unwrap();
    assert_eq!(*cgroup_line, format!("0::/{}", relative.display()));
    let netns_inode = fs::metadata(pod.netns_path()).unwrap().ino();
    assert_eq!(lines.last().unwrap().parse::<u64>().unwrap(), netns_inode);

    // Outside every pod: the node netns, same cgroup.
    let out = common::Spawn::new(&node.outside_pods(), "/bin/sh")
        .args(["-c", "stat -L -c %i /proc/self/ns/net"])
        .run();
    let node_inode = fs::metadata(&node.layout().node_netns).unwrap().ino();
    assert_eq!(out.stdout.trim().parse::<u64>().unwrap(), node_inode);

    // The test runner itself stays where it was.
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    assert!(!own.contains(DIR_PREFIX), "{own}");

    // Background processes are in the cgroup until killed.
    let mut sleeper = pod.command("/bin/sleep").arg("600").spawn();
    assert!(node.cgroup().pids().contains(&(sleeper.pid() as i32)));
    sleeper.kill();
    assert!(!node.cgroup().pids().contains(&(sleeper.pid() as i32)));
}

#[test]
fn envoy_starts_in_a_pod_as_the_proxy_user() {
    let node = plain_node("envoy");
    let pod = node.add_pod("a", PodOptions::new());
    let envoy = pod.start_envoy(EnvoyOptions::new().with_inbound());

    let status = fs::read_to_string(format!("/proc/{}/status", envoy.pid())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let gid_line = status.lines().find(|l| l.starts_with("Gid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|id| id == "1337"),
        "{uid_line}"
    );
    assert!(
        gid_line.split_whitespace().skip(1).all(|id| id == "1337"),
        "{gid_line}"
    );
    assert!(node.cgroup().pids().contains(&(envoy.pid() as i32)));

    assert_eq!(
        envoy.admin_get("/ready").unwrap(),
        (200, "LIVE\n".to_string())
    );
    assert_eq!(envoy.stat("server.concurrency"), Some(1));
    // virtualOutbound, virtualOutboundIpv6, virtualInbound, virtualInboundIpv6.
    assert_eq!(
        envoy.stat("listener_manager.total_listeners_active"),
        Some(4)
    );
    let (_, listeners) = envoy.admin_get("/listeners").unwrap();
    for expected in ["0.0.0.0:15001", "[::]:15001", "0.0.0.0:15006", "[::]:15006"] {
        assert!(listeners.contains(expected), "{expected} in {listeners}");
    }

    // A connection made straight to 15001 (no capture, so no original destination)
    // hits the loop guard and is logged.
    let direct = Connect::to("127.0.0.1:15001").run(&pod.place());
    assert!(!direct.ok, "{}", direct.raw);
    let entries = envoy.wait_for_access_log(1, Duration::from_secs(10));
    assert_eq!(entries[0].listener, "virtualOutbound");
    assert_eq!(entries[0].downstream_local, "127.0.0.1:15001");
    assert_eq!(entries[0].cluster, "BlackHoleCluster");
}

/// Runs `iptables-legacy -w <rule>` in a pod (Istio's capture, the baseline).
fn iptables(pod: &common::Pod, rule: &str) {
    let out = pod
        .command("iptables-legacy")
        .arg("-w")
        .args(rule.split_whitespace())
        .run();
    assert!(out.success(), "iptables-legacy {rule}: {out:?}");
}

/// The sidecar config is right for the capture flow: with Istio's own iptables
/// REDIRECT providing the original destination, an app's connection goes app →
/// Envoy A (15001) → Envoy B (15006) → app B, arriving from 127.0.0.6.
#[test]
fn envoy_forwards_redirected_connections_to_their_original_destination() {
    let node = plain_node("passthrough");
    let a = node.add_pod("a", PodOptions::new());
    let b = node.add_pod("b", PodOptions::new());
    let envoy_a = a.start_envoy(EnvoyOptions::new());
    let envoy_b = b.start_envoy(EnvoyOptions::new().with_inbound());
    let _server = ProbeServer::start(&b.place(), 8080, "b");
    let b_ip = b.ipv4().to_string();
    let outbound = "-m owner ! --uid-owner 1337 -j REDIRECT --to-ports 15001";
    let outbound = format!("-t nat -A OUTPUT -p tcp -d {b_ip} --dport 8080 {outbound}");
    iptables(&a, &outbound);
    let inbound = "-t nat -A PREROUTING -p tcp --dport 8080 -j REDIRECT --to-ports 15006";
    iptables(&b, inbound);

    let reply = Connect::to(format!("{b_ip}:8080"))
        .send("through both sidecars")
        .identity(Identity::APP)
        .expect_reply(&a.place());
    assert_eq!(reply.got, "through both sidecars");
    assert_eq!(reply.peer.ip().to_string(), "127.0.0.6");
    assert_eq!(reply.local, SocketAddr::from((b.ipv4(), 8080)));

    let out = &envoy_a.wait_for_access_log(1, Duration::from_secs(10))[0];
    assert_eq!(out.listener, "virtualOutbound");
    assert_eq!(out.cluster, "PassthroughCluster");
    assert_eq!(out.downstream_local, format!("{b_ip}:8080"));
    assert_eq!(out.upstream_host, format!("{b_ip}:8080"));
    let inbound = &envoy_b.wait_for_access_log(1, Duration::from_secs(10))[0];
    assert_eq!(inbound.listener, "virtualInbound");
    assert_eq!(inbound.cluster, "InboundPassthroughClusterIpv4");
    assert_eq!(inbound.downstream_local, format!("{b_ip}:8080"));
    assert!(
        inbound.upstream_local.starts_with("127.0.0.6:"),
        "{inbound:?}"
    );
    assert_eq!(
        envoy_a.stat("cluster.PassthroughCluster.upstream_cx_total"),
        Some(1)
    );
}

#[test]
fn probes_report_structured_results_without_capture() {
    let node = plain_node("probes");
    let pod = node.add_pod("a", PodOptions::new());

    // No capture: Istio's check connects to 127.0.0.6:15002 where nothing listens.
    let validation = probe::istio_validation(&pod.place(), false);
    assert!(!validation.ok, "{}", validation.raw);
    assert_eq!(validation.listener, None);
    assert!(validation.error.unwrap().contains("ECONNREFUSED"));

    let report = probe::getsockopt_passthrough(&pod.place());
    assert!(report.ok, "failed: {:?}\n{}", report.failures(), report.raw);
    assert!(
        report.raw["iptables_legacy_save"]["bytes"]
            .as_u64()
            .unwrap()
            > 0
    );

    // A refused connect is an outcome, not a panic.
    let refused = Connect::to("127.0.0.1:9").run(&pod.place());
    assert!(!refused.ok);
    assert!(refused.error.unwrap().contains("ECONNREFUSED"));
}

#[test]
fn sweep_removes_leftovers_of_dead_runs_and_keeps_live_ones() {
    common::require_root();
    let live = plain_node("live");
    let live_pod = live.add_pod("a", PodOptions::new());

    // A "test run" that will crash: a process whose PID names the leftovers. While
    // it lives, no sweep (of this or a concurrent run) may touch them.
    let mut run = std::process::Command::new("/bin/sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let pid = run.id();
    let name = format!("{DIR_PREFIX}{pid}-0");
    let leftover_netns = format!("{NETNS_PREFIX}{pid}-0-node");
    std::mem::forget(netns::NamedNetns::create(&leftover_netns).unwrap());
    // A cgroup with a nested one holding a process of the crashed run.
    let cgroup_dir = mountinfo::cgroup2_mount().unwrap().join(&name);
    fs::create_dir_all(cgroup_dir.join("nested")).unwrap();
    let mut orphan = std::process::Command::new("/bin/sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let procs = cgroup_dir.join("nested/cgroup.procs");
    fs::write(procs, orphan.id().to_string()).unwrap();
    // A temp dir with a bpffs mounted in it.
    let tmp = Path::new(TMP_ROOT).join(&name);
    std::mem::forget(bpffs::BpffsMount::mount(tmp.join("bpffs")).unwrap());
    fs::write(tmp.join("some-file"), "x").unwrap();

    let live_sweep = sweep::sweep_leftovers();
    assert!(live_sweep.problems.is_empty(), "{:?}", live_sweep.problems);
    assert!(
        cgroup_dir.exists() && tmp.exists(),
        "a live run's items are kept"
    );

    // The run crashes (and is reaped, so its PID is gone from /proc).
    run.kill().unwrap();
    run.wait().unwrap();
    let report = sweep::sweep_leftovers();
    // A concurrent run's sweep may take some of them first; what matters is that
    // nothing fails and nothing is left.
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(!Path::new(netns::NETNS_DIR).join(&leftover_netns).exists());
    assert!(!cgroup_dir.exists());
    assert!(mountinfo::mounts_under(&tmp.to_string_lossy()).is_empty());
    assert!(!tmp.exists());
    let status = orphan.wait().unwrap();
    assert!(!status.success(), "the sweep killed the leftover's process");

    // This (live) run's node is untouched.
    assert!(live_pod.netns_path().exists());
    assert!(live.layout().node_netns.exists());
    assert!(live.layout().cgroup.exists());
    let live_mounts = mountinfo::mounts_under(&live.layout().bpffs.to_string_lossy());
    assert_eq!(live_mounts.len(), 1);
    assert!(live.layout().tmp.exists());
}

/// Everything a node created, by its names.
fn traces_of(layout: &common::NodeLayout) -> Vec<String> {
    let mut traces: Vec<String> = netns::list_named(&layout.id.netns_prefix());
    if layout.cgroup.exists() {
        traces.push(layout.cgroup.display().to_string());
    }
    for mount in mountinfo::mounts_under(&layout.tmp.to_string_lossy()) {
        traces.push(format!("mount {}", mount.display()));
    }
    if layout.tmp.exists() {
        traces.push(layout.tmp.display().to_string());
    }
    traces
}

#[test]
fn dropping_a_node_leaves_nothing_behind_even_after_a_panic() {
    let node = plain_node("drop");
    let layout = node.layout().clone();
    {
        let pod = node.add_pod("a", PodOptions::new());
        let _envoy = pod.start_envoy(EnvoyOptions::new());
        let _server = ProbeServer::start(&pod.place(), 8080, "a");
        // A process the test "forgot": only the cgroup kill can find it.
        std::mem::forget(pod.command("/bin/sleep").arg("600").spawn());
        assert!(!traces_of(&layout).is_empty());
    }
    drop(node);
    assert_eq!(traces_of(&layout), Vec::<String>::new());

    // The same when the test panics: unwinding drops the node.
    let seen = std::sync::Mutex::new(None);
    let outcome = std::panic::catch_unwind(|| {
        let node = plain_node("panic");
        let _pod = node.add_pod("a", PodOptions::new());
        *seen.lock().unwrap() = Some(node.layout().clone());
        panic!("deliberate panic: cleanup must still happen (expected in this test's output)");
    });
    assert!(outcome.is_err());
    let layout = seen.into_inner().unwrap().expect("the node was built");
    assert_eq!(traces_of(&layout), Vec::<String>::new());
}

/// The harness's waits end: past the timeout `poll` hands back the last
/// attempt's complaint and `wait_until` says false, so a test that waits for
/// something that never comes fails with what was missing instead of hanging.
#[test]
fn waits_give_up_after_their_timeout_with_the_last_complaint() {
    use common::timing::{poll, wait_until};
    let every = Duration::from_millis(5);
    let mut attempts = 0;
    let last = poll(Duration::from_millis(30), every, || {
        attempts += 1;
        Err::<(), _>(attempts)
    });
    assert_eq!(last, Err(attempts));
    assert!(!wait_until(Duration::from_millis(30), every, || false));
    assert_eq!(
        poll(Duration::ZERO, every, || Ok::<_, ()>("found")),
        Ok("found")
    );
    assert!(wait_until(Duration::ZERO, every, || true));
}
