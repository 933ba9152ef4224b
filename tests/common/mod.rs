//! The integration-test harness shared by every privileged test (`mod common;`).
//!
//! A [`TestNode`] is a private little Kubernetes node: its own netns where the CNI
//! chain (bridge → meshlane) runs libcni-style, a hooked child cgroup, a private
//! bpffs, a temp dir. Pods are netns wired up by the chain; processes (probes, a
//! real Envoy sidecar) run inside a pod's netns and the hooked cgroup as a chosen
//! user. Everything carries the test process's PID and is removed on drop; a sweep
//! at start removes what crashed runs left.
//!
//! ```text
//! mod common;
//! use common::{Connect, EnvoyOptions, Identity, PodOptions, ProbeServer, TestNode};
//!
//! #[test]
//! fn app_in_a_reaches_b_through_its_sidecar() {
//!     let node = TestNode::new("example"); // bridge → meshlane, IPv4
//!     let a = node.add_pod("a", PodOptions::new().injected()); // Istio gave it a sidecar
//!     let b = node.add_pod("b", PodOptions::new());
//!     let envoy = a.start_envoy(EnvoyOptions::new());
//!     let _server = ProbeServer::start(&b.place(), 8080, "b");
//!     let reply = Connect::to(format!("{}:8080", b.ipv4()))
//!         .identity(Identity::APP)
//!         .expect_reply(&a.place());
//!     assert_eq!(reply.name, "b");
//!     let log = envoy.wait_for_access_log(1, std::time::Duration::from_secs(5));
//!     assert_eq!(log[0].listener, "virtualOutbound");
//! }
//! ```
//! meshlane's entry always gets `bpffsRoot`, `cgroupPath` and `logFile` inside the
//! node (see `node.rs`), so it never touches the machine's root cgroup or /sys/fs/bpf.
//! What meshlane recorded is read back through the same objects: `node.maps()`,
//! `node.counter(name)`, `pod.netns_cookie()` (the key of the pod's records).

// Each test binary compiles this module and uses only part of it; unused helpers
// would otherwise warn in every binary that does not need them.
#![allow(dead_code)]

pub mod agent;
pub mod api_server;
pub mod bpffs;
pub mod c_tool;
pub mod cases;
pub mod cgroup;
pub mod chain;
pub mod conflist;
pub mod connect_variants;
pub mod cri_node;
pub mod dns_server;
pub mod envoy;
pub mod envoy_config;
pub mod exec;
pub mod held;
pub mod http_get;
pub mod istio_iptables;
pub mod kernel;
pub mod kube_cluster;
pub mod kuma_iptables;
pub mod landing;
pub mod linkerd_iptables;
pub mod linkerd_node;
pub mod mountinfo;
pub mod names;
pub mod netns;
pub mod node;
pub mod origdst_load;
pub mod pod;
pub mod prereq;
pub mod probe;
pub mod process;
pub mod script;
pub mod sweep;
pub mod timing;
pub mod tmpdir;
pub mod variant;

// The short paths test authors use; each binary uses only some of them.
#[allow(unused_imports)]
pub use chain::{ChainOutput, Conflist, PluginOutput, RuntimeConf, POD_ANNOTATIONS_CAPABILITY};
#[allow(unused_imports)]
pub use envoy::{AccessLogEntry, Envoy, EnvoyOptions};
#[allow(unused_imports)]
pub use node::{NodeLayout, TestNode, TestNodeBuilder};
#[allow(unused_imports)]
pub use pod::{Pod, PodOptions};
#[allow(unused_imports)]
pub use prereq::require_root;
#[allow(unused_imports)]
pub use probe::{Connect, ConnectOutcome, Family, ProbeServer, ServerReply};
#[allow(unused_imports)]
pub use process::{Identity, Place, Spawn, TestProcess};
