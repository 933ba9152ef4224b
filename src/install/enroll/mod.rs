//! Enrolling pods that already run on the node. The plugin captures a pod at
//! its CNI ADD; a pod whose ADD ran before meshlane was in the chain (meshlane
//! installed on a running cluster, or a moment when the primary CNI had
//! rewritten its config without meshlane's entry) runs uncaptured. The agent
//! lists its node's pods, applies the plugin's own decision, finds each pod's
//! network namespace and sandbox in the host's `/proc`, and writes the same
//! records ADD writes (see `plugin::setup`). Pods meshlane already has a record
//! of are never touched.

mod held_netns;
mod istio_rules;
mod listeners;
mod procfs;
mod rules;
mod sandbox;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::cni::CniError;
use crate::datapath::attachment::UNKNOWN_SANDBOX_PREFIX;
use crate::datapath::lock::RootLock;
use crate::datapath::{AttachmentKey, DatapathError, PinLayout, PodMaps};
use crate::kube::{list_node_pods, FetchPolicy, KubeAccess, KubeError, NodePod};
use crate::netns;
use crate::plugin::config::PluginConfig;
use crate::plugin::pod_ips::ClaimedIps;
use crate::plugin::setup::{self, Owner};

use crate::log::{emit, error, info, warn, Level};
use held_netns::HeldNetns;
use procfs::PodProcess;
use rules::Verdict;
use sandbox::Sandbox;

/// The interface name when no interface holds the pod's IP (never expected).
const DEFAULT_IFNAME: &str = "eth0";

/// A round runs in the agent's loop: each page may take this long, so that an
/// unreachable API server holds the loop for seconds, not minutes.
const LIST_POLICY: FetchPolicy = FetchPolicy {
    timeout: std::time::Duration::from_secs(5),
    attempts: 2,
    backoff: std::time::Duration::from_millis(500),
};

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("listing the pods of node {node}: {source}")]
    List { node: String, source: KubeError },
    #[error("opening the pinned maps (are the node programs loaded?): {0}")]
    Maps(#[from] DatapathError),
}

/// How one round went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub enrolled: usize,
    pub already: usize,
    pub skipped: usize,
    pub failed: usize,
}

enum Outcome {
    Enrolled {
        cookie: u64,
        sandbox: Sandbox,
        key: AttachmentKey,
        description: String,
        /// The proxy's inbound listeners registered (see `listeners`).
        listeners: Result<usize, String>,
    },
    Already(u64),
    Skipped(String),
    Failed(String),
}

impl Outcome {
    /// What is remembered of it, to log each pod's state once.
    fn summary(&self) -> String {
        match self {
            Outcome::Enrolled { cookie, .. } => format!("enrolled: {cookie}"),
            Outcome::Already(cookie) => format!("already captured: {cookie}"),
            Outcome::Skipped(reason) => format!("skipped: {reason}"),
            Outcome::Failed(problem) => format!("failed: {problem}"),
        }
    }
}

pub struct Enroller {
    config: PluginConfig,
    layout: PinLayout,
    node: String,
    proc_root: PathBuf,
    /// What was last logged per pod UID: each pod's skip reason is logged
    /// when it first shows or changes, not at every round.
    reported: BTreeMap<String, String>,
    /// See [`Enroller::pause_before_lock`].
    before_lock: Option<PauseHook>,
}

/// Called with a pod once its netns is inspected, before the lock is taken.
type PauseHook = Box<dyn Fn(&NodePod) + Send>;

impl Enroller {
    pub fn new(config: PluginConfig, node: String, proc_root: PathBuf) -> Self {
        Enroller {
            layout: PinLayout::new(&config.pin_root),
            config,
            node,
            proc_root,
            reported: BTreeMap::new(),
            before_lock: None,
        }
    }

    /// Runs `hook` in each enrollment between the inspection of the pod's netns
    /// and the lock under which its records are written: the window in which
    /// the runtime may delete the pod and give its address to another. Tests
    /// use it to put a DEL in that window deterministically; the agent never
    /// sets it.
    pub fn pause_before_lock(&mut self, hook: impl Fn(&NodePod) + Send + 'static) {
        self.before_lock = Some(Box::new(hook));
    }

    /// Lists the node's pods and enrolls the ones that should be captured and
    /// are not. One pod's failure does not stop the others.
    pub fn round(&mut self, access: &KubeAccess) -> Result<RoundReport, EnrollError> {
        let maps = PodMaps::open(&self.layout)?;
        let listed = list_node_pods(access, &self.node, &LIST_POLICY).map_err(|source| {
            EnrollError::List {
                node: self.node.clone(),
                source,
            }
        })?;
        let processes = procfs::pod_processes(&self.proc_root);
        let node_netns = self.node_netns();
        let mut report = RoundReport::default();
        let mut seen = BTreeSet::new();
        for item in listed {
            let pod = match item {
                Ok(pod) => pod,
                Err(err) => {
                    report.failed += 1;
                    warn("cannot read a pod of this node", &[("error", &err)]);
                    continue;
                }
            };
            seen.insert(pod.uid.clone());
            let owned = processes
                .get(&pod.uid.to_ascii_lowercase())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let outcome = self.enroll(&maps, &pod, owned, &node_netns);
            self.log(&pod, &outcome, &mut report);
        }
        self.reported.retain(|uid, _| seen.contains(uid));
        Ok(report)
    }

    /// The node's own network namespace, as this process and as PID 1 see it:
    /// a record there would capture the node, never a pod.
    fn node_netns(&self) -> Vec<(u64, u64)> {
        [
            PathBuf::from("/proc/self/ns/net"),
            self.proc_root.join("1/ns/net"),
        ]
        .iter()
        .filter_map(|path| netns_id(path))
        .collect()
    }

    fn enroll(
        &self,
        maps: &PodMaps,
        pod: &NodePod,
        processes: &[PodProcess],
        node_netns: &[(u64, u64)],
    ) -> Outcome {
        match rules::judge(pod, &self.config) {
            Verdict::Enroll => {}
            Verdict::Skip(reason) => return Outcome::Skipped(reason),
            Verdict::Unclassified(problem) => return Outcome::Failed(problem),
        }
        let Some(sandbox) = sandbox::find_sandbox(processes, &pod.container_ids) else {
            return Outcome::Skipped(
                "no process of it runs on this node (its sandbox is not up yet)".to_owned(),
            );
        };
        let proc_path = self
            .proc_root
            .join(sandbox.pid().to_string())
            .join("ns/net");
        // Held until the records are written: every step sees this namespace,
        // whatever happens to the PID meanwhile.
        let Ok(netns) = HeldNetns::open(&proc_path) else {
            return Outcome::Skipped("its processes exited meanwhile".to_owned());
        };
        match netns.id() {
            Err(_) => return Outcome::Skipped("its processes exited meanwhile".to_owned()),
            Ok(id) if node_netns.contains(&id) => {
                return Outcome::Skipped("it runs in the node's network namespace".to_owned())
            }
            Ok(_) => {}
        }
        match self.write(maps, pod, &sandbox, processes, &netns) {
            Ok(outcome) => outcome,
            Err(err) => {
                Outcome::Failed(format!("{err} (opened as {})", netns.opened_at().display()))
            }
        }
    }

    fn write(
        &self,
        maps: &PodMaps,
        pod: &NodePod,
        sandbox: &Sandbox,
        processes: &[PodProcess],
        netns: &HeldNetns,
    ) -> Result<Outcome, CniError> {
        let netns_path = &netns.path();
        let facts = netns::inspect(netns_path, false)?;
        if maps.pod(facts.cookie)?.is_some() {
            return Ok(Outcome::Already(facts.cookie));
        }
        // A pod istio-cni set up before it was replaced: its own rules
        // capture it already.
        let chains = match istio_rules::istio_chains(netns_path) {
            Ok(chains) => chains,
            Err(err) => {
                let problem =
                    format!("cannot tell whether Istio's iptables rules capture it: {err}");
                return Ok(Outcome::Failed(problem));
            }
        };
        if !chains.is_empty() {
            return Ok(Outcome::Skipped(format!(
                "Istio's iptables rules capture it already ({}); {}",
                chains.join(","),
                "restart it to move it to meshlane"
            )));
        }
        let ifname = facts
            .interface_addresses
            .iter()
            .find(|(_, ip)| pod.ips.contains(ip))
            .map_or(DEFAULT_IFNAME, |(name, _)| name.as_str());
        let prepared = setup::prepare(
            &self.config,
            &pod.meta,
            netns_path,
            ClaimedIps::PodStatus(&pod.ips),
        )?;
        if let Some(hook) = &self.before_lock {
            hook(pod);
        }
        // ADD and DEL take the same lock: a pod the plugin is adding right now
        // is written once, by whoever comes first.
        let _lock = RootLock::exclusive(self.layout.root())?;
        let cookie = prepared.cookie;
        if maps.pod(cookie)?.is_some() {
            return Ok(Outcome::Already(cookie));
        }
        // What was inspected may be stale: the runtime may have deleted the pod
        // (its addresses released, maybe given to another pod) since.
        if let Some(reason) = changed_meanwhile(netns_path, cookie, &prepared.ips)? {
            return Ok(Outcome::Skipped(reason));
        }
        let container_id = match sandbox {
            Sandbox::Known { id, .. } => id.clone(),
            // No runtime will name this at DEL; GC removes it once the netns is gone.
            Sandbox::Unknown { .. } => format!("{UNKNOWN_SANDBOX_PREFIX}{cookie}"),
        };
        let key = AttachmentKey::new(&container_id, ifname);
        let owner = Owner {
            key: key.clone(),
            pod_namespace: pod.meta.namespace.clone(),
            pod_name: pod.meta.name.clone(),
        };
        let description = setup::write(maps, prepared, owner)?;
        // The proxy listens already: sockops will never see its listeners
        // being made, so they are registered from here.
        let listeners = match maps.pod_summary(cookie) {
            Ok(Some(record)) => listeners::adopt_listeners(
                &self.layout,
                cookie,
                &record,
                processes,
                &self.proc_root,
            ),
            Ok(None) => Ok(0),
            Err(err) => Err(err.to_string()),
        };
        Ok(Outcome::Enrolled {
            cookie,
            sandbox: sandbox.clone(),
            key,
            description,
            listeners,
        })
    }

    fn log(&mut self, pod: &NodePod, outcome: &Outcome, report: &mut RoundReport) {
        let id = pod.id();
        let summary = outcome.summary();
        let first_time = self.reported.get(&pod.uid) != Some(&summary);
        self.reported.insert(pod.uid.clone(), summary);
        let (level, message, field): (Level, &str, (&str, &dyn std::fmt::Display)) = match outcome {
            Outcome::Enrolled {
                cookie,
                sandbox,
                key,
                description,
                listeners,
            } => {
                report.enrolled += 1;
                let adopted = listeners.clone().unwrap_or_default();
                info(
                    "enrolled a running pod",
                    &[
                        ("pod", &id),
                        ("netns_cookie", cookie),
                        ("sandbox", &key.container_id),
                        ("ifname", &key.ifname),
                        ("capture", description),
                        ("proxy_listeners", &adopted),
                    ],
                );
                if let Err(problem) = listeners {
                    error(
                        "cannot register the running proxy's inbound listeners: inbound \
                         connections are refused until the proxy restarts",
                        &[("pod", &id), ("error", problem)],
                    );
                }
                if let Sandbox::Unknown { reason, .. } = sandbox {
                    warn(
                        "the pod's sandbox ID is unknown: its attachment is keyed by its netns \
                         cookie, so the runtime's DEL will not remove it (a CNI GC will, once \
                         the netns is gone)",
                        &[("pod", &id), ("reason", reason)],
                    );
                }
                return;
            }
            // The others: counted each round, logged when the outcome changes.
            Outcome::Already(cookie) => {
                report.already += 1;
                let message = "pod already captured; left as it is";
                (Level::Info, message, ("netns_cookie", cookie))
            }
            Outcome::Skipped(reason) => {
                report.skipped += 1;
                (Level::Info, "not enrolling a pod", ("reason", reason))
            }
            Outcome::Failed(problem) => {
                report.failed += 1;
                let message = "cannot enroll a pod that should be captured";
                (Level::Error, message, ("error", problem))
            }
        };
        if first_time {
            emit(level, message, &[("pod", &id), field]);
        }
    }
}

/// Why the pod's netns, read again under the lock, no longer is what was
/// inspected; `None` when it still is. An address another live pod was given
/// meanwhile is refused by the write itself (`PodMaps::write_pod`).
fn changed_meanwhile(
    netns_path: &Path,
    cookie: u64,
    ips: &[IpAddr],
) -> Result<Option<String>, CniError> {
    let facts = netns::inspect(netns_path, false)?;
    if facts.cookie != cookie {
        return Ok(Some(format!(
            "its network namespace changed meanwhile (netns cookie {} then {})",
            cookie, facts.cookie
        )));
    }
    Ok(ips.iter().find(|ip| !facts.has_address(ip)).map(|ip| {
        format!(
            "its address {ip} left its network namespace meanwhile (the pod was deleted, \
             or is being deleted)"
        )
    }))
}

/// The identity of a namespace file: (device, inode) of what the link names.
fn netns_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}
