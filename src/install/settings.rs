//! What `meshlane install` / `uninstall` / `precheck` use, made from their
//! flags (`flags.rs`: names, environment variables and defaults): the chain
//! entry's keys, the agent's paths, the Kubernetes API. The checks that span
//! two flags live here; each flag's own value was checked by its parser.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::log::{Format, Level};
use crate::policy::pod_capture::{ISTIO_PROXY_GID, ISTIO_PROXY_UID};

use super::error::InstallError;
use super::flags::{ApiFlags, InstallFlags, KubeconfigFlags, PluginFlags};

#[derive(Debug, Clone, PartialEq)]
pub struct InstallSettings {
    pub cni_bin_dir: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cni_conf_name: Option<String>,
    pub pin_root: PathBuf,
    /// The cgroup the node programs attach to, as this process sees it.
    pub cgroup: Option<PathBuf>,
    /// The keys of meshlane's chain entry (plugin settings, host paths).
    pub plugin: Map<String, Value>,
    /// The plugin's log file as this process sees it (`None`: not tailed).
    pub tail_log: Option<PathBuf>,
    pub listen: String,
    pub recheck: Duration,
    /// The agent's own log, the same level and format as the plugin's.
    pub log_level: Level,
    pub log_format: Format,
    /// What the agent does with the Kubernetes API.
    pub cluster: ClusterSettings,
}

/// The agent's side of the Kubernetes API: enrolling pods that already run on
/// the node, the plugin's kubeconfig, and the node's startup taint.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    pub node_name: Option<String>,
    /// `https://host:port` from KUBERNETES_SERVICE_HOST/_PORT; `None` outside
    /// a cluster.
    pub api_server: Option<String>,
    pub service_account_dir: PathBuf,
    pub host_proc: PathBuf,
    pub kubeconfig: Option<KubeconfigFiles>,
    /// `None`: enroll at start only.
    pub enroll_every: Option<Duration>,
    /// The taint removed from the node once the agent is ready (`None`: none).
    pub startup_taint: Option<String>,
}

/// The plugin's kubeconfig and the copy of the agent's token it names.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeconfigFiles {
    /// As the plugin reads it: a host path (the chain entry's `kubeconfig`).
    pub host_path: PathBuf,
    /// The same file as this process writes it (through a mount).
    pub write_path: PathBuf,
}

impl KubeconfigFiles {
    /// The token copy sits next to the kubeconfig: `<kubeconfig>.token`.
    pub fn token_host_path(&self) -> PathBuf {
        with_suffix(&self.host_path, ".token")
    }

    pub fn token_write_path(&self) -> PathBuf {
        with_suffix(&self.write_path, ".token")
    }

    /// The files the flags name (`None`: no kubeconfig, or `--write-kubeconfig ""`).
    pub fn from_flags(flags: &KubeconfigFlags) -> Option<KubeconfigFiles> {
        let host_path = PathBuf::from(non_empty(&flags.kubeconfig)?);
        match flags.write_kubeconfig.as_deref() {
            Some("") => None,
            Some(path) => Some(KubeconfigFiles {
                host_path,
                write_path: PathBuf::from(path),
            }),
            None => Some(KubeconfigFiles {
                write_path: host_path.clone(),
                host_path,
            }),
        }
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut text = path.as_os_str().to_owned();
    text.push(suffix);
    PathBuf::from(text)
}

/// `None` for an unset or empty value.
pub fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|text| !text.is_empty())
}

/// The API server's URL as client-go builds it in a pod (IPv6 in brackets).
pub fn api_server_url(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    }
}

fn bad(setting: &'static str, problem: impl Into<String>) -> InstallError {
    InstallError::Setting {
        setting,
        problem: problem.into(),
    }
}

/// `https://host:port` when both halves are set, `None` when neither is.
pub fn api_server(flags: &ApiFlags) -> Result<Option<String>, InstallError> {
    match (non_empty(&flags.api_host), non_empty(&flags.api_port)) {
        (Some(host), Some(port)) => {
            port.parse::<u16>()
                .map_err(|_| bad("api-port", format!("{port:?} is not a port number")))?;
            Ok(Some(api_server_url(host, port)))
        }
        (None, None) => Ok(None),
        (Some(_), None) => Err(bad("api-port", "not set, but api-host is")),
        (None, Some(_)) => Err(bad("api-host", "not set, but api-port is")),
    }
}

/// With another mesh, Istio's mesh-wide settings would not be written: one set away
/// from its default is refused rather than dropped. (Set to the default value, it
/// cannot be told apart from unset, and changes nothing.)
fn istio_settings_only_with_istio(flags: &PluginFlags) -> Result<(), InstallError> {
    let istio_set = [
        ("--proxy-uid", flags.proxy_uid != ISTIO_PROXY_UID),
        ("--proxy-gid", flags.proxy_gid != ISTIO_PROXY_GID),
        ("--dns-capture", flags.dns_capture),
    ];
    match istio_set.iter().find(|(_, set)| *set) {
        Some((flag, _)) if flags.mesh != "istio" => Err(bad(
            flag,
            format!("is an Istio setting and --mesh is {:?}", flags.mesh),
        )),
        _ => Ok(()),
    }
}

/// The chain entry's keys (`plugin::config` checks them again, as the plugin will).
fn plugin_keys(
    flags: &PluginFlags,
    pin_root: &Path,
    kubeconfig: Option<&str>,
) -> Map<String, Value> {
    let mut plugin = Map::new();
    plugin.insert("bpffsRoot".into(), Value::from(pin_root.to_string_lossy()));
    if let Some(path) = non_empty(&flags.plugin_cgroup_path) {
        plugin.insert("cgroupPath".into(), Value::from(path));
    }
    plugin.insert("capture".into(), Value::from(flags.capture.as_str()));
    // Istio's mesh-wide settings: another mesh's pods carry their own.
    let istio = flags.mesh == "istio";
    if istio {
        plugin.insert("proxyUID".into(), Value::from(flags.proxy_uid));
        plugin.insert("proxyGID".into(), Value::from(flags.proxy_gid));
    } else {
        // Written only when not the default, so Istio entries stay as they were.
        plugin.insert("mesh".into(), Value::from(flags.mesh.as_str()));
    }
    let namespaces: Vec<Value> = flags
        .exclude_namespaces
        .split(',')
        .map(str::trim)
        .filter(|ns| !ns.is_empty())
        .map(Value::from)
        .collect();
    plugin.insert("excludeNamespaces".into(), Value::Array(namespaces));
    if istio {
        plugin.insert("dnsCapture".into(), Value::from(flags.dns_capture));
    }
    if let Some(on) = flags.short_path {
        plugin.insert("shortPath".into(), Value::from(on));
    }
    if let Some(path) = kubeconfig {
        plugin.insert("kubeconfig".into(), Value::from(path));
    }
    plugin.insert(
        "podSpecLookup".into(),
        Value::from(flags.pod_spec_lookup.as_str()),
    );
    plugin.insert("logFile".into(), Value::from(flags.log_file.as_str()));
    plugin.insert("logMaxBytes".into(), Value::from(flags.log_max_bytes));
    plugin.insert("logLevel".into(), Value::from(flags.log_level.as_str()));
    plugin.insert("logFormat".into(), Value::from(flags.log_format.as_str()));
    plugin
}

impl InstallSettings {
    pub fn from_flags(flags: &InstallFlags) -> Result<Self, InstallError> {
        let pin_root = flags.pin_root.bpffs_root.clone();
        let kubeconfig = non_empty(&flags.kubeconfig.kubeconfig);
        istio_settings_only_with_istio(&flags.plugin)?;
        let plugin = plugin_keys(&flags.plugin, &pin_root, kubeconfig);
        let tail_log = match flags.agent.tail_log.as_deref() {
            Some("") => None,
            Some(path) => Some(PathBuf::from(path)),
            None => non_empty(&Some(flags.plugin.log_file.clone())).map(PathBuf::from),
        };
        let api_server = api_server(&flags.api)?;
        let cluster = ClusterSettings {
            node_name: non_empty(&flags.agent.node_name).map(str::to_owned),
            api_server,
            service_account_dir: flags.api.service_account_dir.clone(),
            host_proc: flags.agent.host_proc.clone(),
            kubeconfig: KubeconfigFiles::from_flags(&flags.kubeconfig),
            enroll_every: match flags.agent.enroll_seconds {
                0 => None,
                seconds => Some(Duration::from_secs(seconds)),
            },
            startup_taint: Some(flags.agent.startup_taint.clone()).filter(|key| !key.is_empty()),
        };
        Ok(InstallSettings {
            cni_bin_dir: flags.bin_dir.cni_bin_dir.clone(),
            cni_conf_dir: flags.conf_dir.cni_conf_dir.clone(),
            cni_conf_name: non_empty(&flags.conf_name.cni_conf_name).map(str::to_owned),
            pin_root,
            cgroup: non_empty(&flags.cgroup.cgroup).map(PathBuf::from),
            plugin,
            tail_log,
            listen: flags.agent.listen.clone(),
            recheck: Duration::from_secs(flags.agent.recheck_seconds.max(1)),
            log_level: Level::parse(&flags.plugin.log_level).unwrap_or(Level::Info),
            log_format: Format::parse(&flags.plugin.log_format).unwrap_or_default(),
            cluster,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Install {
        #[command(flatten)]
        flags: InstallFlags,
    }

    fn parse(args: &[&str]) -> Result<InstallSettings, String> {
        let argv = std::iter::once("install").chain(args.iter().copied());
        let flags = Install::try_parse_from(argv)
            .map_err(|err| err.to_string())?
            .flags;
        InstallSettings::from_flags(&flags).map_err(|err| err.to_string())
    }

    #[test]
    fn defaults_fit_the_daemonset() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.cni_bin_dir, PathBuf::from("/host/opt/cni/bin"));
        assert_eq!(s.cni_conf_dir, PathBuf::from("/host/etc/cni/net.d"));
        assert_eq!(s.pin_root, PathBuf::from("/sys/fs/bpf/meshlane"));
        assert_eq!(s.plugin["bpffsRoot"], "/sys/fs/bpf/meshlane");
        assert_eq!(s.plugin["logFile"], "/var/log/meshlane/cni.log");
        assert_eq!(s.plugin["proxyUID"], 1337);
        assert_eq!(s.plugin["capture"], "istio");
        assert_eq!(s.plugin["logFormat"], "logfmt");
        assert_eq!(s.plugin["logMaxBytes"], 10 * 1024 * 1024);
        assert!(!s.plugin.contains_key("shortPath"), "by kernel");
        assert_eq!(s.tail_log, Some(PathBuf::from("/var/log/meshlane/cni.log")));
        assert_eq!(s.listen, "0.0.0.0:9967");
        assert_eq!(s.recheck, Duration::from_secs(10));
        assert_eq!((s.log_level, s.log_format), (Level::Info, Format::Logfmt));
        // Every default is one the plugin accepts.
        crate::plugin::config::PluginConfig::from_keys(&s.plugin).unwrap();
        assert_eq!(
            s.cluster,
            ClusterSettings {
                node_name: None,
                api_server: None,
                service_account_dir: PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount"),
                host_proc: PathBuf::from("/proc"),
                kubeconfig: None,
                enroll_every: Some(Duration::from_secs(300)),
                startup_taint: Some("meshlane.io/agent-not-ready".to_owned()),
            }
        );
    }

    #[test]
    fn cluster_settings_come_from_the_pod_environment() {
        let s = parse(&[
            "--node-name=node-1",
            "--api-host=fd00::1",
            "--api-port=443",
            "--kubeconfig=/etc/cni/net.d/meshlane-kubeconfig",
            "--write-kubeconfig=/host/etc/cni/net.d/meshlane-kubeconfig",
            "--enroll-seconds=0",
            "--startup-taint=",
        ])
        .unwrap();
        assert_eq!(s.cluster.node_name.as_deref(), Some("node-1"));
        assert_eq!(
            s.cluster.api_server.as_deref(),
            Some("https://[fd00::1]:443")
        );
        assert_eq!(s.cluster.enroll_every, None);
        assert_eq!(s.cluster.startup_taint, None);
        let files = s.cluster.kubeconfig.unwrap();
        assert_eq!(
            files.token_host_path(),
            PathBuf::from("/etc/cni/net.d/meshlane-kubeconfig.token")
        );
        assert_eq!(
            files.token_write_path(),
            PathBuf::from("/host/etc/cni/net.d/meshlane-kubeconfig.token")
        );
        assert_eq!(
            s.plugin["kubeconfig"], "/etc/cni/net.d/meshlane-kubeconfig",
            "the chain entry names the host path"
        );
        assert_eq!(api_server_url("10.96.0.1", "443"), "https://10.96.0.1:443");

        let same = parse(&["--kubeconfig", "/k"]).unwrap();
        assert_eq!(
            same.cluster.kubeconfig.unwrap().write_path,
            PathBuf::from("/k")
        );
        let unwritten = parse(&["--kubeconfig", "/k", "--write-kubeconfig", ""]).unwrap();
        assert_eq!(unwritten.cluster.kubeconfig, None);
    }

    #[test]
    fn plugin_settings_become_entry_keys() {
        let s = parse(&[
            "--proxy-uid=1500",
            "--proxy-gid=1501",
            "--capture=all",
            "--log-level=debug",
            "--log-format=json",
            "--log-max-bytes=4096",
            "--plugin-cgroup-path=/sys/fs/cgroup",
            "--tail-log=",
            "--exclude-namespaces=kube-system, istio-system",
            "--dns-capture=true",
            "--short-path=false",
            "--cni-conf-name=",
        ])
        .unwrap();
        assert_eq!(
            s.plugin["excludeNamespaces"],
            serde_json::json!(["kube-system", "istio-system"])
        );
        assert_eq!(s.plugin["dnsCapture"], true);
        assert_eq!(s.plugin["shortPath"], false);
        assert_eq!(s.plugin["proxyUID"], 1500);
        assert_eq!(s.plugin["proxyGID"], 1501);
        assert_eq!(s.plugin["capture"], "all");
        assert_eq!(s.plugin["logLevel"], "debug");
        assert_eq!(s.plugin["logFormat"], "json");
        assert_eq!(s.plugin["logMaxBytes"], 4096);
        assert_eq!(s.plugin["cgroupPath"], "/sys/fs/cgroup");
        assert_eq!(s.tail_log, None);
        assert_eq!(s.cni_conf_name, None, "\"\" is the runtime's pick");
        assert_eq!(s.log_format, Format::Json);
        crate::plugin::config::PluginConfig::from_keys(&s.plugin).unwrap();
    }

    #[test]
    fn kuma_and_linkerd_entries_have_no_istio_settings() {
        for mesh in ["kuma", "linkerd"] {
            let s = parse(&["--mesh", mesh, "--capture", "mesh"]).unwrap();
            assert_eq!(
                (&s.plugin["mesh"], &s.plugin["capture"]),
                (&mesh.into(), &"mesh".into())
            );
            for key in ["proxyUID", "proxyGID", "dnsCapture"] {
                assert!(!s.plugin.contains_key(key), "{mesh} {key}");
            }
            crate::plugin::config::PluginConfig::from_keys(&s.plugin).unwrap();
        }
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (args, flag) in [
            (&["--cni-bin-dir", "bin"][..], "--cni-bin-dir"),
            (&["--proxy-uid", "x"], "--proxy-uid"),
            (&["--cni-conf-name", "a/b.conf"], "--cni-conf-name"),
            (&["--recheck-seconds=-1"], "--recheck-seconds"),
            (&["--dns-capture", "yes"], "--dns-capture"),
            (&["--api-host", "10.96.0.1"], "api-port"),
            (&["--api-host", "h", "--api-port", "x"], "api-port"),
            (&["--kubeconfig", "k"], "--kubeconfig"),
            (&["--enroll-seconds", "soon"], "--enroll-seconds"),
            (&["--log-format", "text"], "--log-format"),
            (&["--mesh", "consul"], "--mesh"),
            (&["--mesh", "linkerd", "--proxy-uid", "2102"], "--proxy-uid"),
            (&["--mesh", "kuma", "--proxy-uid", "5678"], "--proxy-uid"),
            (
                &["--mesh", "kuma", "--dns-capture", "true"],
                "--dns-capture",
            ),
        ] {
            let err = parse(args).expect_err(flag);
            assert!(err.contains(flag), "{flag}: {err}");
        }
    }

    #[test]
    fn every_setting_has_its_variable() {
        let vars = super::super::flags::install_env_vars();
        for var in [
            "MESHLANE_CNI_BIN_DIR",
            "MESHLANE_CNI_CONF_NAME",
            "MESHLANE_LOG_FORMAT",
            "MESHLANE_STARTUP_TAINT",
            "NODE_NAME",
            "KUBERNETES_SERVICE_HOST",
        ] {
            assert!(vars.iter().any(|v| v == var), "{var} in {vars:?}");
        }
    }
}
