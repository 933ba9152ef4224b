//! The settings of `meshlane install` / `uninstall` / `precheck`: each from its
//! flag, else its environment variable (what the DaemonSet's ConfigMap sets),
//! else a default that fits the DaemonSet's mounts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::datapath::DEFAULT_PIN_ROOT;
use crate::plugin::config::DEFAULT_LOG_FILE;

use super::error::InstallError;

/// One setting: flag name (without `--`), environment variable, what it is.
pub struct Setting {
    pub flag: &'static str,
    pub env: &'static str,
    pub help: &'static str,
}

const fn setting(flag: &'static str, env: &'static str, help: &'static str) -> Setting {
    Setting { flag, env, help }
}

pub const CNI_BIN_DIR: Setting = setting(
    "cni-bin-dir",
    "MESHLANE_CNI_BIN_DIR",
    "host CNI bin dir as mounted (default /host/opt/cni/bin)",
);
pub const CNI_CONF_DIR: Setting = setting(
    "cni-conf-dir",
    "MESHLANE_CNI_CONF_DIR",
    "host CNI config dir as mounted (default /host/etc/cni/net.d)",
);
pub const CNI_CONF_NAME: Setting = setting(
    "cni-conf-name",
    "MESHLANE_CNI_CONF_NAME",
    "primary config file name (default: the file the runtime picks)",
);
pub const BPFFS_ROOT: Setting = setting(
    "bpffs-root",
    "MESHLANE_BPFFS_ROOT",
    "pin root on a bpffs, same path on the host (default /sys/fs/bpf/meshlane)",
);
pub const CGROUP: Setting = setting(
    "cgroup",
    "MESHLANE_CGROUP",
    "host cgroup v2 root as mounted here (default: this mount namespace's cgroup2; set it in a container)",
);
pub const PLUGIN_CGROUP_PATH: Setting = setting(
    "plugin-cgroup-path",
    "MESHLANE_PLUGIN_CGROUP_PATH",
    "cgroupPath for the plugin, a host path (default: the plugin finds it)",
);
pub const CAPTURE: Setting = setting(
    "capture",
    "MESHLANE_CAPTURE",
    "which pods the plugin captures: istio (default), all, cni-args or none",
);
pub const PROXY_UID: Setting = setting("proxy-uid", "MESHLANE_PROXY_UID", "sidecar UID (1337)");
pub const PROXY_GID: Setting = setting("proxy-gid", "MESHLANE_PROXY_GID", "sidecar GID (1337)");
pub const LOG_FILE: Setting = setting(
    "log-file",
    "MESHLANE_LOG_FILE",
    "the plugin's log file, a host path (default /var/log/meshlane/cni.log)",
);
pub const LOG_LEVEL: Setting = setting(
    "log-level",
    "MESHLANE_LOG_LEVEL",
    "the plugin's log level: debug, info, warn, error",
);
pub const EXCLUDE_NAMESPACES: Setting = setting(
    "exclude-namespaces",
    "MESHLANE_EXCLUDE_NAMESPACES",
    "namespaces never captured, comma-separated (plugin default kube-system)",
);
pub const DNS_CAPTURE: Setting = setting(
    "dns-capture",
    "MESHLANE_DNS_CAPTURE",
    "capture DNS mesh-wide: true or false",
);
pub const KUBECONFIG: Setting = setting(
    "kubeconfig",
    "MESHLANE_KUBECONFIG",
    "kubeconfig the plugin reads pods with, a host path",
);
pub const POD_SPEC_LOOKUP: Setting = setting(
    "pod-spec-lookup",
    "MESHLANE_POD_SPEC_LOOKUP",
    "when the plugin reads the pod from the API: fallback, always or never",
);
pub const SHORT_PATH: Setting = setting(
    "short-path",
    "MESHLANE_SHORT_PATH",
    "sockmap short path between local sockets: true or false (default: on where the kernel series is proven, docs/kernels.md)",
);
pub const TAIL_LOG: Setting = setting(
    "tail-log",
    "MESHLANE_TAIL_LOG",
    "where the plugin's log file is seen here (default: --log-file)",
);
pub const LISTEN: Setting = setting(
    "listen",
    "MESHLANE_LISTEN",
    "health and metrics address (default 0.0.0.0:9967)",
);
pub const RECHECK_SECONDS: Setting = setting(
    "recheck-seconds",
    "MESHLANE_RECHECK_SECONDS",
    "re-check the chain and programs at least this often (default 10)",
);

pub const WRITE_KUBECONFIG: Setting = setting(
    "write-kubeconfig",
    "MESHLANE_WRITE_KUBECONFIG",
    "where the plugin's kubeconfig (--kubeconfig) and its token copy are written, as seen \
     here (default: --kubeconfig; \"\": not written)",
);
pub const NODE_NAME: Setting = setting(
    "node-name",
    "NODE_NAME",
    "this node's name (the DaemonSet sets it); without it, running pods are not enrolled",
);
pub const API_HOST: Setting = setting(
    "api-host",
    "KUBERNETES_SERVICE_HOST",
    "the API server's address (Kubernetes sets it in every pod)",
);
pub const API_PORT: Setting = setting(
    "api-port",
    "KUBERNETES_SERVICE_PORT",
    "the API server's port (Kubernetes sets it in every pod)",
);
pub const SERVICE_ACCOUNT_DIR: Setting = setting(
    "service-account-dir",
    "MESHLANE_SERVICE_ACCOUNT_DIR",
    "the agent's token and ca.crt (default /var/run/secrets/kubernetes.io/serviceaccount)",
);
pub const HOST_PROC: Setting = setting(
    "host-proc",
    "MESHLANE_HOST_PROC",
    "the host's /proc, where running pods' netns are found (default /proc, with hostPID)",
);
pub const ENROLL_SECONDS: Setting = setting(
    "enroll-seconds",
    "MESHLANE_ENROLL_SECONDS",
    "look for running pods without capture this often (default 300; 0: at start only)",
);

/// Every setting `meshlane install` reads.
pub const INSTALL_SETTINGS: [&Setting; 26] = [
    &CNI_BIN_DIR,
    &CNI_CONF_DIR,
    &CNI_CONF_NAME,
    &BPFFS_ROOT,
    &CGROUP,
    &PLUGIN_CGROUP_PATH,
    &CAPTURE,
    &PROXY_UID,
    &PROXY_GID,
    &LOG_FILE,
    &LOG_LEVEL,
    &EXCLUDE_NAMESPACES,
    &DNS_CAPTURE,
    &KUBECONFIG,
    &POD_SPEC_LOOKUP,
    &SHORT_PATH,
    &TAIL_LOG,
    &LISTEN,
    &RECHECK_SECONDS,
    &WRITE_KUBECONFIG,
    &NODE_NAME,
    &API_HOST,
    &API_PORT,
    &SERVICE_ACCOUNT_DIR,
    &HOST_PROC,
    &ENROLL_SECONDS,
];

pub const DEFAULT_CNI_BIN_DIR: &str = "/host/opt/cni/bin";
pub const DEFAULT_CNI_CONF_DIR: &str = "/host/etc/cni/net.d";
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9967";
pub const DEFAULT_RECHECK: Duration = Duration::from_secs(10);
pub const DEFAULT_SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
pub const DEFAULT_HOST_PROC: &str = "/proc";
pub const DEFAULT_ENROLL_EVERY: Duration = Duration::from_secs(300);

/// Raw values, already resolved flag-over-environment, by flag name.
pub type Values = BTreeMap<&'static str, String>;

/// Resolves each setting: `flag` first, then `env`.
pub fn resolve(
    settings: &[&Setting],
    mut flag: impl FnMut(&str) -> Option<String>,
    env: impl Fn(&str) -> Option<String>,
) -> Values {
    settings
        .iter()
        .filter_map(|s| {
            let value = flag(s.flag).or_else(|| env(s.env).filter(|v| !v.is_empty()))?;
            Some((s.flag, value))
        })
        .collect()
}

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
    /// What the agent does with the Kubernetes API.
    pub cluster: ClusterSettings,
}

/// The agent's side of the Kubernetes API: enrolling pods that already run on
/// the node, and the plugin's kubeconfig.
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
}

fn with_suffix(path: &std::path::Path, suffix: &str) -> PathBuf {
    let mut text = path.as_os_str().to_owned();
    text.push(suffix);
    PathBuf::from(text)
}

/// The API server's URL as client-go builds it in a pod (IPv6 in brackets).
pub fn api_server_url(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    }
}

fn bad(setting: &'static Setting, problem: impl Into<String>) -> InstallError {
    InstallError::Setting {
        setting: setting.flag,
        problem: problem.into(),
    }
}

fn absolute(setting: &'static Setting, value: &str) -> Result<PathBuf, InstallError> {
    let path = PathBuf::from(value);
    if !path.is_absolute() {
        return Err(bad(setting, format!("{value:?} is not an absolute path")));
    }
    Ok(path)
}

fn boolean(setting: &'static Setting, value: &str) -> Result<bool, InstallError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad(setting, format!("{value:?} is not true or false"))),
    }
}

fn number(setting: &'static Setting, value: &str) -> Result<u64, InstallError> {
    value
        .parse()
        .map_err(|_| bad(setting, format!("{value:?} is not a number")))
}

impl InstallSettings {
    pub fn from_values(values: &Values) -> Result<Self, InstallError> {
        let get = |s: &Setting| values.get(s.flag).map(String::as_str);
        let path_or = |s: &'static Setting, default: &str| absolute(s, get(s).unwrap_or(default));
        let pin_root = path_or(&BPFFS_ROOT, DEFAULT_PIN_ROOT)?;

        let mut plugin = Map::new();
        plugin.insert("bpffsRoot".into(), Value::from(pin_root.to_string_lossy()));
        if let Some(path) = get(&PLUGIN_CGROUP_PATH) {
            absolute(&PLUGIN_CGROUP_PATH, path)?;
            plugin.insert("cgroupPath".into(), Value::from(path));
        }
        if let Some(capture) = get(&CAPTURE) {
            plugin.insert("capture".into(), Value::from(capture));
        }
        for (s, key) in [(&PROXY_UID, "proxyUID"), (&PROXY_GID, "proxyGID")] {
            if let Some(id) = get(s) {
                plugin.insert(key.into(), Value::from(number(s, id)?));
            }
        }
        if let Some(list) = get(&EXCLUDE_NAMESPACES) {
            let namespaces: Vec<Value> = list
                .split(',')
                .map(str::trim)
                .filter(|ns| !ns.is_empty())
                .map(Value::from)
                .collect();
            plugin.insert("excludeNamespaces".into(), Value::Array(namespaces));
        }
        for (s, key) in [(&DNS_CAPTURE, "dnsCapture"), (&SHORT_PATH, "shortPath")] {
            if let Some(flag) = get(s) {
                plugin.insert(key.into(), Value::from(boolean(s, flag)?));
            }
        }
        for (s, key) in [
            (&KUBECONFIG, "kubeconfig"),
            (&POD_SPEC_LOOKUP, "podSpecLookup"),
        ] {
            if let Some(text) = get(s) {
                plugin.insert(key.into(), Value::from(text));
            }
        }
        let log_file = get(&LOG_FILE).unwrap_or(DEFAULT_LOG_FILE);
        plugin.insert("logFile".into(), Value::from(log_file));
        if let Some(level) = get(&LOG_LEVEL) {
            plugin.insert("logLevel".into(), Value::from(level));
        }
        let tail_log = match get(&TAIL_LOG).unwrap_or(log_file) {
            "" => None,
            path => Some(absolute(&TAIL_LOG, path)?),
        };
        let recheck = match get(&RECHECK_SECONDS) {
            Some(text) => Duration::from_secs(number(&RECHECK_SECONDS, text)?.max(1)),
            None => DEFAULT_RECHECK,
        };
        let cluster = cluster_settings(&get)?;
        let cni_conf_name = get(&CNI_CONF_NAME).map(str::to_owned);
        if let Some(name) = &cni_conf_name {
            if name.contains('/') {
                return Err(bad(
                    &CNI_CONF_NAME,
                    format!("{name:?} must be a file name, not a path"),
                ));
            }
        }
        Ok(InstallSettings {
            cni_bin_dir: path_or(&CNI_BIN_DIR, DEFAULT_CNI_BIN_DIR)?,
            cni_conf_dir: path_or(&CNI_CONF_DIR, DEFAULT_CNI_CONF_DIR)?,
            cni_conf_name,
            pin_root,
            cgroup: get(&CGROUP).map(|p| absolute(&CGROUP, p)).transpose()?,
            plugin,
            tail_log,
            listen: get(&LISTEN).unwrap_or(DEFAULT_LISTEN).to_owned(),
            recheck,
            cluster,
        })
    }
}

fn cluster_settings<'v>(
    get: &impl Fn(&Setting) -> Option<&'v str>,
) -> Result<ClusterSettings, InstallError> {
    let api_server = match (get(&API_HOST), get(&API_PORT)) {
        (Some(host), Some(port)) => {
            number(&API_PORT, port)?;
            Some(api_server_url(host, port))
        }
        (None, None) => None,
        (Some(_), None) => return Err(bad(&API_PORT, "not set, but api-host is")),
        (None, Some(_)) => return Err(bad(&API_HOST, "not set, but api-port is")),
    };
    let kubeconfig = match get(&KUBECONFIG) {
        None => None,
        Some(host_path) => {
            let host_path = absolute(&KUBECONFIG, host_path)?;
            match get(&WRITE_KUBECONFIG) {
                Some("") => None,
                Some(path) => Some(KubeconfigFiles {
                    host_path,
                    write_path: absolute(&WRITE_KUBECONFIG, path)?,
                }),
                None => Some(KubeconfigFiles {
                    write_path: host_path.clone(),
                    host_path,
                }),
            }
        }
    };
    let enroll_every = match get(&ENROLL_SECONDS) {
        None => Some(DEFAULT_ENROLL_EVERY),
        Some(text) => match number(&ENROLL_SECONDS, text)? {
            0 => None,
            seconds => Some(Duration::from_secs(seconds)),
        },
    };
    Ok(ClusterSettings {
        node_name: get(&NODE_NAME).map(str::to_owned),
        api_server,
        service_account_dir: absolute(
            &SERVICE_ACCOUNT_DIR,
            get(&SERVICE_ACCOUNT_DIR).unwrap_or(DEFAULT_SERVICE_ACCOUNT_DIR),
        )?,
        host_proc: absolute(&HOST_PROC, get(&HOST_PROC).unwrap_or(DEFAULT_HOST_PROC))?,
        kubeconfig,
        enroll_every,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&'static str, &str)]) -> Values {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn defaults_fit_the_daemonset() {
        let s = InstallSettings::from_values(&Values::new()).unwrap();
        assert_eq!(s.cni_bin_dir, PathBuf::from("/host/opt/cni/bin"));
        assert_eq!(s.cni_conf_dir, PathBuf::from("/host/etc/cni/net.d"));
        assert_eq!(s.pin_root, PathBuf::from("/sys/fs/bpf/meshlane"));
        assert_eq!(s.plugin["bpffsRoot"], "/sys/fs/bpf/meshlane");
        assert_eq!(s.plugin["logFile"], "/var/log/meshlane/cni.log");
        assert_eq!(s.tail_log, Some(PathBuf::from("/var/log/meshlane/cni.log")));
        assert_eq!(s.listen, "0.0.0.0:9967");
        assert_eq!(s.recheck, DEFAULT_RECHECK);
        assert!(!s.plugin.contains_key("proxyUID"));
        assert_eq!(
            s.cluster,
            ClusterSettings {
                node_name: None,
                api_server: None,
                service_account_dir: PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount"),
                host_proc: PathBuf::from("/proc"),
                kubeconfig: None,
                enroll_every: Some(DEFAULT_ENROLL_EVERY),
            }
        );
    }

    #[test]
    fn cluster_settings_come_from_the_pod_environment() {
        let s = InstallSettings::from_values(&values(&[
            ("node-name", "node-1"),
            ("api-host", "fd00::1"),
            ("api-port", "443"),
            ("kubeconfig", "/etc/cni/net.d/meshlane-kubeconfig"),
            (
                "write-kubeconfig",
                "/host/etc/cni/net.d/meshlane-kubeconfig",
            ),
            ("enroll-seconds", "0"),
        ]))
        .unwrap();
        assert_eq!(s.cluster.node_name.as_deref(), Some("node-1"));
        assert_eq!(
            s.cluster.api_server.as_deref(),
            Some("https://[fd00::1]:443")
        );
        assert_eq!(s.cluster.enroll_every, None);
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

        let same = InstallSettings::from_values(&values(&[("kubeconfig", "/k")])).unwrap();
        assert_eq!(
            same.cluster.kubeconfig.unwrap().write_path,
            PathBuf::from("/k")
        );
        let unwritten = InstallSettings::from_values(&values(&[
            ("kubeconfig", "/k"),
            ("write-kubeconfig", ""),
        ]))
        .unwrap();
        assert_eq!(unwritten.cluster.kubeconfig, None);
    }

    #[test]
    fn plugin_settings_become_entry_keys() {
        let s = InstallSettings::from_values(&values(&[
            ("proxy-uid", "1500"),
            ("proxy-gid", "1501"),
            ("capture", "all"),
            ("log-level", "debug"),
            ("plugin-cgroup-path", "/sys/fs/cgroup"),
            ("tail-log", ""),
            ("exclude-namespaces", "kube-system, istio-system"),
            ("dns-capture", "true"),
            ("short-path", "false"),
        ]))
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
        assert_eq!(s.plugin["cgroupPath"], "/sys/fs/cgroup");
        assert_eq!(s.tail_log, None);
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (pairs, flag) in [
            (values(&[("cni-bin-dir", "bin")]), "cni-bin-dir"),
            (values(&[("proxy-uid", "x")]), "proxy-uid"),
            (values(&[("cni-conf-name", "a/b.conf")]), "cni-conf-name"),
            (values(&[("recheck-seconds", "-1")]), "recheck-seconds"),
            (values(&[("dns-capture", "yes")]), "dns-capture"),
            (values(&[("api-host", "10.96.0.1")]), "api-port"),
            (values(&[("api-host", "h"), ("api-port", "x")]), "api-port"),
            (values(&[("kubeconfig", "k")]), "kubeconfig"),
            (values(&[("enroll-seconds", "soon")]), "enroll-seconds"),
        ] {
            match InstallSettings::from_values(&pairs) {
                Err(InstallError::Setting { setting, .. }) => assert_eq!(setting, flag),
                other => panic!("{flag}: {other:?}"),
            }
        }
    }

    #[test]
    fn flags_win_over_environment() {
        let got = resolve(
            &[&CNI_BIN_DIR, &CNI_CONF_DIR, &LISTEN],
            |flag| (flag == "cni-bin-dir").then(|| "/flag".to_owned()),
            |env| match env {
                "MESHLANE_CNI_BIN_DIR" => Some("/env".to_owned()),
                "MESHLANE_CNI_CONF_DIR" => Some("/env-conf".to_owned()),
                "MESHLANE_LISTEN" => Some(String::new()),
                _ => None,
            },
        );
        assert_eq!(got["cni-bin-dir"], "/flag");
        assert_eq!(got["cni-conf-dir"], "/env-conf");
        assert!(!got.contains_key("listen"));
    }
}
