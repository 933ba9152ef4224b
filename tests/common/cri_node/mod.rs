//! A real node: Debian's containerd 1.6 (CRI plugin built in) and runc, in a
//! fence of its own (`fence.rs`), driven through the CRI API the way kubelet
//! drives it (`client.rs`, `kubelet.rs`). Pods are Kubernetes Pod objects (JSON)
//! run as sandboxes and containers from images made here (`images.rs`); the
//! bridge + host-local chain is the node's primary CNI; meshlane arrives the
//! way users install it, from the DaemonSet in `manifests/`
//! (`daemonset.rs`). The one stand-in is the Kubernetes API
//! (`kube_cluster.rs`), listening in the node's network namespace.
//!
//! ```text
//! let node = CriNode::start("capture");
//! let agent = node.run_daemonset();
//! let web = node.run_pod(&pods::meshed(&node, "web", 8080));
//! ```

pub mod client;
pub mod containerd;
pub mod daemonset;
pub mod fence;
pub mod images;
pub mod kubelet;
pub mod pods;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Map, Value};

use self::client::CriClient;
use self::containerd::Containerd;
use self::fence::Fence;
use self::kubelet::{KubeletContext, PodPlan};
use super::http_get;
use super::kube_cluster::Cluster;
use super::prereq::{self, require_root};
use super::sweep::sweep_leftovers_once;
use super::timing::{poll, wait_until};

/// The primary CNI's conflist, as a cluster's network add-on writes it.
pub const PRIMARY_CONFLIST: &str = "10-bridge.conflist";
/// How long a pod may take to start (image unpack, CNI, runc) on a loaded
/// 2-core machine.
pub const POD_START: Duration = Duration::from_secs(90);

pub struct CriNode {
    pub name: String,
    // Field order is drop order: the client and containerd before the fence.
    pub cri: CriClient,
    pub containerd: Containerd,
    pub cluster: Cluster,
    pub fence: Fence,
    /// The rendered manifests' ConfigMaps (for `envFrom`), once loaded.
    config_maps: std::sync::OnceLock<HashMap<String, Map<String, Value>>>,
    /// Where sandboxes keep their logs.
    log_root: PathBuf,
    /// Sandboxes not removed yet: stopped and removed on drop.
    pods: std::sync::Mutex<Vec<String>>,
    /// Program IDs attached to the machine's cgroup2 root when the node came
    /// up: nothing may be added there.
    root_cgroup_programs: Vec<u64>,
}

/// A pod started through CRI.
#[derive(Debug, Clone)]
pub struct RunningPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub sandbox_id: String,
    /// Container name → ID.
    pub containers: HashMap<String, String>,
    /// The pod's IPv4 address as the runtime reports it (the node's for
    /// hostNetwork pods: empty).
    pub ip: String,
    /// The Pod object it was started from.
    pub object: Value,
}

impl RunningPod {
    pub fn container(&self, name: &str) -> &str {
        self.containers
            .get(name)
            .unwrap_or_else(|| panic!("pod {} has no container {name}", self.name))
    }
}

impl CriNode {
    /// The fence, containerd, the images, the API stand-in and the primary
    /// CNI's conflist (bridge + host-local, written before anything else, as
    /// a network add-on does).
    pub fn start(name: &str) -> CriNode {
        require_root();
        sweep_leftovers_once();
        let fence = Fence::create();
        let plugins = prereq::cni_plugin_dir().expect("the reference CNI plugins are installed");
        for plugin in ["bridge", "host-local", "loopback"] {
            fence.run(
                "install",
                &[
                    "-m",
                    "0755",
                    &plugins.join(plugin).display().to_string(),
                    &format!("/opt/cni/bin/{plugin}"),
                ],
            );
        }
        let (containerd, cri) = Containerd::start(&fence);
        for image in images::test_images() {
            containerd.import(&image.archive);
        }
        // A DNS-1123 name, as Kubernetes node names are.
        let node_name = format!("{name}-{}", fence.id.n);
        let cluster = Cluster::start(&fence.dir, &node_name, Some(fence.netns()));
        fs::write(cluster.account_dir.join("namespace"), "meshlane-system").unwrap();
        let log_root = fence.dir.join("pods");
        let root_cgroup_programs = root_cgroup_programs();
        let node = CriNode {
            name: node_name,
            cri,
            containerd,
            cluster,
            fence,
            config_maps: std::sync::OnceLock::new(),
            log_root,
            pods: std::sync::Mutex::new(Vec::new()),
            root_cgroup_programs,
        };
        node.write_primary_conflist(&node.primary_conflist());
        node
    }

    /// bridge + host-local on 10.<n>.0.0/24 — the test's own bridge inside the
    /// node's netns, so nodes never collide.
    pub fn primary_conflist(&self) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": "k8s-pod-network",
            "plugins": [{
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": format!("10.{}.0.0/24", 100 + self.fence.id.n % 100)}]],
                    "routes": [{"dst": "0.0.0.0/0"}]
                }
            }]
        })
    }

    /// Writes (or rewrites) the primary conflist the way an add-on does.
    pub fn write_primary_conflist(&self, conflist: &Value) {
        let path = self.path(format!("/etc/cni/net.d/{PRIMARY_CONFLIST}"));
        let temp = path.with_extension("tmp");
        fs::write(&temp, serde_json::to_string_pretty(conflist).unwrap()).unwrap();
        fs::rename(&temp, &path).unwrap();
    }

    /// The conflist as containerd reads it now.
    pub fn read_primary_conflist(&self) -> Value {
        let path = self.path(format!("/etc/cni/net.d/{PRIMARY_CONFLIST}"));
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap()
    }

    /// `path` as the node sees it.
    pub fn path(&self, path: impl AsRef<Path>) -> PathBuf {
        self.fence.path(path)
    }

    /// Runs a Pod object through CRI as kubelet does: sandbox, init containers
    /// to completion in order, then the containers. Panics with the runtime's
    /// error and logs if any step fails.
    pub fn run_pod(&self, pod: &Value) -> RunningPod {
        self.try_run_pod(pod).unwrap_or_else(|err| panic!("{err}"))
    }

    /// Like `run_pod`, returning the first failure (e.g. a refused CNI ADD).
    pub fn try_run_pod(&self, pod: &Value) -> Result<RunningPod, String> {
        let plan = kubelet::plan(pod, &self.kubelet_context());
        for (dir, create) in &plan.host_dirs {
            if *create {
                self.fence.run("mkdir", &["-p", &dir.display().to_string()]);
            } else if !self.path(dir).is_dir() {
                return Err(format!("hostPath {} does not exist", dir.display()));
            }
        }
        let sandbox_id = self
            .cri
            .run_pod_sandbox(plan.sandbox.clone())
            .map_err(|err| format!("pod {}: {err}", plan.name))?;
        self.pods.lock().unwrap().push(sandbox_id.clone());
        let mut running = RunningPod {
            namespace: plan.namespace.clone(),
            name: plan.name.clone(),
            uid: plan.uid.clone(),
            sandbox_id: sandbox_id.clone(),
            containers: HashMap::new(),
            ip: String::new(),
            object: pod.clone(),
        };
        for init in &plan.init_containers {
            let id = self.start_container(&plan, &sandbox_id, init)?;
            let exit = self.wait_for_exit(&id, POD_START)?;
            if exit != 0 {
                return Err(format!(
                    "pod {}: init container {} exited {exit}: {}",
                    plan.name,
                    init.name,
                    self.container_log(&running, &init.name)
                ));
            }
            running.containers.insert(init.name.clone(), id);
        }
        for container in &plan.containers {
            let id = self.start_container(&plan, &sandbox_id, container)?;
            running.containers.insert(container.name.clone(), id);
        }
        let status = self
            .cri
            .pod_sandbox_status(&sandbox_id)
            .map_err(|err| err.to_string())?;
        running.ip = status
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .unwrap_or_default();
        Ok(running)
    }

    fn start_container(
        &self,
        plan: &PodPlan,
        sandbox_id: &str,
        container: &kubelet::ContainerPlan,
    ) -> Result<String, String> {
        let id = self
            .cri
            .create_container(sandbox_id, container.config.clone(), plan.sandbox.clone())
            .map_err(|err| format!("pod {} container {}: {err}", plan.name, container.name))?;
        self.cri
            .start_container(&id)
            .map_err(|err| format!("pod {} container {}: {err}", plan.name, container.name))?;
        Ok(id)
    }

    /// Waits until a container has exited and returns its exit code.
    pub fn wait_for_exit(&self, id: &str, timeout: Duration) -> Result<i32, String> {
        let exited = poll(timeout, Duration::from_millis(100), || {
            match self.cri.container_status(id) {
                // CONTAINER_EXITED
                Ok(status) if status.state == 2 => Ok(Ok(status.exit_code)),
                Ok(_) => Err(()),
                Err(err) => Ok(Err(err.to_string())),
            }
        });
        exited.unwrap_or_else(|()| Err(format!("container {id} still runs after {timeout:?}")))
    }

    /// What a container wrote (CRI log format: `<time> <stream> <tag> <line>`).
    pub fn container_log(&self, pod: &RunningPod, container: &str) -> String {
        let path = self
            .log_root
            .join(format!("{}_{}_{}", pod.namespace, pod.name, pod.uid))
            .join(container)
            .join("0.log");
        fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|line| line.splitn(4, ' ').nth(3).unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until a container's log has a line containing `needle`.
    pub fn wait_for_log(&self, pod: &RunningPod, container: &str, needle: &str, timeout: Duration) {
        let logged = || self.container_log(pod, container).contains(needle);
        assert!(
            wait_until(timeout, Duration::from_millis(100), logged),
            "{}/{container} did not log {needle:?} in {timeout:?}:\n{}",
            pod.name,
            self.container_log(pod, container)
        );
    }

    /// `kubectl exec`: runs `cmd` in a container, as the container's user.
    pub fn exec(&self, pod: &RunningPod, container: &str, cmd: &[&str]) -> (i32, String, String) {
        self.cri
            .exec_sync(pod.container(container), cmd, 60)
            .unwrap_or_else(|err| panic!("exec in {}/{container}: {err}", pod.name))
    }

    /// Runs `node-app <args>` in a container and parses its JSON result line.
    pub fn node_app(&self, pod: &RunningPod, container: &str, args: &[&str]) -> Value {
        let mut cmd = vec!["/node-app"];
        cmd.extend_from_slice(args);
        let (code, stdout, stderr) = self.exec(pod, container, &cmd);
        let line = stdout
            .lines()
            .rev()
            .find(|line| line.starts_with('{'))
            .unwrap_or_else(|| {
                panic!(
                    "node-app {args:?} in {}: exit {code}: {stdout}{stderr}",
                    pod.name
                )
            });
        serde_json::from_str(line).unwrap()
    }

    /// A sandbox started outside `run_pod`, to be removed with the node.
    pub fn track_sandbox(&self, id: String) {
        self.pods.lock().unwrap().push(id);
    }

    /// StopPodSandbox then RemovePodSandbox, as kubelet does when a pod goes.
    pub fn remove_pod(&self, pod: &RunningPod) {
        self.cri
            .stop_pod_sandbox(&pod.sandbox_id)
            .unwrap_or_else(|err| panic!("stopping {}: {err}", pod.name));
        self.cri
            .remove_pod_sandbox(&pod.sandbox_id)
            .unwrap_or_else(|err| panic!("removing {}: {err}", pod.name));
        self.pods.lock().unwrap().retain(|id| *id != pod.sandbox_id);
    }

    /// An HTTP GET on the node's loopback (hostNetwork endpoints such as the
    /// agent's /readyz): (status, body).
    pub fn http_get(&self, port: u16, path: &str) -> Result<(u16, String), String> {
        self.http_get_in(&self.fence.netns(), port, path)
    }

    /// An HTTP GET on the loopback of a network namespace: (status, body).
    pub fn http_get_in(
        &self,
        netns: &Path,
        port: u16,
        path: &str,
    ) -> Result<(u16, String), String> {
        http_get::get_in_netns(netns, port, path)
    }

    /// What kubelet knows of this node, for `kubelet::plan`.
    pub fn kubelet_context(&self) -> KubeletContext<'_> {
        static NO_MAPS: std::sync::OnceLock<HashMap<String, Map<String, Value>>> =
            std::sync::OnceLock::new();
        KubeletContext {
            node_name: &self.name,
            config_maps: self
                .config_maps
                .get()
                .unwrap_or_else(|| NO_MAPS.get_or_init(HashMap::new)),
            api_host: "127.0.0.1",
            api_port: self.cluster.server.addr.port(),
            service_account_dir: &self.cluster.account_dir,
            log_root: &self.log_root,
        }
    }
}

impl CriNode {
    /// Tears the node down as its Drop does, then checks that nothing is left:
    /// no program added to the machine's root cgroup, no process, cgroup,
    /// namespace or file of the node.
    pub fn finish(self) {
        let before = self.root_cgroup_programs.clone();
        let cgroup2 = self.fence.cgroup2.clone();
        let dir = self.fence.dir.clone();
        let pids = self.fence.pids();
        drop(self);
        let added: Vec<u64> = root_cgroup_programs()
            .into_iter()
            .filter(|id| !before.contains(id))
            .collect();
        assert!(
            added.is_empty(),
            "programs {added:?} were attached to the machine's root cgroup"
        );
        assert!(!cgroup2.exists(), "{} is left", cgroup2.display());
        assert!(!dir.exists(), "{} is left", dir.display());
        // Killed processes whose parent is the machine's init may stay zombies
        // for a moment: those are dead.
        let alive = |pid: &i32| {
            fs::read_to_string(format!("/proc/{pid}/status"))
                .map(|status| !status.lines().any(|line| line.starts_with("State:\tZ")))
                .unwrap_or(false)
        };
        // What is still alive after 10 s is reported below.
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            !pids.iter().any(alive)
        });
        let running: Vec<String> = pids
            .into_iter()
            .filter(alive)
            .map(|pid| {
                let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let state = status
                    .lines()
                    .find(|l| l.starts_with("State:"))
                    .unwrap_or("");
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                format!(
                    "{pid} {state} {}",
                    String::from_utf8_lossy(&cmdline).replace('\0', " ")
                )
            })
            .collect();
        assert!(
            running.is_empty(),
            "processes of the node still run: {running:#?}"
        );
    }
}

/// Program IDs attached to the cgroup2 root of the machine (`bpftool cgroup
/// show`, every attach type).
fn root_cgroup_programs() -> Vec<u64> {
    let root = super::mountinfo::cgroup2_mount().expect("a cgroup2 mount");
    let output = std::process::Command::new("bpftool")
        .args(["-j", "cgroup", "show"])
        .arg(&root)
        .output()
        .expect("bpftool runs");
    assert!(output.status.success(), "bpftool cgroup show failed");
    let text = String::from_utf8_lossy(&output.stdout);
    // bpftool prints nothing at all for a cgroup without programs.
    if text.trim().is_empty() {
        return Vec::new();
    }
    let listed: Value = serde_json::from_str(text.trim()).expect("bpftool -j prints JSON");
    listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry["id"].as_u64())
        .collect()
}

impl Drop for CriNode {
    /// Pods first, through CRI, so that their CNI DEL runs as on a real node;
    /// then containerd stops and the fence removes the rest.
    fn drop(&mut self) {
        let pods = std::mem::take(&mut *self.pods.lock().unwrap());
        for id in pods {
            if let Err(err) = self.cri.stop_pod_sandbox(&id) {
                eprintln!("[harness] stopping sandbox {id}: {err}");
            }
            if let Err(err) = self.cri.remove_pod_sandbox(&id) {
                eprintln!("[harness] removing sandbox {id}: {err}");
            }
        }
        self.containerd.stop();
    }
}
