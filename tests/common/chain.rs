//! A libcni-like chain runner: runs the plugins of a conflist one by one, the way
//! containerd and CRI-O (through libcni) do, inside the test node's netns.
//!
//! - ADD runs the plugins in order; each gets the previous plugin's result as
//!   `prevResult`; the last result is the chain's result (the runtime caches it).
//! - CHECK runs them in order, each with the cached ADD result as `prevResult`.
//! - DEL runs them in reverse order, each with the cached result (if any).
//! - Every plugin's stdin is its conflist entry with `name` and `cniVersion` of the
//!   list injected, plus `runtimeConfig` for the capabilities it declares.
//! - A failing plugin stops the chain (libcni returns its error; no automatic DEL).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use serde_json::{Map, Value};

use super::exec::{self, Finished};
use super::netns;
use super::prereq::CHILD_PATH;

/// The capability through which containerd and CRI-O hand pod annotations to plugins.
pub const POD_ANNOTATIONS_CAPABILITY: &str = "io.kubernetes.cri.pod-annotations";

const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A network configuration list (`*.conflist`).
#[derive(Debug, Clone)]
pub struct Conflist {
    pub name: String,
    pub cni_version: String,
    /// The entries of `plugins`, in chain order.
    pub plugins: Vec<Value>,
}

impl Conflist {
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "cniVersion": self.cni_version,
            "name": self.name,
            "plugins": self.plugins,
        })
    }

    /// Reads a conflist JSON (e.g. one a test edited).
    pub fn from_json(value: &Value) -> Self {
        Conflist {
            name: value["name"].as_str().unwrap_or_default().to_string(),
            cni_version: value["cniVersion"].as_str().unwrap_or_default().to_string(),
            plugins: value["plugins"].as_array().cloned().unwrap_or_default(),
        }
    }

    pub fn plugin_types(&self) -> Vec<String> {
        self.plugins
            .iter()
            .map(|p| p["type"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// What the runtime knows about one attachment (libcni's `RuntimeConf`).
#[derive(Debug, Clone)]
pub struct RuntimeConf {
    pub container_id: String,
    /// `CNI_NETNS`; DEL may run without it (the netns is gone).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// `CNI_ARGS` pairs, in order.
    pub args: Vec<(String, String)>,
    /// Runtime-provided values, injected as `runtimeConfig` into the entries of
    /// plugins that declare the capability.
    pub capability_args: Map<String, Value>,
}

impl RuntimeConf {
    /// `K1=V1;K2=V2`, as runtimes format CNI_ARGS.
    pub fn cni_args(&self) -> String {
        self.args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// One plugin execution, with everything needed to explain a failure.
#[derive(Debug, Clone)]
pub struct PluginOutput {
    pub plugin: String,
    pub command: String,
    pub env: Vec<(String, String)>,
    pub stdin: String,
    pub status: ExitStatus,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

/// The error object a failing plugin prints on stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub code: u64,
    pub msg: String,
    pub details: String,
}

impl PluginOutput {
    fn from_finished(
        plugin: &str,
        env: &[(String, String)],
        stdin: &[u8],
        finished: Finished,
    ) -> Self {
        PluginOutput {
            plugin: plugin.to_string(),
            command: env
                .iter()
                .find(|(k, _)| k == "CNI_COMMAND")
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
            env: env.to_vec(),
            stdin: String::from_utf8_lossy(stdin).into_owned(),
            status: finished.status,
            timed_out: finished.timed_out,
            stdout: finished.stdout,
            stderr: finished.stderr,
        }
    }

    pub fn succeeded(&self) -> bool {
        !self.timed_out && self.status.success()
    }

    /// stdout parsed as JSON (a result, a version answer or an error object).
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(self.stdout.trim()).ok()
    }

    /// The stdin this plugin got, parsed.
    pub fn stdin_json(&self) -> Value {
        serde_json::from_str(&self.stdin).unwrap_or(Value::Null)
    }

    /// The CNI error object on stdout, when the plugin printed one.
    pub fn error(&self) -> Option<PluginError> {
        let json = self.json()?;
        Some(PluginError {
            code: json.get("code")?.as_u64()?,
            msg: json["msg"].as_str().unwrap_or_default().to_string(),
            details: json["details"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// A readable account of the run, for panic messages.
    pub fn describe(&self) -> String {
        let outcome = if self.timed_out {
            format!("timed out after {PLUGIN_TIMEOUT:?}")
        } else {
            self.status.to_string()
        };
        format!(
            "plugin {} {}: {outcome}\n  stdin: {}\n  stdout: {}\n  stderr: {}",
            self.plugin,
            self.command,
            self.stdin,
            self.stdout.trim(),
            self.stderr.trim()
        )
    }

    pub fn expect_success(self) -> Self {
        assert!(self.succeeded(), "{}", self.describe());
        self
    }
}

/// A whole chain operation: the plugins that ran, in the order they ran.
#[derive(Debug, Clone)]
pub struct ChainOutput {
    pub command: String,
    pub steps: Vec<PluginOutput>,
    /// ADD: the last plugin's result (what the runtime caches). None otherwise or on failure.
    pub result: Option<Value>,
}

impl ChainOutput {
    pub fn succeeded(&self) -> bool {
        self.steps.iter().all(PluginOutput::succeeded)
            && (self.command != "ADD" || self.result.is_some())
    }

    /// The step that stopped the chain.
    pub fn failed_step(&self) -> Option<&PluginOutput> {
        self.steps.iter().find(|step| !step.succeeded())
    }

    /// The plugin types in the order they ran.
    pub fn order(&self) -> Vec<&str> {
        self.steps.iter().map(|s| s.plugin.as_str()).collect()
    }

    pub fn describe(&self) -> String {
        let mut text = format!("chain {} ran {:?}", self.command, self.order());
        for step in &self.steps {
            text.push('\n');
            text.push_str(&step.describe());
        }
        if self.command == "ADD" && self.result.is_none() && self.failed_step().is_none() {
            text.push_str("\n(no JSON result from the last plugin)");
        }
        text
    }

    pub fn expect_success(self) -> Self {
        assert!(self.succeeded(), "{}", self.describe());
        self
    }
}

/// Runs plugins from `bin_dir` inside the node netns.
#[derive(Debug, Clone)]
pub struct ChainRunner {
    pub conflist: Conflist,
    bin_dir: PathBuf,
    node_netns: PathBuf,
    /// Extra environment for every plugin (runtimes pass their own environment on).
    plugin_env: Vec<(String, String)>,
}

impl ChainRunner {
    pub fn new(
        conflist: Conflist,
        bin_dir: PathBuf,
        node_netns: PathBuf,
        plugin_env: Vec<(String, String)>,
    ) -> Self {
        ChainRunner {
            conflist,
            bin_dir,
            node_netns,
            plugin_env,
        }
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    pub fn add(&self, rt: &RuntimeConf) -> ChainOutput {
        let mut steps = Vec::new();
        let mut prev: Option<Value> = None;
        for entry in &self.conflist.plugins {
            let step = self.run_entry("ADD", entry, prev.as_ref(), rt);
            let ok = step.succeeded();
            prev = step.json();
            steps.push(step);
            if !ok {
                return chain_output("ADD", steps, None);
            }
        }
        chain_output("ADD", steps, prev)
    }

    /// libcni refuses CHECK below 0.4.0 without running anything; so does this.
    pub fn check(&self, rt: &RuntimeConf, cached: &Value) -> ChainOutput {
        assert!(
            self.version_at_least(0, 4),
            "libcni does not run CHECK for cniVersion {}",
            self.conflist.cni_version
        );
        let mut steps = Vec::new();
        for entry in &self.conflist.plugins {
            let step = self.run_entry("CHECK", entry, Some(cached), rt);
            let ok = step.succeeded();
            steps.push(step);
            if !ok {
                break;
            }
        }
        chain_output("CHECK", steps, None)
    }

    /// libcni passes the cached result to DEL only from cniVersion 0.4.0 on.
    pub fn del(&self, rt: &RuntimeConf, cached: Option<&Value>) -> ChainOutput {
        let cached = cached.filter(|_| self.version_at_least(0, 4));
        let mut steps = Vec::new();
        for entry in self.conflist.plugins.iter().rev() {
            let step = self.run_entry("DEL", entry, cached, rt);
            let ok = step.succeeded();
            steps.push(step);
            if !ok {
                break;
            }
        }
        chain_output("DEL", steps, None)
    }

    fn version_at_least(&self, major: u64, minor: u64) -> bool {
        let mut parts = self
            .conflist
            .cni_version
            .split('.')
            .map(|p| p.parse::<u64>().unwrap_or(0));
        let have = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        have >= (major, minor)
    }

    /// libcni's `buildOneConfig`: the entry with the list's name and version, the
    /// previous result, and `runtimeConfig` for declared capabilities.
    pub fn plugin_stdin(&self, entry: &Value, prev: Option<&Value>, rt: &RuntimeConf) -> Value {
        let mut conf = entry.as_object().cloned().unwrap_or_default();
        conf.insert("name".into(), Value::from(self.conflist.name.clone()));
        conf.insert(
            "cniVersion".into(),
            Value::from(self.conflist.cni_version.clone()),
        );
        if let Some(prev) = prev {
            conf.insert("prevResult".into(), prev.clone());
        }
        let runtime_config: Map<String, Value> = entry["capabilities"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, declared)| declared.as_bool() == Some(true))
            .filter_map(|(cap, _)| Some((cap.clone(), rt.capability_args.get(cap)?.clone())))
            .collect();
        if !runtime_config.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(runtime_config));
        }
        Value::Object(conf)
    }

    /// The environment libcni gives a plugin for `command` (plus PATH and the node's
    /// plugin_env). Without `rt` (STATUS, GC, VERSION) only CNI_COMMAND and CNI_PATH.
    pub fn cni_env(&self, command: &str, rt: Option<&RuntimeConf>) -> Vec<(String, String)> {
        let mut env = vec![
            ("CNI_COMMAND".to_string(), command.to_string()),
            (
                "CNI_PATH".to_string(),
                self.bin_dir.to_string_lossy().into_owned(),
            ),
        ];
        if let Some(rt) = rt {
            env.push(("CNI_CONTAINERID".into(), rt.container_id.clone()));
            if let Some(netns) = &rt.netns {
                env.push(("CNI_NETNS".into(), netns.to_string_lossy().into_owned()));
            }
            env.push(("CNI_IFNAME".into(), rt.ifname.clone()));
            env.push(("CNI_ARGS".into(), rt.cni_args()));
        }
        env
    }

    fn run_entry(
        &self,
        command: &str,
        entry: &Value,
        prev: Option<&Value>,
        rt: &RuntimeConf,
    ) -> PluginOutput {
        let plugin = entry["type"].as_str().unwrap_or_default();
        let stdin = self.plugin_stdin(entry, prev, rt).to_string();
        self.exec_plugin(plugin, &self.cni_env(command, Some(rt)), stdin.as_bytes())
    }

    /// Raw access: runs `<bin_dir>/<plugin>` in the node netns with exactly `env`
    /// (plus PATH and the node's plugin_env) and `stdin`. For error paths, STATUS, GC,
    /// VERSION and anything a chain would not do.
    pub fn exec_plugin(
        &self,
        plugin: &str,
        env: &[(String, String)],
        stdin: &[u8],
    ) -> PluginOutput {
        self.exec_plugin_under(&[], plugin, env, stdin)
    }

    /// Like `exec_plugin`, with the plugin started by `wrapper` (a program and
    /// its arguments, the plugin's path appended), e.g. strace injecting a fault.
    pub fn exec_plugin_under(
        &self,
        wrapper: &[String],
        plugin: &str,
        env: &[(String, String)],
        stdin: &[u8],
    ) -> PluginOutput {
        let binary = self.bin_dir.join(plugin);
        let netns = File::open(&self.node_netns)
            .unwrap_or_else(|err| panic!("open node netns {}: {err}", self.node_netns.display()));
        let mut cmd = match wrapper.split_first() {
            None => Command::new(&binary),
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&binary);
                cmd
            }
        };
        cmd.env_clear()
            .env("PATH", CHILD_PATH)
            .envs(self.plugin_env.iter().map(|(k, v)| (k, v)))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir("/");
        netns::join_before_exec(&mut cmd, &netns);
        let finished = exec::run_with_timeout(cmd, stdin, PLUGIN_TIMEOUT)
            .unwrap_or_else(|err| panic!("cannot run CNI plugin {}: {err}", binary.display()));
        drop(netns);
        PluginOutput::from_finished(plugin, env, stdin, finished)
    }
}

fn chain_output(command: &str, steps: Vec<PluginOutput>, result: Option<Value>) -> ChainOutput {
    ChainOutput {
        command: command.to_string(),
        steps,
        result,
    }
}
