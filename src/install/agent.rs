//! `meshlane install`: the install DaemonSet's main process.
//!
//! At start it copies its own binary into the host's CNI bin dir, attaches the
//! node programs (switching those of an older version to its own in place, see
//! `program_upgrade`), and puts meshlane's entry into the primary CNI config; then it
//! keeps all three in place — waking on every change in the config dir and on a
//! periodic re-check — serves `/healthz`, `/readyz` and `/metrics`, and copies
//! the plugin's log lines to stdout.
//!
//! On SIGTERM (a rolling update, a node drain) it exits and leaves everything
//! in place: pods keep being captured, and new pods are captured by the plugin
//! alone (it loads the programs itself when it finds them missing). Only
//! `meshlane uninstall` removes things.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::datapath::bpffs;
use crate::datapath::cgroup::{host_cgroup2_root, Cgroup};
use crate::datapath::counters::read_counters;
use crate::datapath::features;
use crate::datapath::inventory::Inventory;
use crate::datapath::loader::NODE_PROGRAMS;
use crate::datapath::{ensure_attached, AttachOutcome, PinLayout, PodMaps};
use crate::policy::short_path_kernels::{node_short_path, ShortPathSwitch};

use super::cluster::Cluster;
use super::conflist::{self, Action, ChainEntry, InstallOutcome};
use super::error::{ConflistError, InstallError};
use super::files;
use super::http::{self, Response};
use super::log_tail::{ErrorCounts, LogTail};
use super::metrics::{self, Snapshot};
use super::netdir::Skipped;
use super::program_upgrade::StartupUpgrade;
use super::settings::InstallSettings;
use super::watch::{Wake, Watcher};
use crate::log::{error, info, warn};

/// How often the plugin's log is read for new lines.
const TAIL_INTERVAL: Duration = Duration::from_millis(500);

/// What the health endpoints and the loop share; everything is re-read from the
/// node on each request, so a probe never answers from stale memory.
struct Node {
    conf_dir: PathBuf,
    conf_name: Option<String>,
    entry: ChainEntry,
    layout: PinLayout,
    cgroup: PathBuf,
    errors: Arc<ErrorCounts>,
    /// Switching an older meshlane's programs to this version's (issue 6).
    upgrade: StartupUpgrade,
    /// What this kernel lacks (probed once at start): the agent is never ready.
    kernel_problem: Option<String>,
    /// Why the chain entry is not in place (istio-cni in the chain, an
    /// unchainable config), for the readiness answer.
    chain_problem: Mutex<Option<String>>,
}

impl Node {
    fn chain_in_place(&self) -> bool {
        files::read_net_dir(&self.conf_dir)
            .map(|dir| conflist::is_in_place(&dir, self.conf_name.as_deref(), &self.entry))
            .unwrap_or(false)
    }

    /// Node programs whose pinned link is attached to our cgroup, and what is
    /// missing for capture (node, per-pod and short path programs).
    fn programs(&self) -> (u64, Vec<String>) {
        let inventory = Inventory::probe(&self.layout);
        let attached = match Cgroup::open(&self.cgroup) {
            Ok(cgroup) => inventory.node_programs_on(cgroup.id) as u64,
            Err(_) => 0,
        };
        (attached, inventory.missing())
    }

    fn readiness(&self) -> Response {
        let chain = self.chain_in_place();
        let (attached, missing) = self.programs();
        let expected = NODE_PROGRAMS.len() as u64;
        let upgrade = self.upgrade.problem();
        if chain
            && attached == expected
            && missing.is_empty()
            && upgrade.is_none()
            && self.kernel_problem.is_none()
        {
            return Response::text(200, "ready\n");
        }
        let mut problems: Vec<String> = self.kernel_problem.iter().cloned().collect();
        if !chain {
            let why = self
                .chain_problem
                .lock()
                .ok()
                .and_then(|problem| problem.clone())
                .map(|problem| format!(": {problem}"))
                .unwrap_or_default();
            problems.push(format!(
                "meshlane's entry is not in the primary CNI config in {}{why}",
                self.conf_dir.display()
            ));
        }
        if let Err(err) = bpffs::check_root(&self.layout) {
            // Unmounted under running pods: every pin went with it, the maps
            // and the links that held the programs on the cgroup. That is the
            // one reason, not the dozen pins it took with it.
            problems.push(format!(
                "{err}: the node's maps and program links went with their pins, so no pod is \
                 captured; the agent loads and attaches them again once a bpffs is mounted there"
            ));
        } else {
            if attached != expected {
                problems.push(format!(
                    "node programs attached to {}: {attached}/{expected}",
                    self.cgroup.display()
                ));
            }
            problems.extend(missing);
        }
        problems.extend(upgrade);
        Response::text(503, format!("not ready: {}\n", problems.join("; ")))
    }

    fn ready(&self) -> bool {
        self.readiness().status == 200
    }

    fn metrics(&self) -> Response {
        let (attached, _) = self.programs();
        let snapshot = Snapshot {
            counters: read_counters(&self.layout).unwrap_or_default(),
            enrolled_pods: PodMaps::open(&self.layout)
                .and_then(|maps| maps.pods())
                .map(|pods| pods.len() as u64)
                .ok(),
            cni_errors: self.errors.snapshot(),
            chain_in_place: self.chain_in_place(),
            programs_attached: attached,
            programs_expected: NODE_PROGRAMS.len() as u64,
            process: super::process_metrics::read_self(),
        };
        Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics::render(&snapshot),
        }
    }

    fn handle(&self, path: &str) -> Response {
        match path {
            "/healthz" => Response::text(200, "ok\n"),
            "/readyz" => self.readiness(),
            "/metrics" => self.metrics(),
            _ => Response::text(404, "not found (try /healthz, /readyz, /metrics)\n"),
        }
    }
}

/// The cgroup to attach to: the configured one — or, on a hybrid host whose
/// cgroup2 sits at `<mount>/unified`, that — else the cgroup2 mount.
pub fn resolve_cgroup(configured: Option<&Path>) -> Result<PathBuf, InstallError> {
    let Some(path) = configured else {
        return Ok(host_cgroup2_root()?);
    };
    let is_cgroup2 = |p: &Path| {
        nix::sys::statfs::statfs(p)
            .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
    };
    let unified = path.join("unified");
    if !is_cgroup2(path) && is_cgroup2(&unified) {
        return Ok(unified);
    }
    Ok(path.to_path_buf())
}

/// What the loop remembers between rounds, so it logs changes, not states.
#[derive(Default)]
struct Memory {
    in_place: Option<bool>,
    last_problem: Option<String>,
    skipped: BTreeSet<(String, String)>,
    programs_ok: Option<bool>,
}

impl Memory {
    /// Logs the invalid configs the runtime passes over, each once.
    fn note_skipped(&mut self, skipped: &[Skipped]) {
        let now: BTreeSet<(String, String)> = skipped
            .iter()
            .map(|s| (s.file.clone(), s.reason.clone()))
            .collect();
        for (file, reason) in now.difference(&self.skipped) {
            warn(
                "skipping an invalid CNI config, as the runtime does",
                &[("file", file), ("reason", reason)],
            );
        }
        self.skipped = now;
    }

    fn problem(&mut self, node: &Node, message: String) {
        if let Ok(mut shared) = node.chain_problem.lock() {
            *shared = Some(message.clone());
        }
        if self.last_problem.as_ref() != Some(&message) {
            error(
                "cannot put meshlane's chain entry in place",
                &[("error", &message)],
            );
            self.last_problem = Some(message);
        }
        self.in_place = Some(false);
    }
}

struct Agent {
    settings: InstallSettings,
    node: Arc<Node>,
    memory: Memory,
    /// Why running pods must not be enrolled: the primary config chains
    /// istio-cni, whose pods carry its iptables rules already.
    istio_cni: Option<String>,
}

impl Agent {
    fn clear_chain_problem(&self) {
        if let Ok(mut shared) = self.node.chain_problem.lock() {
            *shared = None;
        }
    }

    fn set_chain_problem(&self, problem: String) {
        if let Ok(mut shared) = self.node.chain_problem.lock() {
            *shared = Some(problem);
        }
    }

    fn reconcile_chain(&mut self) {
        let dir = match files::read_net_dir(&self.settings.cni_conf_dir) {
            Ok(dir) => dir,
            Err(err) => return self.memory.problem(&self.node, err.to_string()),
        };
        let conf_name = self.settings.cni_conf_name.as_deref();
        let planned = conflist::plan_install(&dir, conf_name, &self.node.entry);
        self.istio_cni = match &planned {
            Err(err @ ConflistError::IstioCni { .. }) => Some(err.to_string()),
            _ => None,
        };
        let plan = match planned {
            Ok(InstallOutcome::Planned(plan)) => plan,
            Ok(InstallOutcome::NoPrimary { skipped }) => {
                // The files passed over are why (a primary's torn or broken
                // write): readiness names them.
                let why = skipped
                    .iter()
                    .map(|s| format!("{} is skipped: {}", s.file, s.reason))
                    .collect::<Vec<_>>();
                if why.is_empty() {
                    self.clear_chain_problem();
                } else {
                    self.set_chain_problem(format!(
                        "no valid config to chain into ({})",
                        why.join("; ")
                    ));
                }
                self.memory.note_skipped(&skipped);
                if self.memory.in_place != Some(false) || self.memory.last_problem.is_some() {
                    info(
                        "waiting for the primary CNI to write its config",
                        &[
                            ("dir", &self.settings.cni_conf_dir.display()),
                            ("name", &conf_name.unwrap_or("(first valid)")),
                        ],
                    );
                }
                self.memory.last_problem = None;
                self.memory.in_place = Some(false);
                return;
            }
            Err(err) => return self.memory.problem(&self.node, err.to_string()),
        };
        self.clear_chain_problem();
        self.memory.note_skipped(&plan.skipped);
        if plan.action == Action::InPlace {
            if self.memory.in_place != Some(true) {
                info("chain entry in place", &[("file", &plan.primary)]);
            }
            self.memory.in_place = Some(true);
            self.memory.last_problem = None;
            return;
        }
        match files::apply_changes(&self.settings.cni_conf_dir, &plan.changes, &dir) {
            Ok(()) => {}
            // The primary's write wakes the watcher: the next round plans
            // from what it wrote.
            Err(err @ InstallError::ChangedMeanwhile { .. }) => {
                return info("planning again", &[("reason", &err)]);
            }
            Err(err) => return self.memory.problem(&self.node, err.to_string()),
        }
        let restored = self.memory.in_place == Some(true);
        match &plan.action {
            Action::Wrapped { conflist } => info(
                "wrapped the single-plugin config into a conflist with meshlane's entry",
                &[("from", &plan.primary), ("file", conflist)],
            ),
            Action::Appended if restored => info(
                "chain entry restored (the primary CNI rewrote its config)",
                &[("file", &plan.primary)],
            ),
            Action::Appended => info("chain entry added", &[("file", &plan.primary)]),
            Action::Replaced => info(
                "chain entry replaced with the current settings",
                &[("file", &plan.primary)],
            ),
            Action::InPlace => {}
        }
        self.memory.in_place = Some(true);
        self.memory.last_problem = None;
    }

    fn reconcile_programs(&mut self) {
        if self.node.kernel_problem.is_some() {
            // Said once at start; loading would only fail the same way.
            return;
        }
        let (attached, missing) = self.node.programs();
        if attached == NODE_PROGRAMS.len() as u64 && missing.is_empty() {
            if self.memory.programs_ok != Some(true) {
                info(
                    "node programs already attached",
                    &[("pins", &self.node.layout.root().display())],
                );
            }
            self.memory.programs_ok = Some(true);
            return;
        }
        match ensure_attached(&self.node.layout, &self.node.cgroup) {
            Ok(AttachOutcome::Attached(programs)) => {
                info(
                    "node programs attached",
                    &[
                        ("programs", &programs.join(",")),
                        ("cgroup", &self.node.cgroup.display()),
                        ("pins", &self.node.layout.root().display()),
                    ],
                );
                self.memory.programs_ok = Some(true);
            }
            Ok(AttachOutcome::AlreadyAttached) => self.memory.programs_ok = Some(true),
            Err(err) => {
                if self.memory.programs_ok != Some(false) {
                    let log = err.verifier_log().unwrap_or("").trim().to_owned();
                    error(
                        "cannot attach the node programs (will retry)",
                        &[
                            ("error", &err),
                            ("cgroup", &self.node.cgroup.display()),
                            ("verifier_log", &log),
                        ],
                    );
                }
                self.memory.programs_ok = Some(false);
            }
        }
    }

    /// Once the programs are attached, switches those of an older meshlane to
    /// this version's (until that has succeeded once).
    fn upgrade_programs(&self) {
        if self.memory.programs_ok == Some(true) {
            self.node.upgrade.run_once(&self.node.layout);
        }
    }

    /// The binary must stay in the bin dir: a missing one fails every pod ADD.
    fn reconcile_binary(&self, self_exe: &Path, full_compare: bool) {
        let target = self.settings.cni_bin_dir.join("meshlane");
        let same_size = std::fs::metadata(self_exe)
            .and_then(|ours| Ok(std::fs::metadata(&target)?.len() == ours.len()))
            .unwrap_or(false);
        if !full_compare && same_size {
            return;
        }
        match files::install_binary(self_exe, &self.settings.cni_bin_dir) {
            Ok(true) => info(
                "installed the plugin binary",
                &[("path", &target.display())],
            ),
            Ok(false) => info(
                "plugin binary already up to date",
                &[("path", &target.display())],
            ),
            Err(err) => error("cannot install the plugin binary", &[("error", &err)]),
        }
    }
}

/// Probes the kernel for every feature meshlane needs (the same probes and
/// message as `meshlane precheck` and the plugin's code 103), and says once what
/// the short path does on it.
fn check_kernel(settings: &InstallSettings) -> Option<String> {
    let release = features::kernel_release();
    if let Some(missing) = features::first_missing(&release) {
        error(
            "this kernel cannot run meshlane; not ready",
            &[("error", &missing)],
        );
        return Some(missing.to_string());
    }
    let switch =
        ShortPathSwitch::from_setting(settings.plugin.get("shortPath").and_then(|v| v.as_bool()));
    let short_path = node_short_path(switch, &release);
    let state = if short_path.on { "on" } else { "off" };
    info(
        &format!("short path {state}"),
        &[("kernel", &release), ("why", &short_path.reason)],
    );
    None
}

fn start_log_tail(path: PathBuf, errors: Arc<ErrorCounts>) {
    let spawned = std::thread::Builder::new()
        .name("log-tail".into())
        .spawn(move || {
            let mut tail = LogTail::new(path, errors);
            tail.start();
            loop {
                std::thread::sleep(TAIL_INTERVAL);
                tail.poll(&mut std::io::stdout().lock());
            }
        });
    if let Err(err) = spawned {
        warn("cannot follow the plugin's log", &[("error", &err)]);
    }
}

/// Runs until SIGTERM/SIGINT; returns the exit code.
pub fn run(settings: InstallSettings, self_exe: &Path) -> Result<i32, InstallError> {
    let entry = ChainEntry::new(&settings.plugin)?;
    let cgroup = resolve_cgroup(settings.cgroup.as_deref())?;
    std::fs::create_dir_all(&settings.cni_conf_dir)
        .map_err(InstallError::io("creating", &settings.cni_conf_dir))?;
    // Before any thread exists: the signal mask is inherited.
    let mut watcher = Watcher::new(&settings.cni_conf_dir)?;
    info(
        "starting",
        &[
            ("version", &env!("CARGO_PKG_VERSION")),
            ("cni_bin_dir", &settings.cni_bin_dir.display()),
            ("cni_conf_dir", &settings.cni_conf_dir.display()),
            ("pins", &settings.pin_root.display()),
            ("cgroup", &cgroup.display()),
            ("entry", &entry.value()),
        ],
    );
    let kernel_problem = check_kernel(&settings);
    let errors = Arc::new(ErrorCounts::default());
    let node = Arc::new(Node {
        conf_dir: settings.cni_conf_dir.clone(),
        conf_name: settings.cni_conf_name.clone(),
        entry,
        layout: PinLayout::new(&settings.pin_root),
        cgroup,
        errors: errors.clone(),
        upgrade: StartupUpgrade::default(),
        kernel_problem,
        chain_problem: Mutex::new(None),
    });
    let mut agent = Agent {
        settings,
        node: node.clone(),
        memory: Memory::default(),
        istio_cni: None,
    };

    // The binary first: the chain entry must never name a plugin that is absent.
    agent.reconcile_binary(self_exe, true);
    agent.reconcile_programs();
    agent.upgrade_programs();
    agent.reconcile_chain();

    let listener = TcpListener::bind(&agent.settings.listen).map_err(InstallError::io(
        "listening on",
        PathBuf::from(&agent.settings.listen),
    ))?;
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| agent.settings.listen.clone());
    info("serving /healthz /readyz /metrics", &[("addr", &address)]);
    let handler_node = node.clone();
    http::serve(
        listener,
        Arc::new(move |path: &str| handler_node.handle(path)),
    );
    if let Some(path) = agent.settings.tail_log.clone() {
        info("following the plugin's log", &[("file", &path.display())]);
        start_log_tail(path, errors);
    }
    // The plugin's kubeconfig, and pods that already run without capture.
    let mut cluster = Cluster::new(&agent.settings);
    cluster.tick(node.ready(), agent.istio_cni.as_deref());

    loop {
        match watcher.wait(agent.settings.recheck)? {
            Wake::Terminate(signal) => {
                info(
                    "stopping; the chain entry, the binary and the attached programs stay in place",
                    &[("signal", &signal)],
                );
                return Ok(0);
            }
            Wake::Changed => {
                agent.reconcile_chain();
                // A pending startup taint goes as soon as the node is ready,
                // not at the next periodic re-check.
                if cluster.taint_pending() {
                    cluster.tick(node.ready(), agent.istio_cni.as_deref());
                }
            }
            Wake::Timeout => {
                agent.reconcile_binary(self_exe, false);
                agent.reconcile_programs();
                agent.upgrade_programs();
                agent.reconcile_chain();
                cluster.tick(node.ready(), agent.istio_cni.as_deref());
            }
        }
    }
}
