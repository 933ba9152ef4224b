//! The settings of `meshlane install`, `uninstall` and `precheck` as command-line
//! flags, each with its environment variable (what the DaemonSet's ConfigMap
//! sets) and its default, which `meshlane install --help` shows. The names,
//! variables and defaults are an interface: manifests/configmap.yaml and the
//! tests start the agent with them. `settings.rs` turns them into what the
//! agent uses.
//!
//! An empty value is "not set" (the ConfigMap writes `""` for "the default"),
//! except where the help says what `""` means.

use std::path::PathBuf;

use clap::builder::PossibleValuesParser;

use crate::datapath::DEFAULT_PIN_ROOT;
use crate::plugin::config::DEFAULT_LOG_FILE;

pub const DEFAULT_CNI_BIN_DIR: &str = "/host/opt/cni/bin";
pub const DEFAULT_CNI_CONF_DIR: &str = "/host/etc/cni/net.d";
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9967";
pub const DEFAULT_SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
pub const DEFAULT_HOST_PROC: &str = "/proc";
/// The taint new nodes carry until the agent is ready (README, "No pod before
/// capture"); Istio's own `cni.istio.io/not-ready` must not be used instead.
pub const DEFAULT_STARTUP_TAINT: &str = "meshlane.io/agent-not-ready";

/// An absolute path (a relative one would depend on where the agent started).
pub fn absolute_path(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(format!("{text:?} is not an absolute path"))
    }
}

/// An absolute path, or `""`.
pub fn absolute_or_empty(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Ok(String::new());
    }
    absolute_path(text).map(|_| text.to_owned())
}

/// A file name in the conf dir, or `""`.
fn file_name_or_empty(text: &str) -> Result<String, String> {
    if text.contains('/') {
        return Err(format!("{text:?} must be a file name, not a path"));
    }
    Ok(text.to_owned())
}

fn true_false() -> impl clap::builder::TypedValueParser<Value = bool> {
    use clap::builder::TypedValueParser as _;
    PossibleValuesParser::new(["true", "false"]).map(|text| text == "true")
}

/// `--bpffs-root`: where meshlane's programs and maps are pinned.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct PinRootFlag {
    /// Pin root on a bpffs, the same path on the host (the plugin's bpffsRoot)
    #[arg(long = "bpffs-root", env = "MESHLANE_BPFFS_ROOT", value_name = "DIR",
          default_value = DEFAULT_PIN_ROOT, value_parser = absolute_path)]
    pub bpffs_root: PathBuf,
}

/// `--cgroup`: the cgroup the node programs attach to, as seen here.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct CgroupFlag {
    /// Host cgroup v2 root as mounted here [default: this mount namespace's
    /// cgroup2; set it in a container]
    #[arg(long, env = "MESHLANE_CGROUP", value_name = "DIR", value_parser = absolute_or_empty)]
    pub cgroup: Option<String>,
}

/// Where the primary CNI's config is.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct ConfDirFlag {
    /// Host CNI config dir as mounted here
    #[arg(long, env = "MESHLANE_CNI_CONF_DIR", value_name = "DIR",
          default_value = DEFAULT_CNI_CONF_DIR, value_parser = absolute_path)]
    pub cni_conf_dir: PathBuf,
}

/// Which of its files is the primary config.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct ConfNameFlag {
    /// Primary config file name [default: the file the runtime picks]
    #[arg(long, env = "MESHLANE_CNI_CONF_NAME", value_name = "FILE", value_parser = file_name_or_empty)]
    pub cni_conf_name: Option<String>,
}

/// The host's CNI bin dir.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct BinDirFlag {
    /// Host CNI bin dir as mounted here
    #[arg(long, env = "MESHLANE_CNI_BIN_DIR", value_name = "DIR",
          default_value = DEFAULT_CNI_BIN_DIR, value_parser = absolute_path)]
    pub cni_bin_dir: PathBuf,
}

/// The plugin's kubeconfig, which the agent writes.
#[derive(clap::Args, Debug, Clone, PartialEq)]
#[command(next_help_heading = "Kubernetes API")]
pub struct KubeconfigFlags {
    /// Kubeconfig the plugin reads pods with, a host path (the plugin's kubeconfig)
    #[arg(long, env = "MESHLANE_KUBECONFIG", value_name = "FILE", value_parser = absolute_or_empty)]
    pub kubeconfig: Option<String>,
    /// Where the plugin's kubeconfig and its token copy are written, as seen
    /// here [default: --kubeconfig; "": not written]
    #[arg(long, env = "MESHLANE_WRITE_KUBECONFIG", value_name = "FILE", value_parser = absolute_or_empty)]
    pub write_kubeconfig: Option<String>,
}

/// The Kubernetes API as a pod sees it.
#[derive(clap::Args, Debug, Clone, PartialEq)]
#[command(next_help_heading = "Kubernetes API")]
pub struct ApiFlags {
    /// The API server's address (Kubernetes sets it in every pod)
    #[arg(long, env = "KUBERNETES_SERVICE_HOST", value_name = "HOST")]
    pub api_host: Option<String>,
    /// The API server's port (Kubernetes sets it in every pod)
    #[arg(long, env = "KUBERNETES_SERVICE_PORT", value_name = "PORT")]
    pub api_port: Option<String>,
    /// The service account's token and ca.crt
    #[arg(long, env = "MESHLANE_SERVICE_ACCOUNT_DIR", value_name = "DIR",
          default_value = DEFAULT_SERVICE_ACCOUNT_DIR, value_parser = absolute_path)]
    pub service_account_dir: PathBuf,
}

/// The keys of meshlane's chain entry (README, "Configuring the plugin").
#[derive(clap::Args, Debug, Clone, PartialEq)]
#[command(next_help_heading = "Chain entry (the plugin's settings)")]
pub struct PluginFlags {
    /// cgroupPath for the plugin, a host path [default: the plugin finds it]
    #[arg(long, env = "MESHLANE_PLUGIN_CGROUP_PATH", value_name = "DIR", value_parser = absolute_or_empty)]
    pub plugin_cgroup_path: Option<String>,
    /// Which pods the plugin captures ("istio" and "mesh": the mesh's selection)
    #[arg(long, env = "MESHLANE_CAPTURE", default_value = "istio",
          value_parser = ["istio", "mesh", "all", "cni-args", "none"])]
    pub capture: String,
    /// Whose capture rules (docs/meshes.md); with "kuma" or "linkerd", --proxy-uid,
    /// --proxy-gid and --dns-capture are Istio settings and must stay at their defaults
    #[arg(long, env = "MESHLANE_MESH", default_value = "istio",
          value_parser = ["istio", "kuma", "linkerd"])]
    pub mesh: String,
    /// The sidecar's UID when a pod sets none
    #[arg(
        long,
        env = "MESHLANE_PROXY_UID",
        value_name = "UID",
        default_value_t = 1337
    )]
    pub proxy_uid: u32,
    /// The sidecar's GID when a pod sets none
    #[arg(
        long,
        env = "MESHLANE_PROXY_GID",
        value_name = "GID",
        default_value_t = 1337
    )]
    pub proxy_gid: u32,
    /// Namespaces never captured, comma-separated
    #[arg(
        long,
        env = "MESHLANE_EXCLUDE_NAMESPACES",
        value_name = "LIST",
        default_value = "kube-system"
    )]
    pub exclude_namespaces: String,
    /// Capture DNS mesh-wide (Istio's ISTIO_META_DNS_CAPTURE)
    #[arg(long, env = "MESHLANE_DNS_CAPTURE", value_name = "BOOL", default_value = "false",
          value_parser = true_false(), action = clap::ArgAction::Set)]
    pub dns_capture: bool,
    /// When the plugin reads the pod from the API
    #[arg(long, env = "MESHLANE_POD_SPEC_LOOKUP", default_value = "fallback",
          value_parser = ["fallback", "always", "never"])]
    pub pod_spec_lookup: String,
    /// Sockmap short path between sidecars on the node [default: on where the
    /// kernel series is proven, docs/kernels.md]
    #[arg(long, env = "MESHLANE_SHORT_PATH", value_name = "BOOL", value_parser = true_false())]
    pub short_path: Option<bool>,
    /// The plugin's log file, a host path ("": stderr only)
    #[arg(long, env = "MESHLANE_LOG_FILE", value_name = "FILE",
          default_value = DEFAULT_LOG_FILE, value_parser = absolute_or_empty)]
    pub log_file: String,
    /// The plugin's log file is rotated to <file>.1 past this size (0: never)
    #[arg(
        long,
        env = "MESHLANE_LOG_MAX_BYTES",
        value_name = "BYTES",
        default_value_t = crate::log::file::DEFAULT_MAX_BYTES
    )]
    pub log_max_bytes: u64,
    /// Log level of the plugin and the agent
    #[arg(long, env = "MESHLANE_LOG_LEVEL", default_value = "info",
          value_parser = ["debug", "info", "warn", "error"])]
    pub log_level: String,
    /// Log format of the plugin and the agent
    #[arg(long, env = "MESHLANE_LOG_FORMAT", default_value = "logfmt",
          value_parser = ["logfmt", "json"])]
    pub log_format: String,
}

/// What only the agent does.
#[derive(clap::Args, Debug, Clone, PartialEq)]
#[command(next_help_heading = "Agent")]
pub struct AgentFlags {
    /// Health and metrics address
    #[arg(long, env = "MESHLANE_LISTEN", value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: String,
    /// Re-check the chain and programs at least this often (0 counts as 1)
    #[arg(
        long,
        env = "MESHLANE_RECHECK_SECONDS",
        value_name = "SECONDS",
        default_value_t = 10
    )]
    pub recheck_seconds: u64,
    /// Where the plugin's log file is seen here ("": not followed) [default: --log-file]
    #[arg(long, env = "MESHLANE_TAIL_LOG", value_name = "FILE", value_parser = absolute_or_empty)]
    pub tail_log: Option<String>,
    /// This node's name (the DaemonSet sets it); without it, running pods are
    /// not enrolled and the startup taint is not removed
    #[arg(long, env = "NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,
    /// The host's /proc, where running pods' netns are found (hostPID)
    #[arg(long, env = "MESHLANE_HOST_PROC", value_name = "DIR",
          default_value = DEFAULT_HOST_PROC, value_parser = absolute_path)]
    pub host_proc: PathBuf,
    /// Look for running pods without capture this often (0: at start only)
    #[arg(
        long,
        env = "MESHLANE_ENROLL_SECONDS",
        value_name = "SECONDS",
        default_value_t = 300
    )]
    pub enroll_seconds: u64,
    /// The node taint removed once the agent is ready ("": none)
    #[arg(long, env = "MESHLANE_STARTUP_TAINT", value_name = "KEY", default_value = DEFAULT_STARTUP_TAINT)]
    pub startup_taint: String,
}

/// Every setting of `meshlane install`.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct InstallFlags {
    #[command(flatten)]
    pub bin_dir: BinDirFlag,
    #[command(flatten)]
    pub conf_dir: ConfDirFlag,
    #[command(flatten)]
    pub conf_name: ConfNameFlag,
    #[command(flatten)]
    pub pin_root: PinRootFlag,
    #[command(flatten)]
    pub cgroup: CgroupFlag,
    #[command(flatten)]
    pub plugin: PluginFlags,
    #[command(flatten)]
    pub kubeconfig: KubeconfigFlags,
    #[command(flatten)]
    pub api: ApiFlags,
    #[command(flatten)]
    pub agent: AgentFlags,
}

/// Every environment variable `meshlane install` reads (for the manifests' test).
pub fn install_env_vars() -> Vec<String> {
    use clap::Args as _;
    let command = InstallFlags::augment_args(clap::Command::new("install"));
    command
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect()
}
