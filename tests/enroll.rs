//! The install agent enrolls pods that already run on its node, and writes the
//! plugin's kubeconfig.
//!
//! The pods are real: network namespaces wired by the real bridge plugin (with
//! no meshlane in the chain, as before meshlane was installed), processes
//! inside them placed in cgroups laid out as a kubelet lays them out
//! (`<test cgroup>/kubepods/burstable/pod<uid>/<container id>`), traffic that
//! really connects. The only stand-in is the Kubernetes API server: a local
//! HTTPS server (tests/common/api_server.rs) answering the pod list with JSON
//! describing those pods.
//!
//! Needs root; fails loudly (never skips) when it cannot run.

mod common;

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use meshlane::datapath::abi::ml_pod_flag;
use meshlane::datapath::AttachmentKey;
use meshlane::install::enroll::Enroller;
use meshlane::kube::{fetch_pod, FetchPolicy, KubeAccess};
use meshlane::plugin::config::{PluginConfig, KEYS};
use serde_json::{json, Value};

use common::agent::{install_args, Agent, WAIT};
use common::exec::run_ok;
use common::kube_cluster::{Cluster, STARTUP_TAINT};
use common::pod::INJECTED_STATUS;
use common::process::{Spawn, TestProcess};
use common::timing::wait_until;
use common::{Connect, Identity, Place, Pod, PodOptions, ProbeServer, TestNode};

const NODE_NAME: &str = "node-7";
const NAMESPACE: &str = "shop";
const APP_PORT: u16 = 8080;

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

// ------------------------------------------------------------ running pods

/// What the pod JSON says about a pod.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Injected by Istio with the CNI plugin mode (istio-validation).
    Sidecar,
    /// Injected in iptables mode: istio-init has captured it already.
    IstioInit,
    /// No sidecar.
    Plain,
    /// hostNetwork: true.
    HostNetwork,
    /// Injected by Kuma in CNI mode (docs/meshes.md, K3–K5).
    Kuma,
    /// Injected by Linkerd in CNI mode (docs/meshes.md, L2–L3).
    Linkerd,
}

/// A pod that was running before the agent came: its sandbox (network
/// namespace and `pause`-like process), its containers' processes, and the
/// JSON the API server reports for it.
struct RunningPod<'n> {
    pod: Pod<'n>,
    uid: String,
    name: String,
    /// `<test cgroup>/kubepods/burstable/pod<uid>`
    cgroup: PathBuf,
    app_id: String,
    proxy_id: String,
    processes: Vec<TestProcess>,
    json: Value,
}

fn hex_id(seed: &str) -> String {
    // Distinct, deterministic 64-hex-digit container IDs.
    let mut out = String::new();
    let mut n: u64 = 0xcbf2_9ce4_8422_2325;
    while out.len() < 64 {
        for byte in seed.bytes().chain(out.len().to_le_bytes()) {
            n = (n ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{n:016x}"));
    }
    out.truncate(64);
    out
}

impl<'n> RunningPod<'n> {
    /// Wires the netns with the bridge-only chain (as the runtime did when
    /// meshlane was not installed) and starts the sandbox and container
    /// processes in kubelet-like cgroups.
    fn start(node: &'n TestNode, name: &str, kind: Kind) -> RunningPod<'n> {
        let pod = node.add_pod(name, PodOptions::new().namespace(NAMESPACE));
        let uid = pod.uid().to_owned();
        let cgroup = node
            .layout()
            .cgroup
            .join("kubepods/burstable")
            .join(format!("pod{uid}"));
        let mut running = RunningPod {
            name: pod.name().to_owned(),
            app_id: hex_id(&format!("{name}-app")),
            proxy_id: hex_id(&format!("{name}-proxy")),
            cgroup,
            uid,
            processes: Vec::new(),
            json: Value::Null,
            pod,
        };
        let netns = match kind {
            Kind::HostNetwork => node.layout().node_netns.clone(),
            _ => running.pod.netns_path().to_path_buf(),
        };
        // The sandbox's ID is the one the runtime passed to the CNI plugins.
        let sandbox = running.pod.container_id().to_owned();
        for id in [sandbox, running.app_id.clone()] {
            let place = running.container(&id, &netns, node);
            running
                .processes
                .push(Spawn::new(&place, "/bin/sleep").arg("infinity").spawn());
        }
        running.json = running.pod_json(kind);
        running
    }

    /// A container's cgroup, created on first use.
    fn container(&self, id: &str, netns: &Path, node: &TestNode) -> Place {
        let cgroup = self.cgroup.join(id);
        fs::create_dir_all(&cgroup).unwrap();
        Place {
            label: format!("{}-{}", self.name, &id[..8]),
            netns: netns.to_path_buf(),
            cgroup,
            work_dir: node.layout().work_dir.clone(),
        }
    }

    fn app(&self, node: &TestNode) -> Place {
        self.container(&self.app_id, self.pod.netns_path(), node)
    }

    fn proxy(&self, node: &TestNode) -> Place {
        self.container(&self.proxy_id, self.pod.netns_path(), node)
    }

    fn cookie(&self) -> u64 {
        self.pod.netns_cookie()
    }

    fn id(&self) -> String {
        format!("{NAMESPACE}/{}", self.name)
    }

    fn pod_json(&self, kind: Kind) -> Value {
        let ip = match kind {
            // Whatever the node's address is: the pod is skipped before it matters.
            Kind::HostNetwork => "192.0.2.10".to_owned(),
            _ => self.pod.ipv4().to_string(),
        };
        let mut annotations = json!({});
        let mut init = vec![];
        let mut containers = vec![json!({"name": "app", "image": "app"})];
        let mut statuses = vec![json!({
            "name": "app", "ready": true, "containerID": format!("containerd://{}", self.app_id)
        })];
        if matches!(kind, Kind::Sidecar | Kind::IstioInit) {
            let init_name = if kind == Kind::Sidecar {
                "istio-validation"
            } else {
                "istio-init"
            };
            let status = INJECTED_STATUS.replace("istio-validation", init_name);
            annotations["sidecar.istio.io/status"] = Value::from(status);
            init.push(init_name);
            containers.push(json!({
                "name": "istio-proxy", "image": "proxyv2", "args": ["proxy", "sidecar"]
            }));
            statuses.push(json!({
                "name": "istio-proxy", "ready": true,
                "containerID": format!("containerd://{}", self.proxy_id)
            }));
        }
        if kind == Kind::Kuma {
            annotations["kuma.io/sidecar-injected"] = Value::from("true");
            annotations["k8s.v1.cni.cncf.io/networks"] = Value::from("kuma-cni");
            containers.push(json!({"name": "kuma-sidecar", "image": "kuma-dp"}));
            statuses.push(json!({
                "name": "kuma-sidecar", "ready": true,
                "containerID": format!("containerd://{}", self.proxy_id)
            }));
        }
        if kind == Kind::Linkerd {
            annotations["linkerd.io/proxy-version"] = Value::from("edge-26.8.3");
            init.push("linkerd-network-validator");
            containers.push(json!({"name": "linkerd-proxy", "image": "proxy"}));
            statuses.push(json!({
                "name": "linkerd-proxy", "ready": true,
                "containerID": format!("containerd://{}", self.proxy_id)
            }));
        }
        // Init containers have exited; they keep their IDs in the status.
        let init_specs: Vec<Value> = init
            .iter()
            .map(|name| json!({"name": name, "image": "proxyv2"}))
            .collect();
        let init_statuses: Vec<Value> = init
            .iter()
            .map(|name| {
                let id = hex_id(&format!("{}-{name}", self.name));
                json!({"name": name, "containerID": format!("containerd://{id}")})
            })
            .collect();
        let host_network = kind == Kind::HostNetwork;
        json!({
            "metadata": {
                "namespace": NAMESPACE, "name": self.name, "uid": self.uid,
                "annotations": annotations, "labels": {"app": self.name}
            },
            "spec": {
                "nodeName": NODE_NAME,
                "hostNetwork": host_network,
                "initContainers": init_specs,
                "containers": containers
            },
            "status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "initContainerStatuses": init_statuses,
                "containerStatuses": statuses
            }
        })
    }
}

// ----------------------------------------------------------------- the agent

/// The agent's settings for a test node and cluster.
fn agent_args(node: &TestNode, cluster: &Cluster, node_name: Option<&str>) -> Vec<String> {
    let mut args = install_args(node.layout(), &net_d(node));
    let mut set = |flag: &str, value: String| {
        args.push(format!("--{flag}"));
        args.push(value);
    };
    set("api-host", "127.0.0.1".into());
    set("api-port", cluster.port());
    set("service-account-dir", path_text(&cluster.account_dir));
    set("kubeconfig", path_text(&kubeconfig_path(node)));
    set("enroll-seconds", "0".into());
    if let Some(name) = node_name {
        set("node-name", name.into());
    }
    args
}

fn net_d(node: &TestNode) -> PathBuf {
    node.layout().work_dir.join("net.d")
}

fn kubeconfig_path(node: &TestNode) -> PathBuf {
    net_d(node).join("meshlane-kubeconfig")
}

/// A node whose chain is the bridge plugin alone (meshlane not installed yet),
/// with that chain as the primary CNI config in its net.d.
fn node_without_meshlane(name: &str) -> TestNode {
    let node = TestNode::builder(name).without_meshlane().build();
    let net_d = net_d(&node);
    fs::create_dir_all(&net_d).unwrap();
    let primary = serde_json::to_string_pretty(&node.chain().conflist.to_json()).unwrap();
    fs::write(net_d.join("10-bridge.conflist"), primary).unwrap();
    node
}

/// A node without meshlane and its API server (which goes first when the test
/// ends, as the bindings drop in reverse).
fn node_and_cluster(name: &str) -> (TestNode, Cluster) {
    let node = node_without_meshlane(name);
    let cluster = Cluster::start(&node.layout().work_dir, NODE_NAME, None);
    (node, cluster)
}

fn start_agent(node: &TestNode, cluster: &Cluster) -> Agent {
    let mut agent = Agent::start(
        &node.layout().cgroup,
        &agent_args(node, cluster, Some(NODE_NAME)),
        &[],
    );
    agent.wait_for_log("enrollment round done");
    agent
}

/// The agent's log line about `pod` with `msg`, or a panic with the log.
fn line_about(agent: &Agent, msg: &str, pod: &str) -> String {
    let text = agent.stderr.text();
    let field = format!("pod={pod}");
    text.lines()
        .find(|line| {
            line.contains(&format!("msg={msg:?}")) && line.split(' ').any(|word| word == field)
        })
        .unwrap_or_else(|| panic!("no {msg:?} line for {pod}:\n{text}"))
        .to_owned()
}

fn meshlane_entry(node: &TestNode) -> Value {
    let conflist: Value =
        serde_json::from_slice(&fs::read(net_d(node).join("10-bridge.conflist")).unwrap()).unwrap();
    conflist["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == "meshlane")
        .cloned()
        .expect("the agent chained meshlane")
}

/// Where an app connection to `to` lands: "dest" directly, "proxy" when captured.
fn lands_at(app: &Place, to: &str) -> (String, Option<String>) {
    let reply = Connect::to(to).identity(Identity::APP).expect_reply(app);
    (reply.name, reply.original_dst)
}

/// An enrolled pod is captured both ways: its app's connect to `to` reaches the
/// proxy, which learns where it went; and a connection into the pod lands on the
/// running proxy's listener registered at enrollment (refused otherwise: fail
/// closed).
fn assert_captured_both_ways(node: &TestNode, web: &RunningPod, dest: &Pod, to: &str) {
    let (landed, original) = lands_at(&web.app(node), to);
    assert_eq!(landed, "proxy", "the app's connect is captured");
    assert_eq!(original.as_deref(), Some(to), "SO_ORIGINAL_DST");
    let inbound = Connect::to(format!("{}:{APP_PORT}", web.pod.ipv4()))
        .identity(Identity::APP)
        .expect_reply(&dest.place());
    assert_eq!(
        inbound.name, "proxy-inbound",
        "inbound steered to the proxy"
    );
}

/// What the API server lists for these pods.
fn pod_list(pods: &[&RunningPod]) -> Vec<Value> {
    pods.iter().map(|pod| pod.json.clone()).collect()
}

/// A destination outside the mesh, serving on APP_PORT, and `web`'s proxy
/// listeners (outbound on 127.0.0.1, inbound on 0.0.0.0), up before the agent
/// comes as a running pod's are: sockops never sees them being made.
struct Destination<'n> {
    dest: Pod<'n>,
    /// `dest`'s `ip:APP_PORT`.
    to: String,
    _servers: [ProbeServer; 3],
}

impl<'n> Destination<'n> {
    fn with_proxy(node: &'n TestNode, web: &RunningPod, (outbound, inbound): (u16, u16)) -> Self {
        let dest = node.add_pod("dest", PodOptions::new());
        let proxy = web.proxy(node);
        let _servers = [
            ProbeServer::start(&dest.place(), APP_PORT, "dest"),
            ProbeServer::original_dst(&proxy, "127.0.0.1", outbound, "proxy").start(),
            ProbeServer::original_dst(&proxy, "0.0.0.0", inbound, "proxy-inbound").start(),
        ];
        let to = format!("{}:{APP_PORT}", dest.ipv4());
        Destination { dest, to, _servers }
    }
}

// ------------------------------------------------------------------- tests

#[test]
fn running_pods_are_enrolled_once_and_released_by_the_runtimes_del() {
    let (node, cluster) = node_and_cluster("enroll");

    let web = RunningPod::start(&node, "web", Kind::Sidecar);
    let iptables = RunningPod::start(&node, "legacy", Kind::IstioInit);
    let plain = RunningPod::start(&node, "plain", Kind::Plain);
    let host = RunningPod::start(&node, "host", Kind::HostNetwork);
    // Listed, injected, but no process of it runs here (its sandbox is gone).
    let mut ghost = web.json.clone();
    ghost["metadata"]["name"] = json!("ghost");
    ghost["metadata"]["uid"] = json!("0b1c2d3e-0000-4000-8000-000000000001");
    ghost["status"]["podIPs"] = json!([{"ip": "10.255.255.1"}]);
    let mut listed = pod_list(&[&plain, &web, &iptables, &host]);
    listed.push(ghost);
    cluster.set_pods(listed);

    let Destination { dest, to, _servers } = Destination::with_proxy(&node, &web, (15001, 15006));
    // Before the agent: web runs uncaptured, as pods do when meshlane comes late.
    assert_eq!(lands_at(&web.app(&node), &to).0, "dest");

    let mut agent = start_agent(&node, &cluster);
    assert!(
        cluster.list_requests().len() >= 3,
        "the agent followed every page: {:?}",
        cluster.list_requests()
    );

    // web: enrolled under its sandbox's ID and the interface holding its IP.
    let enrolled = line_about(&agent, "enrolled a running pod", &web.id());
    let sandbox = web.pod.container_id();
    assert!(
        enrolled.contains(&format!("sandbox={sandbox}")),
        "{enrolled}"
    );
    assert!(enrolled.contains("ifname=eth0"), "{enrolled}");
    let cookie = web.cookie();
    let maps = node.maps();
    let record = maps.pod(cookie).unwrap().expect("web has a pod record");
    let key = AttachmentKey::new(sandbox, "eth0");
    let attachment = maps.attachment(&key).unwrap().expect("web's attachment");
    assert_eq!(attachment.netns_cookie, cookie);
    assert_eq!(attachment.ips, vec![IpAddr::V4(web.pod.ipv4())]);
    assert_eq!(
        (
            attachment.pod_namespace.as_str(),
            attachment.pod_name.as_str()
        ),
        (NAMESPACE, web.name.as_str())
    );
    assert!(maps.inbound_attached(cookie), "inbound steering linked");

    assert_captured_both_ways(&node, &web, &dest, &to);
    let enrolled_listeners = line_about(&agent, "enrolled a running pod", &web.id());
    assert!(
        enrolled_listeners.contains("proxy_listeners=1"),
        "{enrolled_listeners}"
    );

    // The others: left alone, each for its reason.
    for (pod, reason) in [
        (&iptables, "istio-init"),
        (&plain, "not captured: it has no istio-proxy container"),
        (&host, "hostNetwork"),
    ] {
        let line = line_about(&agent, "not enrolling a pod", &pod.id());
        assert!(line.contains(reason), "{line}");
    }
    let ghost = line_about(&agent, "not enrolling a pod", &format!("{NAMESPACE}/ghost"));
    assert!(
        ghost.contains("no process of it runs on this node"),
        "{ghost}"
    );
    for pod in [&iptables, &plain] {
        assert!(
            maps.pod(pod.cookie()).unwrap().is_none(),
            "{} enrolled",
            pod.id()
        );
    }
    let node_cookie = meshlane::netns::inspect(&node.layout().node_netns, false)
        .unwrap()
        .cookie;
    assert!(maps.pod(node_cookie).unwrap().is_none(), "the node's netns");
    assert_eq!(maps.pods().unwrap().len(), 1, "only web");
    assert_eq!(maps.attachments().unwrap().len(), 1, "only web");
    let (status, metrics) = agent.get("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.lines().any(|l| l == "meshlane_enrolled_pods 1"),
        "{metrics}"
    );

    // A restart enrolls nothing again and rewrites nothing: a mark put into
    // web's record survives it.
    let mut marked = record;
    marked.proxy_gid = 4242;
    maps.put_pod_record(cookie, &marked).unwrap();
    assert!(agent.terminate().success());
    let agent = start_agent(&node, &cluster);
    let again = line_about(&agent, "pod already captured; left as it is", &web.id());
    assert!(again.contains(&format!("netns_cookie={cookie}")), "{again}");
    assert!(
        agent.stderr.find("enrolled a running pod").is_none(),
        "{}",
        agent.stderr.text()
    );
    assert_eq!(
        maps.pod(cookie).unwrap().unwrap().proxy_gid,
        4242,
        "rewritten"
    );
    assert_eq!(maps.attachments().unwrap().len(), 1, "duplicated");
    maps.put_pod_record(cookie, &record).unwrap();

    // When the pod goes, the runtime's DEL (sandbox ID, eth0) through the
    // chain entry the agent wrote removes everything of it.
    let runner = node.chain();
    let env = runner.cni_env("DEL", Some(web.pod.runtime()));
    let mut conf = meshlane_entry(&node);
    conf["name"] = json!(runner.conflist.name);
    conf["cniVersion"] = json!(runner.conflist.cni_version);
    let del = node.run_meshlane(&env, conf.to_string());
    assert!(del.succeeded(), "{}", del.describe());
    assert_eq!(
        maps.entries_of(cookie).unwrap(),
        0,
        "records left after DEL"
    );
    assert!(maps.attachment(&key).unwrap().is_none());
    assert_eq!(lands_at(&web.app(&node), &to).0, "dest", "capture ended");
    drop(agent);
}

#[test]
fn the_plugin_kubeconfig_names_a_token_copy_that_follows_rotation() {
    let (node, cluster) = node_and_cluster("kubeconfig");
    let web = RunningPod::start(&node, "web", Kind::Sidecar);
    cluster.set_pods(pod_list(&[&web]));
    // No NODE_NAME: nothing is enrolled, the kubeconfig is written all the same.
    let mut agent = Agent::start(
        &node.layout().cgroup,
        &agent_args(&node, &cluster, None),
        &[],
    );
    agent.wait_for_log("NODE_NAME is not set");
    agent.wait_for_log("wrote the plugin's kubeconfig");

    let kubeconfig = kubeconfig_path(&node);
    let token_copy = PathBuf::from(format!("{}.token", kubeconfig.display()));
    for file in [&kubeconfig, &token_copy] {
        let mode = fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    let text = fs::read_to_string(&kubeconfig).unwrap();
    assert!(
        text.contains(&format!("tokenFile: {:?}", path_text(&token_copy))),
        "{text}"
    );
    assert!(
        !text.contains("token-1"),
        "the token itself is not inlined:\n{text}"
    );
    assert_eq!(fs::read_to_string(&token_copy).unwrap(), "token-1");
    // The chain entry names it for the plugin.
    agent.wait_for_log("chain entry added");
    assert_eq!(meshlane_entry(&node)["kubeconfig"], path_text(&kubeconfig));

    // The plugin's way in: the written kubeconfig reads the pod from the API.
    let access = KubeAccess::from_kubeconfig(&kubeconfig).unwrap();
    let policy = FetchPolicy::default();
    let pod = fetch_pod(&access, NAMESPACE, &web.name, &policy).unwrap();
    assert_eq!(pod.name, web.name);

    // The kubelet rotates the agent's token; the API server stops accepting
    // the old one. The copy follows within a re-check.
    cluster.rotate_token("token-2");
    let refreshed = || fs::read_to_string(&token_copy).unwrap() == "token-2";
    assert!(
        wait_until(WAIT, Duration::from_millis(100), refreshed),
        "token copy not refreshed:\n{}",
        agent.stderr.text()
    );
    agent.wait_for_log("copied the rotated service account token");
    assert_eq!(
        fetch_pod(&access, NAMESPACE, &web.name, &policy)
            .unwrap()
            .name,
        web.name,
        "the same kubeconfig works with the new token"
    );
    assert_eq!(
        fs::metadata(&token_copy).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(agent.terminate().success());

    // Uninstalling takes the credential off the node with everything else.
    let layout = node.layout();
    run_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_meshlane"))
            .arg("uninstall")
            .args(["--cni-bin-dir", &path_text(&layout.bin_dir)])
            .args(["--cni-conf-dir", &path_text(&net_d(&node))])
            .args(["--bpffs-root", &path_text(&layout.pin_root)])
            .args(["--kubeconfig", &path_text(&kubeconfig)]),
    );
    for file in [&kubeconfig, &token_copy] {
        assert!(!file.exists(), "{} left after uninstall", file.display());
    }
}

/// No pod before capture: the node's startup taint stays while the agent is
/// not ready (here: no primary CNI config yet), and goes — only it — once the
/// agent is, through strategic merge patches that name the resourceVersion
/// read, read again after each 409 (two other writers get there first).
#[test]
fn the_startup_taint_goes_once_the_agent_is_ready() {
    let node = node_without_meshlane("taint");
    let primary = net_d(&node).join("10-bridge.conflist");
    let primary_text = fs::read(&primary).unwrap();
    fs::remove_file(&primary).unwrap();
    let cluster = Cluster::start(&node.layout().work_dir, NODE_NAME, None);
    let other = json!({"key": "dedicated", "value": "mesh", "effect": "NoSchedule"});
    cluster.set_taints(json!([{"key": STARTUP_TAINT, "effect": "NoSchedule"}, other]));
    cluster.conflict_next_patches(2);
    // At debug level, the records of the libraries (rustls, ureq) come through
    // the agent's own stream too.
    let mut args = agent_args(&node, &cluster, Some(NODE_NAME));
    args.extend(["--log-level".to_owned(), "debug".to_owned()]);
    let mut agent = Agent::start(&node.layout().cgroup, &args, &[]);
    agent.wait_for_log("waiting for the primary CNI");
    // Two re-checks go by; not ready, so the taint stays and the Node is not
    // even read.
    thread::sleep(Duration::from_millis(2500));
    let (status, body) = agent.get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        cluster.node_requests().is_empty(),
        "{:?}",
        cluster.node_requests()
    );
    assert_eq!(cluster.node()["spec"]["taints"][0]["key"], STARTUP_TAINT);

    fs::write(&primary, primary_text).unwrap();
    let line = agent.wait_for_log("removed the startup taint");
    assert!(line.contains("conflicts=2"), "{line}");
    assert!(line.contains(&format!("node={NODE_NAME}")), "{line}");
    let library = agent.wait_for_log(" source=rustls");
    assert!(
        library.starts_with("ts=") && library.contains(" level=debug "),
        "{library}"
    );
    agent.wait_until_ready();
    assert_eq!(
        cluster.node()["spec"]["taints"],
        json!([other]),
        "only the startup taint goes"
    );
    let requests = cluster.node_requests();
    let patches: Vec<_> = requests.iter().filter(|(m, _)| m == "PATCH").collect();
    assert_eq!(patches.len(), 3, "{requests:?}");
    assert!(
        patches
            .iter()
            .all(|(_, ct)| ct.as_deref() == Some("application/strategic-merge-patch+json")),
        "{requests:?}"
    );
    assert_eq!(requests.iter().filter(|(m, _)| m == "GET").count(), 3);
    // Done once: later re-checks leave the Node alone.
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(cluster.node_requests().len(), requests.len());
    drop(agent);
}

/// While the primary config chains istio-cni (a cluster in the middle of
/// moving from it), running injected pods are istio-cni's: its iptables rules
/// capture them. The agent enrolls none of them, says why once, and enrolls
/// them when istio-cni's entry is gone.
#[test]
fn no_pod_is_enrolled_while_istio_cni_is_in_the_chain() {
    let node = node_without_meshlane("istio-cni");
    let primary = net_d(&node).join("10-bridge.conflist");
    let bridge_only = fs::read(&primary).unwrap();
    let mut with_istio: Value = serde_json::from_slice(&bridge_only).unwrap();
    with_istio["plugins"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "istio-cni"}));
    fs::write(&primary, serde_json::to_vec_pretty(&with_istio).unwrap()).unwrap();
    let cluster = Cluster::start(&node.layout().work_dir, NODE_NAME, None);
    let web = RunningPod::start(&node, "web", Kind::Sidecar);
    cluster.set_pods(pod_list(&[&web]));

    let mut agent = Agent::start(
        &node.layout().cgroup,
        &agent_args(&node, &cluster, Some(NODE_NAME)),
        &[],
    );
    let line = agent.wait_for_log("not enrolling running pods");
    assert!(line.contains("istio-cni"), "{line}");
    assert!(cluster.list_requests().is_empty(), "pods were listed");
    assert!(node.maps().pod(web.cookie()).unwrap().is_none());

    fs::write(&primary, &bridge_only).unwrap();
    agent.wait_for_log("enrollment round done");
    let enrolled = line_about(&agent, "enrolled a running pod", &web.id());
    assert!(enrolled.contains("ifname=eth0"), "{enrolled}");
    assert!(node.maps().pod(web.cookie()).unwrap().is_some());
    drop(agent);
}

/// After istio-cni is gone, the pods it set up keep its iptables rules until
/// they restart. The agent leaves them alone, saying so, whichever iptables
/// backend wrote the rules (nftables here through iptables-nft, as Istio does
/// on Debian 12; legacy x_tables too), and enrolls the others.
#[test]
fn pods_with_istio_iptables_rules_are_not_enrolled() {
    use common::istio_iptables::{apply, generate, SidecarSettings};

    let (node, cluster) = node_and_cluster("istio-rules");
    let nft = RunningPod::start(&node, "bynft", Kind::Sidecar);
    let legacy = RunningPod::start(&node, "bylegacy", Kind::Sidecar);
    let fresh = RunningPod::start(&node, "fresh", Kind::Sidecar);
    cluster.set_pods(pod_list(&[&nft, &legacy, &fresh]));
    let rules = generate(&SidecarSettings::default(), &[IpAddr::V4(nft.pod.ipv4())]).unwrap();
    apply(&nft.app(&node), &rules);
    for args in [
        &["-t", "nat", "-N", "ISTIO_REDIRECT"][..],
        &[
            "-t",
            "nat",
            "-A",
            "ISTIO_REDIRECT",
            "-p",
            "tcp",
            "-j",
            "REDIRECT",
            "--to-ports",
            "15001",
        ],
        &[
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-j",
            "ISTIO_REDIRECT",
        ],
    ] {
        let done = Spawn::new(&legacy.app(&node), "iptables-legacy")
            .args(args.iter().copied())
            .run();
        assert!(done.success(), "iptables-legacy {args:?}: {}", done.stderr);
    }

    let agent = start_agent(&node, &cluster);
    for pod in [&nft, &legacy] {
        let line = line_about(&agent, "not enrolling a pod", &pod.id());
        assert!(line.contains("Istio's iptables rules"), "{line}");
        assert!(line.contains("ISTIO_"), "{line}");
        assert!(node.maps().pod(pod.cookie()).unwrap().is_none(), "{line}");
    }
    let line = line_about(&agent, "not enrolling a pod", &legacy.id());
    assert!(line.contains("ISTIO_REDIRECT"), "{line}");
    line_about(&agent, "enrolled a running pod", &fresh.id());
    assert!(node.maps().pod(fresh.cookie()).unwrap().is_some());
    drop(agent);
}

/// The plugin's settings of the node's own meshlane entry, as the agent would
/// read them from its chain entry.
fn enroller_of(node: &TestNode) -> Enroller {
    let mut keys = node.meshlane_netconf("1.0.0").as_object().unwrap().clone();
    keys.retain(|key, _| KEYS.iter().any(|(name, _)| name == key));
    let config = PluginConfig::from_keys(&keys).unwrap();
    Enroller::new(config, NODE_NAME.to_owned(), PathBuf::from("/proc"))
}

/// The runtime deletes a running pod (CNI DEL: its interface and address are
/// gone, its sandbox not yet) while the agent enrolls it, between the
/// inspection of its netns and the write; the address then goes to a new pod.
/// The enrollment must write nothing, and the new pod's ADD must succeed.
/// Before the enrollment checked again under the lock, it wrote the address
/// for the deleted pod's still-live netns, and the new pod's ADD failed (code 7).
#[test]
fn an_enrollment_racing_the_pods_del_and_its_address_reuse_writes_nothing() {
    let node = TestNode::new("enroll-race");
    let cluster = Cluster::start(&node.layout().work_dir, NODE_NAME, None);
    // A captured pod's ADD loads the node's programs, as on any node.
    let _captured = node.add_pod("first", PodOptions::new().injected());
    // Started without capture (it is not injected as the runtime tells
    // meshlane), but the API server lists it as injected: to be enrolled.
    let mut old = RunningPod::start(&node, "old", Kind::Sidecar);
    cluster.set_pods(pod_list(&[&old]));
    let address = old.pod.ipv4();
    let access = KubeAccess::in_cluster(&cluster.server.url(), &cluster.account_dir).unwrap();

    let mut enroller = enroller_of(&node);
    let (paused, at_pause) = mpsc::channel::<String>();
    let (resume, resumed) = mpsc::channel::<()>();
    enroller.pause_before_lock(move |pod| {
        paused.send(pod.id()).unwrap();
        resumed.recv().unwrap();
    });
    let report = thread::scope(|scope| {
        let round = scope.spawn(|| enroller.round(&access));
        let pod = at_pause.recv_timeout(WAIT).expect("the enrollment pauses");
        assert_eq!(pod, old.id());
        // The runtime's DEL: the bridge plugin takes the pod's interface and
        // releases its address; the sandbox's processes still run.
        old.pod.del().expect_success();
        resume.send(()).unwrap();
        round.join().unwrap().unwrap()
    });
    assert_eq!(
        (report.enrolled, report.skipped),
        (0, 1),
        "the deleted pod must not be enrolled: {report:?}"
    );
    let maps = node.maps();
    assert_eq!(maps.entries_of(old.cookie()).unwrap(), 0);
    assert_eq!(maps.address_owner(IpAddr::V4(address)).unwrap(), None);

    // The address goes to a new captured pod.
    let new = node.add_pod(
        "new",
        PodOptions::new()
            .namespace(NAMESPACE)
            .injected()
            .cni_arg("IP", &address.to_string()),
    );
    assert_eq!(new.ipv4(), address);
    assert_eq!(
        maps.address_owner(IpAddr::V4(address)).unwrap(),
        Some(new.netns_cookie())
    );
}

/// Issue 15, item 4: an agent configured for another mesh (`--mesh`) enrolls a
/// running pod of that mesh with its proxy's settings (docs/meshes.md) — the
/// proxy's listeners already up, registered at enrollment — and leaves an Istio
/// pod alone as another mesh's, for `skipped` (the reason logged).
fn an_agent_for_another_mesh_enrolls_its_running_pod(
    (mesh, kind): (&str, Kind),
    (uid, outbound, inbound): (u32, u16, u16),
    skipped: &str,
) {
    let (node, cluster) = node_and_cluster(&format!("enroll-{mesh}"));
    let web = RunningPod::start(&node, "web", kind);
    let istio = RunningPod::start(&node, "istio", Kind::Sidecar);
    cluster.set_pods(pod_list(&[&web, &istio]));
    let Destination { dest, to, _servers } =
        Destination::with_proxy(&node, &web, (outbound, inbound));
    assert_eq!(lands_at(&web.app(&node), &to).0, "dest");

    let mut args = agent_args(&node, &cluster, Some(NODE_NAME));
    args.extend(["--mesh".to_owned(), mesh.to_owned()]);
    let mut agent = Agent::start(&node.layout().cgroup, &args, &[]);
    agent.wait_for_log("enrollment round done");

    let enrolled = line_about(&agent, "enrolled a running pod", &web.id());
    assert!(enrolled.contains("proxy_listeners=1"), "{enrolled}");
    let maps = node.maps();
    let record = maps
        .pod(web.cookie())
        .unwrap()
        .expect("web has a pod record");
    assert_eq!(
        (record.proxy_uid, record.outbound_port, record.inbound_port),
        (uid, outbound, inbound)
    );
    let rules = match kind {
        Kind::Kuma => ml_pod_flag::ML_POD_KUMA_RULES,
        _ => ml_pod_flag::ML_POD_LINKERD_RULES,
    };
    assert_ne!(record.flags & rules.0, 0);
    assert_captured_both_ways(&node, &web, &dest, &to);

    let line = line_about(&agent, "not enrolling a pod", &istio.id());
    assert!(line.contains(skipped), "{line}");
    assert!(maps.pod(istio.cookie()).unwrap().is_none(), "{line}");
}

crate::test_cases!(an_agent_for_another_mesh_enrolls_its_running_pod {
    an_agent_for_kuma_enrolls_a_running_kuma_pod_with_kumas_settings: (
        ("kuma", Kind::Kuma),
        (5678, 15001, 15006),
        "not captured: it has no kuma-sidecar container",
    );
    an_agent_for_linkerd_enrolls_a_running_linkerd_pod_with_linkerds_settings: (
        ("linkerd", Kind::Linkerd),
        (2102, 4140, 4143),
        "not captured: it has no linkerd-proxy container",
    );
});
