//! A test "node": everything one integration test needs, private to it and removed
//! on drop — a temp dir, a private bpffs (meshlane's pin root inside it), a hooked
//! child cgroup, a node netns in which the CNI plugins run (the bridge plugin changes
//! the netns it runs in, so the host stays untouched), and a CNI bin dir.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use meshlane::datapath::counters::{read_counters, CounterValue};
use meshlane::datapath::{PinLayout, PodMaps};
use serde_json::{Map, Value};

use super::bpffs::BpffsMount;
use super::cgroup::TestCgroup;
use super::chain::{ChainRunner, Conflist, PluginOutput, RuntimeConf};
use super::conflist::{self, ChainSettings, DEFAULT_CNI_VERSION};
use super::mountinfo;
use super::names::{InstanceId, TMP_ROOT};
use super::netns::{self, NamedNetns};
use super::prereq;
use super::process::Place;
use super::sweep;
use super::tmpdir::TempDir;

/// Where a node's pieces are; handed to config callbacks and readable by tests.
#[derive(Debug, Clone)]
pub struct NodeLayout {
    pub id: InstanceId,
    /// The test's label for this node (informational).
    pub name: String,
    /// `/tmp/meshlane-test-<pid>-<n>`
    pub tmp: PathBuf,
    /// The private bpffs mount, `<tmp>/bpffs`.
    pub bpffs: PathBuf,
    /// meshlane's pin root, `<tmp>/bpffs/meshlane` (meshlane creates it).
    pub pin_root: PathBuf,
    /// The hooked cgroup, `<cgroup2>/meshlane-test-<pid>-<n>`.
    pub cgroup: PathBuf,
    /// CNI_PATH: symlinks to the reference plugins and to the meshlane under test.
    pub bin_dir: PathBuf,
    /// host-local's dataDir.
    pub ipam_dir: PathBuf,
    /// Logs and generated files of processes (Envoy, probes).
    pub work_dir: PathBuf,
    pub node_netns_name: String,
    pub node_netns: PathBuf,
    pub bridge: String,
    pub subnet_v4: String,
    pub subnet_v6: Option<String>,
}

type LayoutFn<T> = Box<dyn FnOnce(&NodeLayout) -> T>;
type ConflistEdit = Box<dyn FnOnce(&NodeLayout, &mut Conflist)>;

/// Options of a [`TestNode`]; start with `TestNode::builder("name")`.
pub struct TestNodeBuilder {
    name: String,
    dual_stack: bool,
    cni_version: String,
    with_meshlane: bool,
    meshlane_config: Option<LayoutFn<Value>>,
    extra_plugins: Vec<LayoutFn<Value>>,
    plugin_env: Vec<(String, String)>,
    edit_conflist: Option<ConflistEdit>,
    short_path: bool,
}

impl TestNodeBuilder {
    /// IPv4 and IPv6 ranges (fd00:…/64) on the bridge.
    pub fn dual_stack(mut self) -> Self {
        self.dual_stack = true;
        self
    }

    /// The conflist's cniVersion (default 1.0.0; the reference plugins stop there).
    pub fn cni_version(mut self, version: &str) -> Self {
        self.cni_version = version.to_string();
        self
    }

    /// A chain of the primary plugin (and extra plugins) only.
    pub fn without_meshlane(mut self) -> Self {
        self.with_meshlane = false;
        self
    }

    /// Extra keys of meshlane's entry, computed from the layout. The entry already
    /// has `bpffsRoot`, `cgroupPath` and `logFile` pointing into the node; keys
    /// returned here win.
    pub fn meshlane_config(mut self, f: impl FnOnce(&NodeLayout) -> Value + 'static) -> Self {
        self.meshlane_config = Some(Box::new(f));
        self
    }

    /// `"shortPath": true` in meshlane's entry: the short path on, whatever this
    /// kernel's default (docs/kernels.md). `meshlane_config` may still override it.
    pub fn short_path(mut self) -> Self {
        self.short_path = true;
        self
    }

    /// Appends a plugin entry after bridge (before meshlane). Its binary must be in
    /// `layout.bin_dir` by the time a pod is added.
    pub fn plugin(mut self, f: impl FnOnce(&NodeLayout) -> Value + 'static) -> Self {
        self.extra_plugins.push(Box::new(f));
        self
    }

    /// An environment variable every plugin gets (a runtime passes its own on).
    pub fn plugin_env(mut self, key: &str, value: &str) -> Self {
        self.plugin_env.push((key.to_string(), value.to_string()));
        self
    }

    /// Last word on the conflist, for configurations the options do not cover.
    pub fn edit_conflist(mut self, f: impl FnOnce(&NodeLayout, &mut Conflist) + 'static) -> Self {
        self.edit_conflist = Some(Box::new(f));
        self
    }

    /// Creates everything; panics (after cleaning up what was created) on failure.
    pub fn build(self) -> TestNode {
        prereq::require_root();
        sweep::sweep_leftovers_once();
        let cgroup2 = mountinfo::cgroup2_mount().expect("checked by require_root");
        let id = InstanceId::next();
        let tmp_path = Path::new(TMP_ROOT).join(id.dir_name());
        let node_netns_name = id.netns_name("node");
        let layout = NodeLayout {
            id,
            name: self.name.clone(),
            bpffs: tmp_path.join("bpffs"),
            pin_root: tmp_path.join("bpffs/meshlane"),
            cgroup: cgroup2.join(id.dir_name()),
            bin_dir: tmp_path.join("bin"),
            ipam_dir: tmp_path.join("ipam"),
            work_dir: tmp_path.join("work"),
            node_netns: Path::new(netns::NETNS_DIR).join(&node_netns_name),
            node_netns_name,
            bridge: id.bridge_name(),
            subnet_v4: id.subnet_v4(),
            subnet_v6: self.dual_stack.then(|| id.subnet_v6()),
            tmp: tmp_path,
        };

        // Each guard cleans up on its own if a later step panics.
        let tmp = TempDir::create(layout.tmp.clone())
            .unwrap_or_else(|err| panic!("create {}: {err}", layout.tmp.display()));
        for dir in [&layout.bin_dir, &layout.ipam_dir, &layout.work_dir] {
            fs::create_dir(dir).unwrap_or_else(|err| panic!("create {}: {err}", dir.display()));
        }
        let bpffs = BpffsMount::mount(layout.bpffs.clone())
            .unwrap_or_else(|err| panic!("mount bpffs at {}: {err}", layout.bpffs.display()));
        let cgroup = TestCgroup::create(layout.cgroup.clone())
            .unwrap_or_else(|err| panic!("create cgroup {}: {err}", layout.cgroup.display()));
        let node_netns = NamedNetns::create(&layout.node_netns_name)
            .unwrap_or_else(|err| panic!("create node netns: {err}"));
        link_plugins(&layout.bin_dir);

        let mut meshlane_keys = meshlane_safety_keys(&layout);
        if self.short_path {
            meshlane_keys.insert("shortPath".into(), Value::Bool(true));
        }
        if let Some(f) = self.meshlane_config {
            match f(&layout) {
                Value::Object(map) => meshlane_keys.extend(map),
                other => panic!("meshlane_config must return a JSON object, got {other}"),
            }
        }
        let meshlane_entry = conflist::meshlane_entry(&meshlane_keys);
        let settings = ChainSettings {
            cni_version: self.cni_version,
            bridge: layout.bridge.clone(),
            subnet_v4: layout.subnet_v4.clone(),
            subnet_v6: layout.subnet_v6.clone(),
            ipam_data_dir: layout.ipam_dir.to_string_lossy().into_owned(),
            extra_plugins: self.extra_plugins.into_iter().map(|f| f(&layout)).collect(),
            meshlane: self.with_meshlane.then(|| meshlane_entry.clone()),
        };
        let mut conflist = conflist::build(&settings);
        if let Some(edit) = self.edit_conflist {
            edit(&layout, &mut conflist);
        }
        let chain = ChainRunner::new(
            conflist,
            layout.bin_dir.clone(),
            layout.node_netns.clone(),
            self.plugin_env,
        );

        TestNode {
            layout,
            chain,
            meshlane_entry,
            next_pod: AtomicU32::new(0),
            node_netns,
            bpffs,
            cgroup,
            tmp,
        }
    }
}

/// meshlane's keys (src/plugin/config.rs) that keep it inside the node: without
/// them it would pin under /sys/fs/bpf, attach to the machine's root cgroup and log
/// to /var/log. `meshlane_config` can override them, explicitly.
fn meshlane_safety_keys(layout: &NodeLayout) -> Map<String, Value> {
    let mut keys = Map::new();
    keys.insert("bpffsRoot".into(), path_value(&layout.pin_root));
    keys.insert("cgroupPath".into(), path_value(&layout.cgroup));
    keys.insert(
        "logFile".into(),
        path_value(&layout.work_dir.join("meshlane-cni.log")),
    );
    keys
}

fn path_value(path: &Path) -> Value {
    Value::from(path.to_string_lossy().into_owned())
}

/// CNI_PATH of the node: the reference plugins and the binary under test.
fn link_plugins(bin_dir: &Path) {
    let system = prereq::cni_plugin_dir().expect("checked by require_root");
    let mut links: Vec<(PathBuf, &str)> = prereq::REFERENCE_PLUGINS
        .iter()
        .map(|p| (system.join(p), *p))
        .collect();
    let meshlane = prereq::meshlane_binary();
    links.push((meshlane, "meshlane"));
    for (target, name) in links {
        symlink(&target, bin_dir.join(name))
            .unwrap_or_else(|err| panic!("symlink {name} -> {}: {err}", target.display()));
    }
}

/// One test node; see the module docs. Pods borrow it, so they go first.
#[derive(Debug)]
pub struct TestNode {
    layout: NodeLayout,
    chain: ChainRunner,
    meshlane_entry: Value,
    next_pod: AtomicU32,
    // Cleanup guards, released in a fixed order by Drop.
    node_netns: NamedNetns,
    bpffs: BpffsMount,
    cgroup: TestCgroup,
    tmp: TempDir,
}

impl TestNode {
    /// A single-stack IPv4 node with the chain bridge → meshlane.
    pub fn new(name: &str) -> TestNode {
        TestNode::builder(name).build()
    }

    pub fn builder(name: &str) -> TestNodeBuilder {
        TestNodeBuilder {
            name: name.to_string(),
            dual_stack: false,
            cni_version: DEFAULT_CNI_VERSION.to_string(),
            with_meshlane: true,
            meshlane_config: None,
            extra_plugins: Vec::new(),
            plugin_env: Vec::new(),
            edit_conflist: None,
            short_path: false,
        }
    }

    pub fn layout(&self) -> &NodeLayout {
        &self.layout
    }

    pub fn chain(&self) -> &ChainRunner {
        &self.chain
    }

    pub fn cgroup(&self) -> &TestCgroup {
        &self.cgroup
    }

    pub fn pin_root(&self) -> &Path {
        &self.layout.pin_root
    }

    /// meshlane's pins under this node's pin root.
    pub fn pin_layout(&self) -> PinLayout {
        PinLayout::new(self.pin_root())
    }

    /// meshlane's pod maps, read from the node's pins (panics unless pinned).
    pub fn maps(&self) -> PodMaps {
        PodMaps::open(&self.pin_layout()).expect("meshlane's maps are pinned")
    }

    /// Every counter of meshlane's programs, by name, in meshlane's order.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        read_counters(&self.pin_layout())
            .expect("counters readable")
            .iter()
            .map(CounterValue::named)
            .collect()
    }

    /// One counter of meshlane's programs (panics if there is none by that name).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters()
            .into_iter()
            .find(|(counter, _)| *counter == name)
            .unwrap_or_else(|| panic!("no counter {name}"))
            .1
    }

    /// Asserts that counter `name` has reached `least`, showing every counter if not.
    pub fn assert_counter_at_least(&self, name: &str, least: u64) {
        let value = self.counter(name);
        assert!(
            value >= least,
            "{name} is {value}, expected at least {least}: {:?}",
            self.counters()
        );
    }

    /// Processes here run in the node netns (no pod, no mesh) but in the hooked
    /// cgroup, so meshlane's programs see them and must leave them alone.
    pub fn outside_pods(&self) -> Place {
        Place {
            label: "node".to_string(),
            netns: self.layout.node_netns.clone(),
            cgroup: self.layout.cgroup.clone(),
            work_dir: self.layout.work_dir.clone(),
        }
    }

    pub(crate) fn next_pod_number(&self) -> u32 {
        self.next_pod.fetch_add(1, Ordering::Relaxed)
    }

    /// meshlane's entry as a standalone network config (`name` and `cniVersion`
    /// injected), for STATUS and GC, which run per network and not per chain.
    pub fn meshlane_netconf(&self, cni_version: &str) -> Value {
        let mut conf = self.meshlane_entry.clone();
        conf["name"] = Value::from(self.chain.conflist.name.clone());
        conf["cniVersion"] = Value::from(cni_version);
        conf
    }

    /// Runs meshlane alone (in the node netns) with exactly `env` (plus PATH and the
    /// node's plugin_env) and `stdin`: error paths, STATUS, GC, VERSION.
    pub fn run_meshlane(&self, env: &[(String, String)], stdin: impl AsRef<[u8]>) -> PluginOutput {
        self.chain.exec_plugin("meshlane", env, stdin.as_ref())
    }

    /// `CNI_COMMAND=<command>` and `CNI_PATH` (plus the attachment's variables when
    /// `rt` is given), to start a raw call from.
    pub fn cni_env(&self, command: &str, rt: Option<&RuntimeConf>) -> Vec<(String, String)> {
        self.chain.cni_env(command, rt)
    }

    /// CNI 1.1 STATUS of meshlane with its network config.
    pub fn meshlane_status(&self) -> PluginOutput {
        let conf = self.meshlane_netconf("1.1.0");
        self.run_meshlane(&self.cni_env("STATUS", None), conf.to_string())
    }

    /// CNI 1.1 GC of meshlane: every attachment not in `valid` (container ID,
    /// ifname) may be cleaned up.
    pub fn meshlane_gc(&self, valid: &[(&str, &str)]) -> PluginOutput {
        let mut conf = self.meshlane_netconf("1.1.0");
        conf["cni.dev/valid-attachments"] = valid
            .iter()
            .map(|(id, ifname)| serde_json::json!({ "containerID": id, "ifname": ifname }))
            .collect();
        self.run_meshlane(&self.cni_env("GC", None), conf.to_string())
    }

    /// Runs `ip <args>` inside the node netns (e.g. `["-o", "link"]`).
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.layout.node_netns_name.as_str()];
        full.extend_from_slice(args);
        netns::run_ip(&full).unwrap_or_else(|err| panic!("{err}"))
    }
}

impl Drop for TestNode {
    /// Kill the processes, delete the netns (pods left behind, then the node),
    /// unmount the bpffs (dropping pinned links), rmdir the cgroup, remove the temp
    /// dir. Problems are logged, never raised: this may run during a panic.
    fn drop(&mut self) {
        let mut problems = Vec::new();
        problems.extend(self.cgroup.kill_all().err());
        for name in netns::list_named(&self.layout.id.netns_prefix()) {
            problems.extend(netns::delete_named(&name).err());
        }
        problems.extend(self.node_netns.delete().err());
        problems.extend(self.bpffs.unmount().err());
        problems.extend(self.cgroup.remove().err());
        problems.extend(self.tmp.remove().err());
        for problem in problems {
            eprintln!("[harness] cleanup of node {}: {problem}", self.layout.name);
        }
    }
}
