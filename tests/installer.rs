//! `meshlane install` and `meshlane uninstall` on a test node, as on a real one:
//! the agent runs as its own process with a private CNI bin dir, net.d dir, pin
//! root and hooked cgroup (never the host's /etc/cni, /opt/cni, /sys/fs/bpf or
//! root cgroup), and a pod is created through the conflist the agent wrote,
//! with the binary the agent copied.
//!
//! Needs root; fails loudly (never skips) when it cannot run.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use meshlane::datapath::cgroup::Cgroup;
use meshlane::datapath::loader::{pinned_link_cgroup, NODE_PROGRAMS};
use meshlane::datapath::PinLayout;
use serde_json::{json, Map, Value};

use common::agent::{Agent, WAIT};
use common::chain::ChainOutput;
use common::chain::ChainRunner;
use common::netns::NamedNetns;
use common::timing::{poll, wait_until};
use common::{Conflist, RuntimeConf, TestNode, POD_ANNOTATIONS_CAPABILITY};

fn meshlane() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_meshlane"))
}

/// The node-side dirs the agent manages (inside the test node's temp dir).
struct Dirs {
    bin: PathBuf,
    net_d: PathBuf,
    cni_log: PathBuf,
    pin_root: PathBuf,
    cgroup: PathBuf,
}

impl Dirs {
    fn of(node: &TestNode) -> Dirs {
        let layout = node.layout();
        let net_d = layout.work_dir.join("net.d");
        fs::create_dir_all(&net_d).unwrap();
        Dirs {
            // Holds bridge, host-local and loopback already; the agent adds meshlane.
            bin: layout.bin_dir.clone(),
            net_d,
            cni_log: layout.work_dir.join("meshlane-cni.log"),
            pin_root: layout.pin_root.clone(),
            cgroup: layout.cgroup.clone(),
        }
    }

    /// `command` with the dirs every command takes, then `more` flags and their
    /// values.
    fn command_args(&self, command: &str, more: &[(&str, &Path)]) -> Vec<String> {
        let mut args = vec![command.to_string()];
        let dirs = [
            ("--cni-bin-dir", self.bin.as_path()),
            ("--cni-conf-dir", &self.net_d),
            ("--bpffs-root", &self.pin_root),
        ];
        for (flag, value) in dirs.iter().chain(more) {
            args.extend([flag.to_string(), value.to_string_lossy().into_owned()]);
        }
        args
    }
}

/// `meshlane install` on the test node's dirs.
fn start_agent(dirs: &Dirs) -> Agent {
    let mut args = dirs.command_args(
        "install",
        &[
            ("--cgroup", &dirs.cgroup),
            // The plugin runs where the agent does here, so the paths agree; on
            // a node the plugin finds the host's cgroup2 root by itself.
            ("--plugin-cgroup-path", &dirs.cgroup),
            ("--log-file", &dirs.cni_log),
        ],
    );
    args.extend([
        "--capture".into(),
        "cni-args".into(),
        "--proxy-uid".into(),
        "1337".into(),
        "--proxy-gid".into(),
        "1337".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--recheck-seconds".into(),
        "1".into(),
    ]);
    Agent::start(&dirs.cgroup, &args, &[])
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn meshlane_entries(conflist: &Value) -> Vec<Value> {
    conflist["plugins"]
        .as_array()
        .map(|plugins| {
            plugins
                .iter()
                .filter(|p| p["type"] == "meshlane")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until the file exists and carries exactly one meshlane entry.
fn wait_for_entry(path: &Path) -> Value {
    let entry = poll(WAIT, Duration::from_millis(50), || {
        let value = path.exists().then(|| read_json(path));
        value
            .filter(|value| meshlane_entries(value).len() == 1)
            .ok_or(())
    });
    entry.unwrap_or_else(|()| panic!("no meshlane entry in {} within {WAIT:?}", path.display()))
}

fn links_attached(dirs: &Dirs) -> usize {
    let cgroup = Cgroup::open(&dirs.cgroup).unwrap();
    let layout = PinLayout::new(&dirs.pin_root);
    NODE_PROGRAMS
        .iter()
        .filter(|p| pinned_link_cgroup(&layout.link(p.link)) == Some(cgroup.id))
        .count()
}

/// Parses the Prometheus text: every sample line is `name{labels} value`.
fn parse_metrics(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad line {line:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            (series.to_owned(), value)
        })
        .collect()
}

fn metric(samples: &[(String, f64)], series: &str) -> f64 {
    samples
        .iter()
        .find(|(s, _)| s == series)
        .unwrap_or_else(|| panic!("no {series} in {samples:?}"))
        .1
}

fn uninstall(dirs: &Dirs, force: bool) -> std::process::Output {
    let mut args = dirs.command_args("uninstall", &[]);
    if force {
        args.push("--force".into());
    }
    Command::new(meshlane())
        .args(&args)
        .env_clear()
        .env("PATH", common::prereq::CHILD_PATH)
        .output()
        .expect("running meshlane uninstall")
}

/// A captured pod created through `conflist` (the agent's), as a runtime would.
/// A pod created through the agent's conflist with the binary the agent
/// copied: its netns, its runtime config and what the chain answered.
fn add_pod(
    node: &TestNode,
    dirs: &Dirs,
    conflist: &Value,
    name: &str,
    annotations: Value,
) -> (NamedNetns, ChainRunner, RuntimeConf, ChainOutput) {
    let netns = NamedNetns::create(&node.layout().id.netns_name(name)).unwrap();
    let runner = ChainRunner::new(
        Conflist::from_json(conflist),
        dirs.bin.clone(),
        node.layout().node_netns.clone(),
        Vec::new(),
    );
    let salt = name.bytes().map(u64::from).sum::<u64>();
    let container_id = format!("{:0>64x}", std::process::id() as u64 * 7919 + salt);
    let mut capability_args = Map::new();
    capability_args.insert(POD_ANNOTATIONS_CAPABILITY.into(), annotations);
    let runtime = RuntimeConf {
        container_id: container_id.clone(),
        netns: Some(netns.path().to_path_buf()),
        ifname: "eth0".into(),
        args: vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAMESPACE".into(), "shop".into()),
            ("K8S_POD_NAME".into(), format!("{name}-0")),
            ("K8S_POD_INFRA_CONTAINER_ID".into(), container_id),
            ("MESHLANE_CAPTURE".into(), "true".into()),
        ],
        capability_args,
    };
    let output = runner.add(&runtime);
    (netns, runner, runtime, output)
}

fn add_captured_pod(node: &TestNode, dirs: &Dirs, conflist: &Value) -> NamedNetns {
    let (netns, _, _, output) = add_pod(
        node,
        dirs,
        conflist,
        "web",
        json!({ "sidecar.istio.io/status": "{}" }),
    );
    assert!(
        output.succeeded(),
        "pod ADD through the agent's conflist failed: {}",
        output.describe()
    );
    netns
}

#[test]
fn install_keeps_the_chain_survives_sigterm_and_uninstalls_cleanly() {
    let node = TestNode::builder("installer").without_meshlane().build();
    let dirs = Dirs::of(&node);
    let primary_path = dirs.net_d.join("10-bridge.conflist");
    // The primary CNI's own conflist (bridge + host-local), as it would write it.
    let primary = serde_json::to_string_pretty(&node.chain().conflist.to_json()).unwrap() + "\n";

    // Start before the primary config exists: the agent must wait for it.
    let mut agent = start_agent(&dirs);
    assert_eq!(agent.get("/healthz").0, 200);
    agent.wait_for_log("waiting for the primary CNI");
    let (status, body) = agent.get("/readyz");
    assert_eq!(status, 503, "ready without a chain entry: {body}");
    assert!(body.contains("not in the primary CNI config"), "{body}");

    // The binary was copied (a real file, not the test's symlink), executable.
    let installed = dirs.bin.join("meshlane");
    let meta = fs::symlink_metadata(&installed).unwrap();
    assert!(
        meta.file_type().is_file(),
        "installed binary is not a regular file"
    );
    assert_eq!(meta.permissions().mode() & 0o777, 0o755);
    assert_eq!(fs::read(&installed).unwrap(), fs::read(meshlane()).unwrap());
    assert_eq!(
        links_attached(&dirs),
        NODE_PROGRAMS.len(),
        "node programs attached at start"
    );

    // The primary appears after the agent started.
    fs::write(&primary_path, &primary).unwrap();
    let chained = wait_for_entry(&primary_path);
    let entry = &meshlane_entries(&chained)[0];
    assert_eq!(chained["plugins"][0]["type"], "bridge");
    assert_eq!(
        chained["plugins"].as_array().unwrap().last().unwrap()["type"],
        "meshlane"
    );
    assert_eq!(entry["capabilities"][POD_ANNOTATIONS_CAPABILITY], true);
    assert_eq!(entry["bpffsRoot"], dirs.pin_root.to_string_lossy().as_ref());
    assert_eq!(entry["logFile"], dirs.cni_log.to_string_lossy().as_ref());
    assert_eq!(entry["proxyUID"], 1337);
    assert_eq!(
        chained["cniVersion"],
        node.chain().conflist.cni_version.as_str()
    );
    agent.wait_until_ready();

    // The primary CNI rewrites its file (as Calico and Cilium do): the entry
    // comes back within seconds.
    let before_rewrite = Instant::now();
    fs::write(&primary_path, &primary).unwrap();
    let restored = wait_for_entry(&primary_path);
    assert!(before_rewrite.elapsed() < Duration::from_secs(5));
    assert_eq!(restored, chained);
    agent.wait_for_log("chain entry restored");
    agent.wait_until_ready();

    // A pod created through the agent's chain is captured, and the plugin's log
    // line about it shows up in the agent's stdout.
    let pod_netns = add_captured_pod(&node, &dirs, &restored);
    let tailed = || agent.stdout.text().contains("shop/web-0");
    assert!(
        wait_until(WAIT, Duration::from_millis(100), tailed),
        "plugin log not tailed; stdout:\n{}",
        agent.stdout.text()
    );
    let (status, text) = agent.get("/metrics");
    assert_eq!(status, 200);
    let samples = parse_metrics(&text);
    assert_eq!(metric(&samples, "meshlane_enrolled_pods"), 1.0);
    assert_eq!(metric(&samples, "meshlane_chain_entry_present"), 1.0);
    assert_eq!(
        metric(&samples, "meshlane_node_programs_attached"),
        NODE_PROGRAMS.len() as f64
    );
    assert_eq!(
        metric(&samples, "meshlane_cni_errors_total{command=\"ADD\"}"),
        0.0
    );
    metric(
        &samples,
        "meshlane_captured_connections_total{direction=\"outbound\"}",
    );
    assert!(samples
        .iter()
        .any(|(s, _)| s.starts_with("meshlane_bypassed_connections_total{")));

    // A failed ADD (a port Istio would refuse): the plugin's error record is
    // counted by its fields, once, and the runtime's DEL after it succeeds.
    let (bad_netns, runner, bad_pod, failed) = add_pod(
        &node,
        &dirs,
        &restored,
        "bad",
        json!({
            "sidecar.istio.io/status": "{}",
            "traffic.sidecar.istio.io/excludeOutboundPorts": "80,http",
        }),
    );
    let step = failed.failed_step().expect("the ADD failed");
    assert_eq!(step.plugin, "meshlane", "{}", failed.describe());
    let counted = poll(WAIT, Duration::from_millis(100), || {
        let (_, text) = agent.get("/metrics");
        let errors = metric(
            &parse_metrics(&text),
            "meshlane_cni_errors_total{command=\"ADD\"}",
        );
        if errors == 1.0 {
            return Ok(());
        }
        assert_eq!(errors, 0.0, "{text}");
        Err(text)
    });
    if let Err(text) = counted {
        panic!("the failed ADD was not counted:\n{text}");
    }
    let copied = agent.stdout.text();
    let record = copied
        .lines()
        .find(|line| line.contains(" pod=shop/bad-0") && line.contains(" level=error "))
        .unwrap_or_else(|| {
            panic!("no error record of the failed ADD in the agent's stdout:\n{copied}")
        });
    assert!(
        record.contains(" code=7 ") && record.contains(" command=ADD "),
        "{record}"
    );
    assert!(runner.del(&bad_pod, None).succeeded());
    drop(bad_netns);

    // What scripts read through `kubectl exec … -o json`: the inventory with
    // every node program attached, the pod and its attachment.
    let json_of = |command: &str| -> (Option<i32>, Value) {
        let output = Command::new(meshlane())
            .args([command, "--bpffs-root"])
            .arg(&dirs.pin_root)
            .args(["-o", "json"])
            .output()
            .unwrap();
        let value = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
            panic!(
                "{command} -o json: {err}: {}",
                String::from_utf8_lossy(&output.stdout)
            )
        });
        (output.status.code(), value)
    };
    let (code, status) = json_of("status");
    assert_eq!(code, Some(0), "{status:#}");
    let inventory = &status["inventory"];
    assert_eq!(inventory["missing"], json!([]), "{status:#}");
    let node_programs = inventory["node_programs"].as_array().unwrap();
    assert_eq!(node_programs.len(), NODE_PROGRAMS.len());
    for program in node_programs {
        let prog_id = program["attached"]["prog_id"].to_string();
        assert!(
            status["programs"][&prog_id]["tag"].is_string(),
            "{program} has no name and tag in {status:#}"
        );
    }
    assert_eq!(status["captured_pods"], 1, "{status:#}");
    assert!(status["counters"]
        .as_object()
        .is_some_and(|c| !c.is_empty()));
    let (code, pods) = json_of("pods");
    assert_eq!(code, Some(0), "{pods:#}");
    let listed = pods["pods"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{pods:#}");
    assert_eq!(listed[0]["attachments"][0]["name"], "web-0", "{pods:#}");
    assert_eq!(listed[0]["attachments"][0]["namespace"], "shop", "{pods:#}");
    assert!(listed[0]["capture"]
        .as_array()
        .unwrap()
        .contains(&json!("outbound")));

    // SIGTERM (an upgrade): the agent exits, everything stays.
    let status = agent.terminate();
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert!(agent.stderr.text().contains("stay in place"));
    assert_eq!(
        links_attached(&dirs),
        NODE_PROGRAMS.len(),
        "programs detached by SIGTERM"
    );
    assert_eq!(
        read_json(&primary_path),
        restored,
        "chain entry removed by SIGTERM"
    );
    assert!(installed.exists());

    // The new agent finds everything in place and rewrites nothing.
    let chain_bytes = fs::read(&primary_path).unwrap();
    let mut agent = start_agent(&dirs);
    agent.wait_for_log("node programs already attached");
    agent.wait_for_log("chain entry in place");
    agent.wait_until_ready();
    assert_eq!(fs::read(&primary_path).unwrap(), chain_bytes);
    assert!(agent.terminate().success());

    // Uninstall refuses while the pod is captured, and names it.
    let refused = uninstall(&dirs, false);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("shop/web-0"), "{stderr}");
    assert_eq!(links_attached(&dirs), NODE_PROGRAMS.len());
    assert_eq!(fs::read(&primary_path).unwrap(), chain_bytes);

    // --force removes everything: entry (the original file comes back byte for
    // byte), binary, pins — and with the pins, the attachments.
    let forced = uninstall(&dirs, true);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    // Each link is detached before its pin goes: unpinning alone detaches from
    // deferred work, a moment after uninstall has returned.
    let forced_log = String::from_utf8_lossy(&forced.stderr);
    let detached: usize = forced_log
        .split_whitespace()
        .find_map(|field| field.strip_prefix("links_detached="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no links_detached in\n{forced_log}"));
    assert!(
        detached > NODE_PROGRAMS.len(),
        "{detached} links detached, wanted the {} node links and the pod's: {forced_log}",
        NODE_PROGRAMS.len()
    );
    assert_eq!(fs::read_to_string(&primary_path).unwrap(), primary);
    assert!(!installed.exists(), "binary left behind");
    assert!(!dirs.pin_root.exists(), "pins left behind");
    let precheck = Command::new(meshlane())
        .args(["precheck", "--cgroup"])
        .arg(&dirs.cgroup)
        .arg("--bpffs-root")
        .arg(&dirs.pin_root)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&precheck.stdout);
    for hook in ["connect4", "connect6", "getsockopt", "sock_ops"] {
        let line = report
            .lines()
            .find(|l| l.contains(&format!("other programs on {hook} ")))
            .unwrap_or_else(|| panic!("no {hook} line in\n{report}"));
        assert!(
            line.ends_with("none"),
            "still attached after uninstall: {line}"
        );
    }

    // Uninstalling again is harmless.
    assert!(uninstall(&dirs, false).status.success());
    drop(pod_netns);
}

/// `meshlane precheck -o json` on the dirs, with extra arguments.
fn precheck_json(dirs: &Dirs, extra: &[&str]) -> (i32, Value) {
    let output = Command::new(meshlane())
        .arg("precheck")
        .arg("--cni-conf-dir")
        .arg(&dirs.net_d)
        .arg("--bpffs-root")
        .arg(&dirs.pin_root)
        .arg("--cgroup")
        .arg(&dirs.cgroup)
        .args(extra)
        .args(["-o", "json"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "precheck -o json: {err}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), report)
}

fn check_named<'r>(report: &'r Value, name: &str) -> &'r Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name:?} check in {report:#}"))
}

/// Istio's own CNI plugin in the primary config (a cluster moving from
/// istio-cni): the agent does not chain itself after it, is not ready and says
/// why; precheck fails with the fix; once istio-cni's entry is gone, the agent
/// chains itself.
#[test]
fn istio_cni_in_the_chain_is_refused_until_it_is_gone() {
    let node = TestNode::builder("istio-cni").without_meshlane().build();
    let dirs = Dirs::of(&node);
    let primary_path = dirs.net_d.join("10-bridge.conflist");
    let mut primary = node.chain().conflist.to_json();
    let bridge_only = serde_json::to_string_pretty(&primary).unwrap() + "\n";
    primary["plugins"].as_array_mut().unwrap().push(json!({
        "type": "istio-cni",
        "kubernetes": {"kubeconfig": "/etc/cni/net.d/ZZZ-istio-cni-kubeconfig"}
    }));
    let with_istio = serde_json::to_string_pretty(&primary).unwrap() + "\n";
    fs::write(&primary_path, &with_istio).unwrap();

    let (code, report) = precheck_json(&dirs, &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["verdict"], "FAIL");
    let chain = check_named(&report, "CNI chain");
    assert_eq!(chain["verdict"], "FAIL", "{chain:#}");
    assert!(
        chain["detail"].as_str().unwrap().contains("istio-cni"),
        "{chain:#}"
    );
    assert!(
        chain["fix"]
            .as_str()
            .unwrap()
            .contains("Moving from istio-cni"),
        "{chain:#}"
    );

    let mut agent = start_agent(&dirs);
    agent.wait_for_log("cannot put meshlane's chain entry in place");
    let (status, body) = agent.get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("istio-cni"), "{body}");
    assert_eq!(
        fs::read_to_string(&primary_path).unwrap(),
        with_istio,
        "the config was changed"
    );

    // Istio's CNI is uninstalled: its entry goes, meshlane's comes.
    fs::write(&primary_path, &bridge_only).unwrap();
    let chained = wait_for_entry(&primary_path);
    assert_eq!(chained["plugins"][0]["type"], "bridge");
    agent.wait_until_ready();
    let (code, report) = precheck_json(&dirs, &[]);
    assert_eq!(check_named(&report, "CNI chain")["verdict"], "OK");
    assert!(code == 0 || code == 1, "{report:#}");
    assert!(agent.terminate().success());
    assert!(uninstall(&dirs, true).status.success());
}

/// Cilium in the chain: precheck reads `cilium-config` from the API (the
/// stand-in) and says OK only when the socket LB stays in the host namespace,
/// a warning with the fix otherwise, and a warning when it cannot read it.
#[test]
fn precheck_reads_cilium_socket_lb_mode_from_its_config_map() {
    let node = TestNode::builder("cilium").without_meshlane().build();
    let dirs = Dirs::of(&node);
    fs::write(
        dirs.net_d.join("05-cilium.conflist"),
        r#"{"cniVersion": "0.3.1", "name": "cilium", "plugins": [{"type": "cilium-cni", "enable-debug": false}]}"#,
    )
    .unwrap();
    let cluster = common::kube_cluster::Cluster::start(&node.layout().work_dir, "node-a", None);
    let port = cluster.port();
    let account = cluster.account_dir.to_string_lossy().into_owned();
    let api = [
        "--api-host",
        "127.0.0.1",
        "--api-port",
        &port,
        "--service-account-dir",
        &account,
    ];
    let cilium_check = |extra: &[&str]| {
        let (_, report) = precheck_json(&dirs, extra);
        check_named(&report, "Cilium socket LB").clone()
    };
    // Cilium's ConfigMap with kube-proxy replacement on, its socket LB in pods
    // too ("false") or only in the host's namespace ("true"); the check's answer.
    let cilium_with_hostns_only = |hostns_only: &str| {
        cluster.set_config_map(
            "kube-system",
            "cilium-config",
            json!({"kube-proxy-replacement": "true", "bpf-lb-sock-hostns-only": hostns_only}),
        );
        cilium_check(&api)
    };

    // A WARN whose `field` says `text`.
    let assert_warns = |check: &Value, field: &str, text: &str| {
        assert_eq!(check["verdict"], "WARN", "{check:#}");
        assert!(check[field].as_str().unwrap().contains(text), "{check:#}");
    };
    let unreadable = cilium_check(&[]);
    assert_warns(&unreadable, "fix", "socketLB.hostNamespaceOnly=true");
    let missing = cilium_check(&api);
    assert_warns(&missing, "detail", "does not exist");

    let in_pods = cilium_with_hostns_only("false");
    assert_eq!(in_pods["verdict"], "WARN", "{in_pods:#}");

    let host_only = cilium_with_hostns_only("true");
    assert_eq!(host_only["verdict"], "OK", "{host_only:#}");
    let (_, report) = precheck_json(&dirs, &api);
    assert_eq!(check_named(&report, "Kubernetes API")["verdict"], "OK");
}

/// The command line as an operator meets it: `--help` on every command, exit
/// 2 and a suggestion for a typo, and the plugin still answers with
/// CNI_COMMAND set whatever the arguments.
#[test]
fn every_command_has_help_and_typos_exit_2() {
    for command in [
        "status",
        "pods",
        "precheck",
        "install",
        "uninstall",
        "upgrade-programs",
        "version",
    ] {
        let output = Command::new(meshlane())
            .args([command, "--help"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{command} --help: {text}");
        assert!(text.contains("Usage: meshlane "), "{command}: {text}");
    }
    let typo = Command::new(meshlane()).arg("stauts").output().unwrap();
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert_eq!(typo.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("status"), "{stderr}");
    let install_help = Command::new(meshlane())
        .args(["install", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&install_help.stdout);
    assert!(text.contains("MESHLANE_STARTUP_TAINT"), "{text}");

    let plugin = Command::new(meshlane())
        .arg("--help")
        .env("CNI_COMMAND", "VERSION")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let answer: Value = serde_json::from_slice(&plugin.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&plugin.stdout)));
    assert!(answer["supportedVersions"].is_array(), "{answer}");
}
