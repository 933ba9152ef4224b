//! Pods: a network namespace per pod (`ip netns add`, so CNI_NETNS is
//! /run/netns/<name> as with a runtime) wired up by the node's chain.

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use meshlane::datapath::AttachmentKey;
use serde_json::{Map, Value};

use super::chain::{ChainOutput, RuntimeConf, POD_ANNOTATIONS_CAPABILITY};
use super::envoy::{Envoy, EnvoyOptions};
use super::names;
use super::netns::{self, NamedNetns};
use super::node::TestNode;
use super::process::{Place, Spawn};
use super::timing::poll_until;

/// `sidecar.istio.io/status` as Istio's injector writes it with the CNI plugin
/// enabled (istio-validation instead of istio-init).
pub const INJECTED_STATUS: &str = r#"{"initContainers":["istio-validation"],"containers":["istio-proxy"],"volumes":["workload-socket","credential-socket","workload-certs","istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert"],"imagePullSecrets":null,"templates":["sidecar"],"revision":"default"}"#;

/// What the runtime knows about a pod besides its name.
#[derive(Debug, Clone)]
pub struct PodOptions {
    pub namespace: String,
    /// Passed as the `io.kubernetes.cri.pod-annotations` capability (containerd and
    /// CRI-O always pass the pod's annotations to plugins that declare it; for a
    /// pod without any, containerd 1.6 passes `null`, and so does this harness).
    pub annotations: BTreeMap<String, String>,
    /// Leave the annotations key out of runtimeConfig, as a runtime without the
    /// capability does.
    pub runtime_lacks_annotations: bool,
    /// CNI_ARGS pairs after the Kubernetes ones.
    pub extra_cni_args: Vec<(String, String)>,
    /// Other capability args (portMappings, …).
    pub capability_args: Map<String, Value>,
    pub ifname: String,
}

impl Default for PodOptions {
    fn default() -> Self {
        PodOptions {
            namespace: "default".to_string(),
            annotations: BTreeMap::new(),
            runtime_lacks_annotations: false,
            extra_cni_args: Vec::new(),
            capability_args: Map::new(),
            ifname: "eth0".to_string(),
        }
    }
}

impl PodOptions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_string();
        self
    }

    /// A pod Istio's injector has processed (sidecar template): what the
    /// `sidecar.istio.io/status` annotation of an injected pod says, so that
    /// meshlane's Istio selection captures it.
    pub fn injected(self) -> Self {
        self.annotation("sidecar.istio.io/status", INJECTED_STATUS)
    }

    /// What Kuma's injector writes on a pod in CNI mode (docs/meshes.md, K5).
    pub fn kuma_injected(self) -> Self {
        use super::kuma_iptables::{CNI_NETWORKS, SIDECAR_INJECTED};
        self.annotation(SIDECAR_INJECTED, "true")
            .annotation(CNI_NETWORKS, "kuma-cni")
    }

    /// What Linkerd's injector writes on every pod it injected; whether the pod
    /// is Linkerd's in CNI mode is read from the API (`linkerd_node`).
    pub fn linkerd_injected(self) -> Self {
        self.annotation(super::linkerd_node::PROXY_VERSION, "edge-26.8.3")
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }

    /// Passes no annotations key at all (a runtime without the capability).
    pub fn runtime_lacks_annotations(mut self) -> Self {
        self.runtime_lacks_annotations = true;
        self
    }

    pub fn cni_arg(mut self, key: &str, value: &str) -> Self {
        self.extra_cni_args
            .push((key.to_string(), value.to_string()));
        self
    }

    pub fn capability(mut self, key: &str, value: Value) -> Self {
        self.capability_args.insert(key.to_string(), value);
        self
    }

    pub fn ifname(mut self, ifname: &str) -> Self {
        self.ifname = ifname.to_string();
        self
    }
}

/// A pod on a [`TestNode`]. Dropping it deletes its netns, without a CNI DEL (the
/// node's cleanup does not depend on the code under test).
#[derive(Debug)]
pub struct Pod<'n> {
    node: &'n TestNode,
    name: String,
    namespace: String,
    uid: String,
    netns: NamedNetns,
    runtime: RuntimeConf,
    add_output: ChainOutput,
    /// What a runtime caches after ADD; cleared by a successful DEL.
    cached_result: Option<Value>,
    addresses: Vec<(IpAddr, u8)>,
}

impl TestNode {
    /// Creates the pod netns and runs the chain ADD; panics with every plugin's
    /// output if the ADD fails.
    pub fn add_pod(&self, name: &str, options: PodOptions) -> Pod<'_> {
        let pod = self.try_add_pod(name, options);
        assert!(
            pod.add_output.succeeded(),
            "ADD of pod {name} failed: {}",
            pod.add_output.describe()
        );
        pod
    }

    /// Like `add_pod`, but a failed ADD is returned (see `Pod::add_output`) instead
    /// of panicking; the pod can then be DELeted as a runtime would.
    pub fn try_add_pod(&self, name: &str, options: PodOptions) -> Pod<'_> {
        names::check_pod_name(name);
        let netns = NamedNetns::create(&self.layout().id.netns_name(name))
            .unwrap_or_else(|err| panic!("create netns of pod {name}: {err}"));
        let number = self.next_pod_number();
        let container_id = random_hex(64);
        let uid = uuid_like();
        let mut args = vec![
            ("IgnoreUnknown".to_string(), "1".to_string()),
            ("K8S_POD_NAMESPACE".to_string(), options.namespace.clone()),
            ("K8S_POD_NAME".to_string(), format!("{name}-{number}")),
            (
                "K8S_POD_INFRA_CONTAINER_ID".to_string(),
                container_id.clone(),
            ),
            ("K8S_POD_UID".to_string(), uid.clone()),
        ];
        args.extend(options.extra_cni_args);
        let mut capability_args = options.capability_args;
        if !options.runtime_lacks_annotations {
            // containerd marshals a pod's nil annotation map as null.
            let annotations = if options.annotations.is_empty() {
                Value::Null
            } else {
                Value::Object(
                    options
                        .annotations
                        .into_iter()
                        .map(|(k, v)| (k, Value::from(v)))
                        .collect(),
                )
            };
            capability_args.insert(POD_ANNOTATIONS_CAPABILITY.to_string(), annotations);
        }
        let runtime = RuntimeConf {
            container_id,
            netns: Some(netns.path().to_path_buf()),
            ifname: options.ifname,
            args,
            capability_args,
        };
        let add_output = self.chain().add(&runtime);
        let addresses: Vec<(IpAddr, u8)> = add_output
            .result
            .as_ref()
            .map(result_addresses)
            .unwrap_or_default();
        if addresses.iter().any(|(ip, _)| ip.is_ipv6()) {
            // A fresh IPv6 address is "tentative" until duplicate address
            // detection ends (about a second): packets to it are dropped, and a
            // test's first connect would time out. Kubernetes pods wait the same.
            wait_for_dad(netns.path(), &format!("pod {name}"));
            wait_for_dad(&self.layout().node_netns, "the node");
        }
        Pod {
            node: self,
            name: name.to_string(),
            namespace: options.namespace,
            uid,
            netns,
            cached_result: add_output.result.clone(),
            add_output,
            runtime,
            addresses,
        }
    }
}

/// Waits until no IPv6 address in the netns is tentative (DAD done).
fn wait_for_dad(netns: &Path, what: &str) {
    let waiting = format!("IPv6 addresses of {what} still tentative");
    poll_until(&waiting, Duration::from_secs(10), || {
        let shown = std::process::Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["ip", "-6", "addr", "show", "tentative"])
            .output()
            .unwrap_or_else(|err| panic!("nsenter ip for {what}: {err}"));
        let tentative = String::from_utf8_lossy(&shown.stdout);
        if shown.status.success() && !tentative.contains("inet6") {
            Ok(())
        } else {
            Err(tentative.into_owned())
        }
    })
}

impl Pod<'_> {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// K8S_POD_UID.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    pub fn container_id(&self) -> &str {
        &self.runtime.container_id
    }

    /// The key meshlane's attachment record of this pod has (container ID, ifname).
    pub fn attachment_key(&self) -> AttachmentKey {
        AttachmentKey::new(&self.runtime.container_id, &self.runtime.ifname)
    }

    pub fn netns_name(&self) -> &str {
        self.netns.name()
    }

    /// `/run/netns/<name>` (CNI_NETNS).
    pub fn netns_path(&self) -> &Path {
        self.netns.path()
    }

    /// The netns cookie meshlane keys the pod's records by (what its ADD reads).
    pub fn netns_cookie(&self) -> u64 {
        meshlane::netns::inspect(self.netns_path(), false)
            .expect("the pod netns exists")
            .cookie
    }

    /// The attachment as the runtime describes it to plugins.
    pub fn runtime(&self) -> &RuntimeConf {
        &self.runtime
    }

    /// The chain ADD, step by step.
    pub fn add_output(&self) -> &ChainOutput {
        &self.add_output
    }

    /// What meshlane's step of this pod's failed chain ADD printed: its CNI
    /// error's code and message. Fails the test when the ADD succeeded or another
    /// plugin of the chain failed.
    pub fn meshlane_add_error(&self) -> (u64, String) {
        let output = self.add_output();
        let step = output
            .failed_step()
            .unwrap_or_else(|| panic!("the ADD was expected to fail: {}", output.describe()));
        assert_eq!(step.plugin, "meshlane", "{}", output.describe());
        let error = step.error().expect("meshlane printed a CNI error JSON");
        (error.code, error.msg)
    }

    /// The cached ADD result (None after a successful DEL or a failed ADD).
    pub fn result(&self) -> Option<&Value> {
        self.cached_result.as_ref()
    }

    /// The pod's addresses from the ADD result, with prefix lengths.
    pub fn addresses(&self) -> &[(IpAddr, u8)] {
        &self.addresses
    }

    pub fn ipv4(&self) -> Ipv4Addr {
        self.first_address("IPv4", |ip| match ip {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        })
    }

    pub fn ipv6(&self) -> Ipv6Addr {
        self.first_address("IPv6", |ip| match ip {
            IpAddr::V6(v6) => Some(*v6),
            IpAddr::V4(_) => None,
        })
    }

    /// The first address of the ADD result that `pick` takes.
    fn first_address<T>(&self, family: &str, pick: impl Fn(&IpAddr) -> Option<T>) -> T {
        self.addresses
            .iter()
            .find_map(|(ip, _)| pick(ip))
            .unwrap_or_else(|| panic!("pod {} has no {family} address", self.name))
    }

    /// Where this pod's processes run: its netns, the hooked cgroup.
    pub fn place(&self) -> Place {
        Place {
            label: self.name.clone(),
            netns: self.netns.path().to_path_buf(),
            cgroup: self.node.layout().cgroup.clone(),
            work_dir: self.node.layout().work_dir.clone(),
        }
    }

    /// A command to run in this pod (root unless `.identity(…)` says otherwise).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Spawn {
        Spawn::new(&self.place(), program)
    }

    /// Starts an Envoy sidecar in this pod and waits until it is ready.
    pub fn start_envoy(&self, options: EnvoyOptions) -> Envoy {
        Envoy::start(&self.place(), options)
    }

    /// Sets a sysctl of the pod's netns (`sysctl -qw key=value` inside it).
    pub fn sysctl(&self, key: &str, value: &str) {
        let set = std::process::Command::new("nsenter")
            .arg(format!("--net={}", self.netns_path().display()))
            .args(["sysctl", "-qw", &format!("{key}={value}")])
            .status()
            .expect("nsenter sysctl");
        assert!(set.success(), "sysctl {key}={value} in pod {}", self.name);
    }

    /// Runs `ip <args>` inside the pod netns.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.netns.name()];
        full.extend_from_slice(args);
        netns::run_ip(&full).unwrap_or_else(|err| panic!("{err}"))
    }

    /// Chain CHECK with the cached result; panics unless every plugin succeeds.
    pub fn check(&self) -> ChainOutput {
        self.try_check().expect_success()
    }

    pub fn try_check(&self) -> ChainOutput {
        let cached = self
            .cached_result
            .as_ref()
            .unwrap_or_else(|| panic!("CHECK of pod {}: no cached ADD result", self.name));
        self.node.chain().check(&self.runtime, cached)
    }

    /// Chain DEL (reverse order, cached result as prevResult); panics unless every
    /// plugin succeeds. May be repeated: later DELs run without a cached result,
    /// as with libcni.
    pub fn del(&mut self) -> ChainOutput {
        self.try_del().expect_success()
    }

    pub fn try_del(&mut self) -> ChainOutput {
        let mut runtime = self.runtime.clone();
        if self.netns.is_deleted() {
            runtime.netns = None;
        }
        let output = self.node.chain().del(&runtime, self.cached_result.as_ref());
        if output.succeeded() {
            self.cached_result = None;
        }
        output
    }

    /// Deletes the netns but keeps the pod, to test DEL after the netns is gone
    /// (later DELs then run without CNI_NETNS).
    pub fn remove_netns(&mut self) {
        self.netns
            .delete()
            .unwrap_or_else(|err| panic!("delete netns of pod {}: {err}", self.name));
    }
}

/// `ips[].address` of a CNI result ("10.1.2.3/24").
fn result_addresses(result: &Value) -> Vec<(IpAddr, u8)> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| {
            let (addr, prefix) = ip["address"].as_str()?.split_once('/')?;
            Some((addr.parse().ok()?, prefix.parse().ok()?))
        })
        .collect()
}

fn random_u64() -> u64 {
    // RandomState is seeded randomly per instance: enough for unique test IDs.
    RandomState::new().build_hasher().finish()
}

fn random_hex(len: usize) -> String {
    let mut out = String::new();
    while out.len() < len {
        out.push_str(&format!("{:016x}", random_u64()));
    }
    out.truncate(len);
    out
}

/// A random ID in the form of a Kubernetes UID.
pub fn uuid_like() -> String {
    let hex = random_hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
